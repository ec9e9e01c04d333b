"""Paired comparison of two published models from their `per_example.parquet` files: the difference in accuracy
under one attack, Newcombe's 95% interval and the exact McNemar p, by `RobustnessReport.compare` on the reports the
files hold, which refuses pairs measured on other images, data, splits, threat models or attack settings.

    python -m mixacm_hf.hub compare FIRST SECOND [--attack autoattack] [--dataset ID] [--split test]
        [--threat-model Linf] [--eps 8/255] [--json]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, hf_hub_download

from ..robustness import RobustnessReport, attack_title
from ..robustness.attacks import check_eps
from .folders import REPORTS_NAME, load_reports
from .leaderboard_cards import HUB_ID, Row, Table, coerce_norm
from .per_example import PER_EXAMPLE_NAME, read_per_example
from .results import format_eps


def load_records(source: str | Path) -> dict[int, RobustnessReport]:
    """The reports of the `per_example.parquet` of a model folder, such a file or a Hub model id (`read_per_example`).

    Raises:
        ValueError: naming the source: no such file or Hub id, a download that failed, or a file that is not one.
    """
    path = Path(source)
    if not path.exists() and HUB_ID.match(str(source)):
        try:
            path = Path(hf_hub_download(str(source), PER_EXAMPLE_NAME))
        except Exception as error:  # offline, not found, gated, network: the comparison is refused with the reason
            reason = type(error).__name__
            raise ValueError(f"{source}: could not download its {PER_EXAMPLE_NAME} ({reason}).") from error
    try:
        return read_per_example(path)
    except FileNotFoundError as error:
        raise ValueError(
            f"{source}: no {PER_EXAMPLE_NAME} (a card written before the file existed gets it when re-written; reports "
            "without per-example records need a new evaluation)."
        ) from error


def check_against_folder(source: str | Path, number: int, report: RobustnessReport) -> None:
    """Where `source` is a local model folder (or its per_example.parquet) with a robustness.json, report `number`
    of its per_example.parquet must hold the records of the folder's report `number`, and its accuracies the card's
    values of that measurement (the model-index metrics of the report's date): else the file was edited or copied
    from another folder, and a comparison from it would contradict the card.

    Raises:
        ValueError: naming the source, the report, the column and the values that disagree.
    """
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    if not path.exists() or not (folder / REPORTS_NAME).is_file():
        return  # a Hub download or a file on its own: nothing to check it by
    try:
        saved = load_reports(folder)
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{folder / REPORTS_NAME} cannot be read ({error}), so {source}'s {PER_EXAMPLE_NAME} cannot be checked "
            "against it: fix it, or re-evaluate the model."
        ) from error
    label = f"{source}: {PER_EXAMPLE_NAME}, report {number},"
    if number >= len(saved) or saved[number].per_example is None:
        raise ValueError(f"{label} is not in the folder's {REPORTS_NAME} ({len(saved)} reports){_REWRITE}")
    try:
        card = ModelCard.load(folder / "README.md").data.eval_results or []
    except Exception:  # no card, or not one: robustness.json alone is checked
        card = []
    for column, flags in report.per_example.items():
        theirs = saved[number].per_example.get(column)
        if flags != theirs:
            found = f"{100 * sum(theirs) / len(theirs):.2f}%" if theirs else "no records"
            raise ValueError(
                f"{label} {column!r}: its records (accuracy {100 * sum(flags) / len(flags):.2f}%) are not those of "
                f"the folder's {REPORTS_NAME} ({found}){_REWRITE}"
            )
        published = [
            result.metric_value for result in card
            if result.metric_config == column and isinstance(result.metric_value, (int, float))
            and (result.metric_args or {}).get("date") == saved[number].date
            and (result.metric_args or {}).get("n_examples") == report.n_examples
        ]  # fmt: skip
        value = 100 * sum(flags) / len(flags)
        if saved[number].date and any(abs(float(card_value) - value) > 0.005 + 1e-9 for card_value in published):
            raise ValueError(
                f"{label} {column!r}: its records give {value:.2f}%, but README.md's model-index says "
                f"{published[0]}% for that measurement{_REWRITE}"
            )


_REWRITE = (
    ": the file was edited or copied from another folder. Re-evaluate the model with training/evaluate_robustness.py "
    "--update_card, which rewrites it from the reports."
)


def _matches(report: RobustnessReport, attack: str, wanted: dict[str, Any]) -> bool:
    identity = report.dataset.get("identity") or {}
    names = (str(identity.get("type")).lower(), str(identity.get("name")).lower())
    dataset, split, norm, eps = (wanted.get(key) for key in ("dataset", "split", "norm", "eps"))
    return (
        attack in (report.per_example or {})
        and (dataset is None or dataset.lower() in names)
        and (split is None or report.dataset.get("split") == split)
        and (norm is None or report.norm == norm)
        and (eps is None or math.isclose(report.eps, eps, rel_tol=1e-6))
    )


def _select(source: str | Path, reports: dict[int, RobustnessReport], attack: str, wanted: dict[str, Any]) -> int:
    """The newest report of `source` with records of `attack` that matches `wanted` (dataset, split, norm, eps)."""
    found = [number for number, report in reports.items() if _matches(report, attack, wanted)]
    if found:
        return max(found)
    have = "; ".join(
        f"report {number}: {(r.dataset.get('identity') or {}).get('type')} {r.dataset.get('split')}, {r.norm} "
        f"eps={format_eps(r.eps, r.norm)}, {', '.join(name for name in r.per_example or {} if name != 'index')}"
        for number, r in reports.items()
    )
    labels = {"dataset": "dataset", "split": "split", "norm": "threat model", "eps": "eps"}
    eps = wanted["eps"]
    shown = {**wanted, "eps": None if eps is None else format_eps(eps, wanted["norm"] or "Linf") if eps <= 1 else eps}
    filters = ", ".join(f"{labels[key]} {value}" for key, value in shown.items() if value is not None)
    with_filters = f" with {filters}" if filters else ""
    raise ValueError(f"{source}: no per-example {attack!r} records{with_filters}; it has {have or 'no report'}.")


def compare_models(
    first: str | Path,
    second: str | Path,
    *,
    attack: str = "autoattack",
    dataset: str | None = None,
    split: str | None = None,
    threat_model: str | None = None,
    eps: float | None = None,
    z: float = 1.96,
) -> dict[str, Any]:
    """`RobustnessReport.compare` of the two models' reports (first - second) under `attack`, from their
    `per_example.parquet` (folders, files or Hub ids): the newest report of `first` with records of `attack` that
    matches the filters (dataset type or name, split, threat model, eps), and the newest of `second` that matches
    them and that report's dataset, split, threat model and eps (else the newest that matches the filters). Returns
    compare's dict (fractions) with `first`, `second`, their report numbers (`reports`), dataset, split, norm and eps.

    Raises:
        ValueError: an unknown threat model or an invalid eps (`check_eps`, with its "Did you mean 8/255" hint for
            Linf), or, naming the sources: no records, records that contradict their folder (`check_against_folder`),
            no matching report, or reports that are no paired
            measurements (other images, dataset, split, threat model or attack settings: `RobustnessReport.compare`).
    """
    norm = coerce_norm(threat_model) if threat_model else None
    if threat_model and norm is None:
        raise ValueError(f"Unknown threat model {threat_model!r}: use Linf, L2 or L1.")
    if eps is not None:
        check_eps(eps, norm or "L2", "eps")
    attack = attack.strip().lower()
    wanted = {"dataset": dataset, "split": split, "norm": norm, "eps": eps}
    mine, theirs = load_records(first), load_records(second)
    number = _select(first, mine, attack, wanted)
    chosen = mine[number]
    same = {"dataset": (chosen.dataset.get("identity") or {}).get("type"), "split": chosen.dataset.get("split"),
            "norm": chosen.norm, "eps": chosen.eps}  # fmt: skip
    try:
        other = _select(second, theirs, attack, {**same, **{k: v for k, v in wanted.items() if v is not None}})
    except ValueError:
        other = _select(second, theirs, attack, wanted)
    check_against_folder(first, number, chosen)
    check_against_folder(second, other, theirs[other])
    try:
        result = chosen.compare(theirs[other], attack, z=z)
    except ValueError as error:
        raise ValueError(f"{first} (report {number}) vs {second} (report {other}): {error}") from None
    return {"first": str(first), "second": str(second), "reports": [number, other], **same, **result}


def format_comparison(result: dict[str, Any]) -> str:
    """Two lines: what was compared, then the difference (percentage points), its interval and McNemar p."""
    low, high = (100 * bound for bound in result["interval"])
    return (
        f"{result['first']} (report {result['reports'][0]}) vs {result['second']} (report {result['reports'][1]}): "
        f"{attack_title(result['attack'])}, {result['norm']} eps={format_eps(result['eps'], result['norm'])}, "
        f"{result['dataset']} {result['split']}, n = {result['n_common']} common images\n"
        f"accuracy {100 * result['accuracy']:.2f}% vs {100 * result['other_accuracy']:.2f}%: difference "
        f"{100 * result['difference']:+.2f} points, 95% interval [{low:+.2f}, {high:+.2f}], exact McNemar p = "
        f"{result['p_value']:.3g} (discordant images: {result['only_this_correct']} right only for the first, "
        f"{result['only_other_correct']} only for the second)\n"
    )


def compare_rows(table: Table, first: Row, second: Row) -> str:
    """The comparison of two rows of a leaderboard table under the attack it ranks by (AutoAttack, or its plus/rand
    version) on the table's dataset, split and threat model (`format_comparison`), or why it is refused."""
    try:
        result = compare_models(
            first.folder or first.source, second.folder or second.source, attack=table.attack,
            dataset=table.dataset_name, split=table.split, threat_model=table.norm, eps=table.eps,
        )  # fmt: skip
    except ValueError as error:
        return f"Not compared: {error}"
    return format_comparison({**result, "first": first.model, "second": second.model})
