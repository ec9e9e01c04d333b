"""A RobustBench-style leaderboard read from model cards: one table per (dataset, split, threat model, eps).

Cards come from local folders, README.md files or Hub ids; their `model-index` metadata (for a local folder whose
README.md has none, its `.eval_results/*.yaml`, read as the same results) gives the accuracies (in %),
`mixacm` metadata the architecture and training cost. Cards written elsewhere are read as far as they are unambiguous:
numeric strings, "61.2 ± 1.1" (-> 61.2) and "61.2%" values, "8/255" budgets and "linf"/"l2" norms are coerced; any
other value skips that metric (or card) with a note naming the file, as do values outside [0, 100], a card whose
accuracies are all in [0, 1] with one above 0 (fractions, not %) and an attack result above the clean accuracy of the
same data (implausible). Files that are not model cards are skipped with a note. Results on different datasets,
splits or threat models are never ranked together (RobustBench keeps one leaderboard per dataset and threat model);
common corruptions have tables of their own, one per benchmark (published `cifar10-c` files apart from
`cifar10-c-generated` images), ranked by mean corruption accuracy.
Models of different sources with the same name get their source appended.

Where two neighbouring models of a table both have per-example AutoAttack records on common examples (a
`per_example` dict `{"index": [...], "clean": [...], "<attack>": [...], "all": [...]}` in a report of their
robustness.json), the table gives the exact McNemar p-value of their difference (two-sided binomial test on the
discordant pairs; McNemar, 1947).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from ..robustness.attacks import check_eps
from .leaderboard_cards import (
    RANKED_VERSIONS,
    Accuracy,
    Leaderboard,
    NotACard,
    Row,
    Table,
    card_measurements,
    card_metadata,
    coerce_norm,
    matching_report,
    paired_p_value,
    plot_link,
    read_source,
    robustness_reports_of,
    without_implausible,
)
from .results import format_eps


def leaderboard(
    sources: Iterable[str | Path],
    *,
    dataset: str | None = None,
    split: str | None = None,
    threat_model: str | None = None,
    eps: float | None = None,
) -> Leaderboard:
    """Tables of the cards in `sources` (folders, README.md files or Hub ids), one per (dataset, split, norm, eps).

    `dataset` keeps the tables whose dataset type or name is it (case-insensitive), `split`, `threat_model`
    (`Linf`/`L2`/`L1`, `corruptions` for the common-corruptions tables) and `eps` (pixel units) likewise; when the
    filters leave no table, `no_match` names them and the tables the sources do have. Unreadable sources, unusable
    metrics and implausible results (an attack above the clean accuracy) become `notes` (one line each, naming the
    file); nothing raises for a bad card. Models of different sources with the same name get their source appended.

    Raises:
        ValueError: for an unknown `threat_model`, or an `eps` that is not a finite number >= 0 or, with threat
            model Linf, 1 or above (with the "Did you mean 8/255" hint of `check_eps`; without a threat model that
            hint ends `no_match` instead, as L2 budgets may exceed 1).
    """
    corruptions = bool(threat_model) and str(threat_model).strip().lower() == "corruptions"
    wanted_norm = coerce_norm(threat_model) if threat_model and not corruptions else None
    if threat_model and wanted_norm is None and not corruptions:
        raise ValueError(f"Unknown threat model {threat_model!r}: use Linf, L2, L1 or corruptions.")
    if eps is not None:
        check_eps(eps, wanted_norm or "L2", "eps")
    notes: list[str] = []
    tables: dict[tuple, Table] = {}
    for source in sources:
        try:
            text, folder, link = read_source(source)
            metadata = card_metadata(text, source, folder)
            found = card_measurements(metadata, source, notes)
        except NotACard as error:
            notes.append(f"{error}; skipped")
            continue
        except (AttributeError, TypeError) as error:  # a model-index of the wrong shape (a string for a mapping...)
            notes.append(f"{source}: malformed model-index ({type(error).__name__}: {error}); skipped")
            continue
        # 0 is 0% and 0.0 alike: only values in (0, 1] with none above 1 suggest fractions
        if any(value.value > 0 for value in found.values()) and all(value.value <= 1 for value in found.values()):
            notes.append(f"{source}: every accuracy <= 1: fractions rather than % values? card skipped")
            continue
        found = without_implausible(found, source, notes)
        clean = {key[:3]: value for key, value in found.items() if key[3] == "clean"}
        facts = metadata.get("mixacm") if isinstance(metadata.get("mixacm"), dict) else {}
        first = metadata["model-index"][0] if metadata["model-index"] else None
        name = str(first.get("name") if isinstance(first, dict) and first.get("name") else Path(str(source)).name)
        threats: dict[tuple, str] = {}  # (dataset, name, split, norm, eps, ranked attack) -> that attack
        for key in found:
            if key[3] != "clean":
                ranked = key[3] if key[3] in ("corruptions", *RANKED_VERSIONS) else "autoattack"
                threats.setdefault((*key[:3], key[4], key[5], ranked), ranked)
        for data in clean.keys() - {threat[:3] for threat in threats}:
            threats[(*data, None, None, "autoattack")] = "autoattack"
        for (data_type, data_name, data_split, norm, budget, _), ranked in threats.items():
            corrupted = ranked == "corruptions"
            tables.setdefault(
                (data_type, data_split, norm, budget, ranked),
                Table(data_type, data_name, data_split, norm, budget, corruptions=corrupted, attack=ranked),
            ).rows.append(
                Row(
                    model=name, link=link, clean=clean.get((data_type, data_name, data_split)),
                    autoattack=found.get((data_type, data_name, data_split, ranked, norm, budget)), facts=facts,
                    source=str(source), folder=folder, plot=plot_link(folder, source, text),
                )
            )  # fmt: skip
        if not found:
            notes.append(f"{source}: no usable accuracy in its model-index; skipped")
    _disambiguate([row for table in tables.values() for row in table.rows])
    selected = [
        table
        for table in tables.values()
        if (dataset is None or dataset.lower() in (table.dataset.lower(), table.dataset_name.lower()))
        and (split is None or table.split == split)
        and (wanted_norm is None or table.norm == wanted_norm)
        and (not corruptions or table.corruptions)
        and (eps is None or (table.eps is not None and math.isclose(table.eps, eps, rel_tol=1e-6)))
    ]
    for table in selected:
        _rank(table)
    no_match = None
    if tables and not selected:
        filters = {"dataset": dataset, "split": split, "threat model": wanted_norm, "eps": eps}
        if eps is not None:
            filters["eps"] = format_eps(eps, wanted_norm or "Linf") if eps <= 1 else f"{eps:g}"
        wanted = ", ".join(f"{key} {value}" for key, value in filters.items() if value is not None)
        have = "; ".join(sorted(table.title for table in tables.values()))
        no_match = f"no table matches the filters ({wanted}); the sources have: {have}."
        if eps is not None and eps > 1 and wanted_norm is None:
            try:
                check_eps(eps, "Linf", "eps")
            except ValueError as error:
                no_match += f" {error}"
    return Leaderboard(_sorted(selected), notes, no_match)


def _sorted(tables: Iterable[Table]) -> list[Table]:
    return sorted(tables, key=lambda t: (t.dataset, t.split or "", t.norm or "~", t.eps or 0, t.attack))


def _disambiguate(rows: list[Row]) -> None:
    """Append the source (path or Hub id) to the names that models of different sources share."""
    sources: dict[str, set[str]] = {}
    for row in rows:
        sources.setdefault(row.model, set()).add(row.source)
    for row in rows:
        if len(sources[row.model]) > 1:
            row.model = f"{row.model} ({row.source})"


def _rank(table: Table) -> None:
    """Sort by AutoAttack (a corruptions table: mean corruption accuracy; models without one last), then clean;
    p-values between neighbours with AutoAttack records (corruptions have no per-example records)."""
    table.rows.sort(
        key=lambda row: (
            row.autoattack is None,
            -(row.autoattack.value if row.autoattack else 0),
            -sort_value(row.clean),
        )
    )
    for row in table.rows:
        if table.norm and row.autoattack and not table.corruptions:
            row.per_example = matching_report(robustness_reports_of(row.folder, row.source), table, table.attack)
    for row, below in zip(table.rows, table.rows[1:], strict=False):
        if row.per_example and below.per_example:
            row.p_value_vs_next = paired_p_value(row.per_example, below.per_example, table.attack)


def sort_value(accuracy: Accuracy | None) -> float:
    return accuracy.value if accuracy else 0.0
