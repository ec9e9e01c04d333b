"""Running a corruptions evaluation inside `evaluate_robustness`: its folder checked before anything is loaded, its
specs given their source, and its parts (corruption, severity) run batch by batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .batches import AttackRun
from .corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    CorruptionsFolder,
    benchmark_name,
    check_corruptible,
    check_corruptions_folder,
    check_folder_matches,
    imagecorruptions_version,
    summarise,
)
from .registry import AttackSpec
from .report import accuracy


def corruptions_folder(
    specs: list[AttackSpec], corruptions_dir: str | Path | None, n_examples: int | None
) -> CorruptionsFolder | None:
    """The checked folder of published corruptions (None: they are generated, and imagecorruptions must be
    installed), before anything is loaded.

    Raises:
        ValueError: a folder without a corruptions evaluation among the attacks, or one `check_corruptions_folder`
            refuses; no folder and no imagecorruptions to generate them.
    """
    wanted = [spec for spec in specs if spec.attack.role == "corruption"]
    if corruptions_dir is None:
        if wanted:
            imagecorruptions_version()
        return None
    if not wanted:
        raise ValueError(
            f"corruptions_dir {corruptions_dir} is given, but no corruptions evaluation is among the attacks: add "
            "corruptions to the attacks, or leave corruptions_dir out."
        )
    names = list(dict.fromkeys(name for spec in wanted for name in spec.corruptions or CORRUPTIONS))
    return check_corruptions_folder(corruptions_dir, names, n_examples or 1)


def corruption_specs(
    specs: list[AttackSpec],
    folder: CorruptionsFolder | None,
    x: torch.Tensor,
    labels: torch.Tensor,
    dataset_meta: dict[str, Any],
) -> list[AttackSpec]:
    """`specs` with each corruptions evaluation's source (folder or generated) and benchmark name; the folder checked
    against the evaluated images (count, size, labels in split order), or the images against imagecorruptions.

    Raises:
        ValueError: as `check_corruptions_folder`, `check_folder_matches` and `check_corruptible`.
    """
    wanted = [spec for spec in specs if spec.attack.role == "corruption"]
    if not wanted:
        return specs
    if folder is None:
        check_corruptible(x)
        source = {"benchmark": benchmark_name(dataset_meta, generated=True)}
    else:
        names = list(dict.fromkeys(name for spec in wanted for name in spec.corruptions or CORRUPTIONS))
        check_corruptions_folder(folder.path, names, len(x))
        check_folder_matches(folder, x, labels, "corruptions_dir")
        source = {"benchmark": benchmark_name(dataset_meta, generated=False), "corruptions_dir": folder.path,
                  "images_per_severity": folder.images, "sha256": tuple(folder.checksums(names).items())}  # fmt: skip
    return [replace(spec, **source) if spec.attack.role == "corruption" else spec for spec in specs]


def corruption_runs(specs: list[AttackSpec]) -> int:
    return sum(len(spec.corruptions or CORRUPTIONS) * len(SEVERITIES) for spec in specs)


def corruption_accuracy(
    run: AttackRun, spec: AttackSpec, folder: CorruptionsFolder | None
) -> tuple[dict[str, Any], float]:
    """`summarise`d accuracies of a corruptions evaluation, one part (corruption, severity) at a time: published
    images in place of the clean ones, or the clean ones corrupted batch by batch; and its seconds. No eps applies
    (its parts run at eps 0, which only names their progress)."""
    rows: dict[str, list[float]] = {}
    seconds = 0.0
    for name in spec.corruptions or CORRUPTIONS:
        for severity in SEVERITIES:
            part = replace(spec, name=f"{spec.name}/{name}-{severity}", corruptions=(name,), severity=severity)
            part_run = run if folder is None else replace(run, x=folder.pixels(name, severity, len(run.x)))
            rows.setdefault(name, []).append(accuracy(part_run.correct(part, 0.0)))
            seconds += part_run.seconds[part.name, 0.0]
    return summarise(rows), seconds
