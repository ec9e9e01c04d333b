"""Reading model cards for the leaderboard (`mixacm_hf.hub.leaderboard`): the table/row/accuracy records, cards
from folders, README.md files or Hub ids (a local folder whose README.md has no model-index is read from its
`.eval_results/*.yaml`), and the coercion of foreign values (numeric strings, "61.2 ± 1.1",
"61.2%", "8/255", "linf"), each skipped value or card noted with its file."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import hf_hub_download
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from ..statistics import mcnemar_p_value, wilson_interval
from .eval_results import entries_model_index, load_eval_results
from .results import CARD_NAME, PLOT_NAME, REPORTS_NAME, dataset_identity, format_eps

HUB_URL = "https://huggingface.co"
NORMS = {"linf": "Linf", "l_inf": "Linf", "l-inf": "Linf", "inf": "Linf", "l2": "L2", "l_2": "L2", "l-2": "L2",
         "l1": "L1", "l_1": "L1", "l-1": "L1"}  # fmt: skip
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PLUS_MINUS = re.compile(r"\s*(?:±|\+/-|\+-)\s*")


class NotACard(ValueError):
    """A source that is not a readable model card with results (the leaderboard skips it with a note)."""


@dataclass
class Accuracy:
    """One accuracy in % with its n and 95% interval (both None when the card does not say)."""

    value: float
    n: int | None = None
    interval: tuple[float, float] | None = None


RANKED_VERSIONS = {"autoattack:plus": "AutoAttack plus", "autoattack:rand": "AutoAttack rand"}  # own tables


@dataclass
class Row:
    """One model in one table."""

    model: str
    link: str
    clean: Accuracy | None
    autoattack: Accuracy | None
    facts: dict[str, Any]
    source: str
    folder: Path | None = None
    plot: str | None = None
    per_example: dict[str, Any] | None = None
    p_value_vs_next: float | None = None


@dataclass
class Table:
    """The rows of one (dataset, split, threat model, eps, ranked attack), best accuracy under `attack` first
    (AutoAttack standard; `autoattack:plus` and `autoattack:rand` results rank in tables of their own); norm/eps are
    None for models with clean results only. A common-corruptions table (`corruptions`) has the benchmark
    (`cifar10-c`, `cifar10-c-generated`) as its norm and no eps, and ranks by mean corruption accuracy. The ranked
    accuracy is `Row.autoattack`."""

    dataset: str
    dataset_name: str
    split: str | None
    norm: str | None
    eps: float | None
    rows: list[Row] = field(default_factory=list)
    corruptions: bool = False
    attack: str = "autoattack"

    @property
    def threat(self) -> str:
        """`Linf, eps=8/255`, `common corruptions cifar10-c` (generated ones say so), or `clean only`."""
        if self.corruptions:
            generated = " (generated with imagecorruptions: not comparable with published CIFAR-10-C)"
            return f"common corruptions {self.norm}" + (generated if "-generated" in str(self.norm) else "")
        if not self.norm:
            return "clean only"
        version = f", {self.ranked}" if self.attack in RANKED_VERSIONS else ""
        return f"{self.norm}, eps={format_eps(self.eps, self.norm)}{version}"

    @property
    def ranked(self) -> str:
        """What the table ranks by: `AutoAttack`, `AutoAttack plus` / `AutoAttack rand`, or `Mean corruption
        accuracy`."""
        if self.corruptions:
            return "Mean corruption accuracy"
        return RANKED_VERSIONS.get(self.attack, "AutoAttack")

    @property
    def title(self) -> str:
        name = f" ({self.dataset_name})" if self.dataset_name != self.dataset else ""
        return f"{self.dataset}{name}, {self.split or 'unknown'} split, {self.threat}"


@dataclass
class Leaderboard:
    """The tables (sorted by dataset, split, threat model, eps) and one note per skipped source or metric."""

    tables: list[Table]
    notes: list[str]
    no_match: str | None = None
    """Why no table is left when filters removed every table (the filters and what the sources do have), else None."""


def coerce_number(value: Any) -> float | None:
    """A finite float from a number, a numeric string, "x ± y" / "x +- y" (-> x), "x%" (-> x) or a fraction "a/b";
    None when the value is none of these (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = PLUS_MINUS.split(value.strip())[0].removesuffix("%").strip()
        numerator, slash, denominator = text.partition("/")
        try:
            value = float(numerator) / float(denominator) if slash else float(text)
        except (ValueError, ZeroDivisionError):
            return None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def coerce_norm(value: Any) -> str | None:
    """`Linf` / `L2` / `L1` from the usual spellings (`linf`, `L_inf`, `inf`, `l2`, `l1`...), else None."""
    return NORMS.get(str(value).strip().lower()) if value is not None else None


def paired_p_value(first: dict[str, Any], second: dict[str, Any], attack: str) -> float | None:
    """McNemar p-value of `attack` between two `per_example` records on their common indices (None without any)."""
    flags = []
    for record in (first, second):
        index, correct = record.get("index"), record.get(attack)
        if not isinstance(index, list) or not isinstance(correct, list) or len(index) != len(correct):
            return None
        flags.append(dict(zip(index, correct, strict=True)))
    common = sorted(flags[0].keys() & flags[1].keys())
    if not common:
        return None
    return mcnemar_p_value([bool(flags[0][i]) for i in common], [bool(flags[1][i]) for i in common])


def read_source(source: str | Path) -> tuple[str, Path | None, str]:
    """(card text, local folder or None, link to the card) of a folder, README.md file or Hub id."""
    path = Path(source)
    if path.is_dir():
        path = path / CARD_NAME
        if not path.is_file():
            raise NotACard(f"{source}: no {CARD_NAME}, not a model folder")
    if path.is_file():
        if path.suffix.lower() != ".md":
            raise NotACard(f"{source}: not a markdown model card")
        return path.read_text(encoding="utf-8", errors="replace"), path.parent, str(path)
    if not HUB_ID.match(str(source)):
        raise NotACard(f"{source}: no such file or folder, and not a Hub id")
    try:
        card = Path(hf_hub_download(str(source), CARD_NAME))
    except Exception as error:  # offline, not found, gated, network: the source is skipped with the reason
        raise NotACard(f"{source}: could not download its card from the Hub ({type(error).__name__})") from error
    return card.read_text(encoding="utf-8", errors="replace"), None, f"{HUB_URL}/{source}"


def card_metadata(text: str, source: str | Path, folder: Path | None = None) -> dict[str, Any]:
    """The card's YAML metadata; without a model-index, one made of the `.eval_results` entries of its local
    `folder` (`entries_model_index`, the model named after the folder)."""
    match = REGEX_YAML_BLOCK.search(text)
    metadata: Any = {}
    if match:
        try:
            metadata = yaml.safe_load(match.group(2))
        except yaml.YAMLError as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise NotACard(f"{source}: invalid YAML metadata ({first_line}), not a model card") from error
    if isinstance(metadata, dict) and isinstance(metadata.get("model-index"), list):
        return metadata
    try:
        entries = load_eval_results(folder) if folder is not None else []
    except ValueError as error:
        raise NotACard(str(error)) from error
    if entries and isinstance(metadata, dict):
        return {**metadata, "model-index": entries_model_index(entries, folder.resolve().name)}
    if not match:
        raise NotACard(f"{source}: no YAML metadata, not a model card")
    raise NotACard(f"{source}: no model-index in its metadata, not a results card")


def _attack(metric: dict[str, Any]) -> str | None:
    """`clean`, `autoattack` or another attack name, from the metric's config, else from its name."""
    config = metric.get("config")
    if isinstance(config, str) and config:
        return config.lower()
    name = str(metric.get("name") or "").lower()
    if "autoattack" in name and "clean" not in name:
        return "autoattack"
    return "clean" if "clean" in name and "autoattack" not in name else None


def accuracy_of_metric(value: float, args: dict[str, Any]) -> Accuracy:
    """A model-index metric's value (percent) with its sample size and 95% interval from its `args`, where valid."""
    n = coerce_number(args.get("n_examples"))
    n = int(n) if n is not None and n >= 1 and n == int(n) else None
    bounds = args.get("interval_95")
    interval = None
    if isinstance(bounds, list | tuple) and len(bounds) == 2:
        low, high = coerce_number(bounds[0]), coerce_number(bounds[1])
        interval = (low, high) if low is not None and high is not None else None
    if interval is None and n is not None:
        low, high = wilson_interval(round(value / 100 * n), n)
        interval = (round(100 * low, 2), round(100 * high, 2))
    return Accuracy(value, n, interval)


def card_measurements(metadata: dict[str, Any], source: str | Path, notes: list[str]) -> dict[tuple, Accuracy]:
    """{(dataset type, dataset name, split, attack, norm, eps): accuracy} of a card (first value of each slot)."""
    found: dict[tuple, Accuracy] = {}
    for model in metadata["model-index"]:
        for result in (model or {}).get("results") or []:
            dataset = result.get("dataset") or {}
            if not dataset.get("type"):
                notes.append(f"{source}: a result without dataset.type skipped")
                continue
            for metric in result.get("metrics") or []:
                if str(metric.get("type", "")).lower() != "accuracy":
                    continue
                label = metric.get("name") or metric.get("config") or "accuracy"
                attack, value = _attack(metric), coerce_number(metric.get("value"))
                args = metric.get("args") if isinstance(metric.get("args"), dict) else {}
                if value is None:
                    notes.append(f"{source}: metric {label!r} skipped: value {metric.get('value')!r} is not a % value")
                    continue
                if not 0 <= value <= 100:
                    notes.append(
                        f"{source}: metric {label!r} skipped: value {metric.get('value')!r} is out of range "
                        "(an accuracy in % is between 0 and 100)"
                    )
                    continue
                if attack is None:
                    notes.append(f"{source}: metric {label!r} skipped: neither clean nor a named attack")
                    continue
                norm, eps = (None, None) if attack == "clean" else (coerce_norm(args.get("norm")), args.get("eps"))
                eps = None if eps is None else coerce_number(eps)
                if args.get("type") == "corruptions" or attack.partition(":")[0] == "corruptions":
                    attack, norm = "corruptions", corruption_benchmark(metric.get("config"), args)
                elif attack != "clean" and (norm is None or eps is None):
                    notes.append(
                        f"{source}: metric {label!r} skipped: no threat model in its args "
                        f"(norm={args.get('norm')!r}, eps={args.get('eps')!r})"
                    )
                    continue
                key = (str(dataset["type"]), str(dataset.get("name") or dataset["type"]), dataset.get("split"))
                found.setdefault(
                    (*key, attack, norm, None if eps is None else round(eps, 8)), accuracy_of_metric(value, args)
                )
    return found


def corruption_benchmark(config: Any, args: dict[str, Any]) -> str:
    """A corruptions result's table name: its benchmark (`cifar10-c`, `cifar10-c-generated`), with the corruptions
    of a subset (`corruptions:fog+snow`) appended, as a subset is another measurement."""
    subset = str(config or "").partition(":")[2]
    benchmark = str(args.get("benchmark") or "corruptions")
    return benchmark + (f" ({subset.replace('+', ', ')})" if subset else "")


def without_implausible(found: dict[tuple, Accuracy], source: str | Path, notes: list[str]) -> dict[tuple, Accuracy]:
    """`found` without the attack results above the clean accuracy of the same dataset and split (an attack can only
    lower accuracy: such a result is a typo or a different evaluation), one note naming the file for each; common
    corruptions are no attack (a corruption may leave accuracy above clean) and are kept."""
    kept = {}
    for key, accuracy in found.items():
        clean = found.get((*key[:3], "clean", None, None))
        if key[3] not in ("clean", "corruptions") and clean is not None and accuracy.value > clean.value:
            notes.append(
                f"{source}: {key[3]} accuracy {accuracy.value:g}% ({key[4]}, eps={format_eps(key[5], key[4])}) is "
                f"above its clean accuracy {clean.value:g}% on {key[0]} {key[2] or ''}: implausible, result skipped"
            )
            continue
        kept[key] = accuracy
    return kept


def robustness_reports_of(folder: Path | None, source: str | Path) -> list[dict[str, Any]]:
    """The reports of the card's robustness.json (local, else from the Hub when reachable; [] without one)."""
    try:
        path = folder / REPORTS_NAME if folder else Path(hf_hub_download(str(source), REPORTS_NAME))
        reports = json.loads(path.read_text()) if path.is_file() else []
    except Exception:  # no robustness.json (foreign card, offline Hub): no significance column for this model
        return []
    return [report for report in reports if isinstance(report, dict) and isinstance(report.get("per_example"), dict)]


def matching_report(reports: list[dict[str, Any]], table: Table, attack: str) -> dict[str, Any] | None:
    """The per-example records of the newest of `reports` measured on `table`'s dataset, split, threat model and eps
    with `attack`, or None."""
    for report in reversed(reports):
        dataset = report.get("dataset") or {}
        identity = dataset_identity(dataset.get("name"))
        same_data = table.dataset in (identity["type"], dataset.get("name")) or identity["name"] == table.dataset_name
        eps = coerce_number(report.get("eps"))
        same_threat = (
            coerce_norm(report.get("norm")) == table.norm
            and eps is not None
            and table.eps is not None
            and math.isclose(eps, table.eps, rel_tol=1e-6, abs_tol=1e-12)
        )
        if same_data and same_threat and dataset.get("split") == table.split and attack in report["per_example"]:
            return report["per_example"]
    return None


def plot_link(folder: Path | None, source: str | Path, text: str) -> str | None:
    """Where the card's robustness-vs-eps plot is (a local path or a Hub URL), or None without one."""
    if folder is not None:
        return str(folder / PLOT_NAME) if (folder / PLOT_NAME).is_file() else None
    return f"{HUB_URL}/{source}/resolve/main/{PLOT_NAME}" if PLOT_NAME in text else None
