"""Labels: the one range check (`check_labels`), the label column's type (`check_label_feature`), class names of
datasets and models, labels matched by name (`label_order`) and the class-balanced selections of a split
(`class_balanced_prefix`, `class_balanced_holdout`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np

logger = logging.getLogger(__name__)

# names that say only the index: transformers' default `id2label` (LABEL_0, ...), class_0, ... and the names of a
# `datasets.ClassLabel(num_classes=n)` ("0", "1", ...)
_PLACEHOLDER = re.compile(r"((label|class)[_ -]?)?\d+")


def check_labels(
    labels: Sequence[int] | np.ndarray | Any,
    num_labels: int | None,
    split: str | None = None,
    rows: Sequence[int | None] | None = None,
    classes_of: str = "the dataset",
) -> None:
    """Labels must be class indices in [0, num_labels) of `classes_of` ("the dataset" or "the model"); no check when
    `num_labels` is None. `rows` are the labels' row numbers in `split` (None where unknown: a stream's batch).

    Raises:
        ValueError: naming the split, the first bad rows (or positions) and their labels, and what to do.
    """
    if num_labels is None:
        return
    labels = np.asarray(labels).reshape(-1)
    bad = np.flatnonzero((labels < 0) | (labels >= num_labels))
    if not len(bad):
        return
    batch = " of a batch" if rows is not None else ""  # a stream's batch, else the examples evaluated
    rows = [None] * len(labels) if rows is None else rows
    shown = ", ".join(
        f"row {rows[i]}: {labels[i]}" if rows[i] is not None else f"position {i}{batch}: {labels[i]}" for i in bad[:5]
    )
    where = f" of the {split!r} split" if split else ""
    if classes_of == "the model":
        advice = (
            f"the model has {num_labels} classes (0..{num_labels - 1}): evaluate the model on a split of its own "
            "classes (a model trained on those labels, or a split relabelled/filtered to the model's classes)."
        )
    else:
        advice = "labels must be class indices of the dataset's classes. Fix the labels or the --label_column."
    raise ValueError(f"{len(bad)} label(s){where} are outside [0, {num_labels}) ({shown}): {advice}")


def check_label_feature(feature: Any, column: str, where: str) -> None:
    """Labels are class indices: a ClassLabel (whose names are matched to a model's by name) or integers. Strings
    (class names whose order nothing states) and other values are refused.

    Raises:
        ValueError: naming the column, its type and how to store it as a ClassLabel.
    """
    if feature is None or isinstance(feature, datasets.ClassLabel):
        return
    dtype = getattr(feature, "dtype", type(feature).__name__)
    if isinstance(feature, datasets.Value) and dtype.startswith(("int", "uint")):
        return
    what = "strings (class names)" if dtype in ("string", "large_string") else f"{dtype} values"
    raise ValueError(
        f"The label column {column!r} of {where} holds {what}, not class indices: the classes' order (which index "
        "each class is) cannot be told from them. Store the column as a datasets.ClassLabel with the class names "
        f"in their order, e.g. dataset.cast_column({column!r}, ClassLabel(names=[...])) and save it again; its "
        "labels are then matched to the model's classes by name."
    )


def named_classes(names: Sequence[Any] | None) -> list[str] | None:
    """`names` as strings, or None when there are none or only placeholders (LABEL_0, ..., class_0, ..., 0, ...)."""
    names = [str(name) for name in names or ()]
    if not names or all(_PLACEHOLDER.fullmatch(name.strip().lower()) for name in names):
        return None
    return names


def model_class_names(model: Any, fold_case: bool = False) -> list[str] | None:
    """A model's class names in index order (`config.id2label`, of the model or of the module it wraps; with
    `fold_case` stripped and lower-cased, to compare), or None when it has none or only placeholders."""
    config = getattr(model, "config", None) or getattr(getattr(model, "model", None), "config", None)
    id2label = getattr(config, "id2label", None) or {}
    names = named_classes([id2label[key] for key in sorted(id2label, key=int)])
    return [_key(name) for name in names] if fold_case and names else names


def model_num_labels(model: Any) -> int | None:
    """A model's `config.num_labels`, or None when it has no config."""
    config = getattr(model, "config", None)
    return getattr(config, "num_labels", None) if config is not None else None


def _key(name: str) -> str:
    return name.strip().lower()


def label_order(
    data_names: Sequence[str] | None,
    model_names: Sequence[str] | None,
    data: str = "the dataset",
    model: str = "the model",
) -> list[int] | None:
    """The model's index of each of the data's classes, matched by name (case and surrounding spaces ignored), or
    None when both name them in the same order. Where one side has no names (`named_classes`) labels are used by
    position, with a warning when the other side has names.

    Raises:
        ValueError: the data has classes the model does not name, naming the classes on each side.
    """
    data_names, model_names = named_classes(data_names), named_classes(model_names)
    if data_names is None or model_names is None:
        if data_names or model_names:
            named, unnamed = (data, model) if data_names else (model, data)
            logger.warning(
                "%s names its classes but %s does not: labels are matched by position (class i of one is class i "
                "of the other), unchecked.", named[0].upper() + named[1:], unnamed,
            )  # fmt: skip
        return None
    data_keys, model_keys = [_key(name) for name in data_names], [_key(name) for name in model_names]
    if data_keys == model_keys:
        return None
    index = {key: i for i, key in enumerate(model_keys)}
    unknown = [name for name, key in zip(data_names, data_keys) if key not in index]
    if unknown:
        missing = [name for name, key in zip(model_names, model_keys) if key not in set(data_keys)]
        partial = len(unknown) < len(data_names)  # the whole lists say more than the differences
        raise ValueError(
            f"The classes of {data} differ from {model}'s: {data} has {_listed(unknown)} where {model} has "
            f"{_listed(missing) if missing else 'no such class'}"
            + (f" ({data}: {data_names}; {model}: {model_names})" if partial else "")
            + f". Labels are matched by name: use data of {model}'s classes (e.g. rename the class folder) or a model "
            "of the data's."
        )
    return [index[key] for key in data_keys]


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def class_balanced_prefix(labels: Sequence[int] | np.ndarray, fraction: float) -> list[int]:
    """Row indices (in split order) of the first round(fraction * n_c) rows of each class c: the same images for
    every method trained on that fraction (paper Fig. 3's few-data setting), each class in its share of the split.

    Raises:
        ValueError: `fraction` outside (0, 1], or a class left without a row.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    labels = np.asarray(labels)
    keep = np.zeros(len(labels), dtype=bool)
    classes, sizes = np.unique(labels, return_counts=True)
    for label, size in zip(classes, sizes):
        rows = np.flatnonzero(labels == label)
        if round(fraction * size) == 0:
            raise ValueError(
                f"--train_fraction {fraction} keeps no image of class {label} ({size} in the split): give at least "
                f"{1 / sizes.min():.2g} (one image of the smallest class, {sizes.min()} images)."
            )
        keep[rows[: round(fraction * size)]] = True
    return np.flatnonzero(keep).tolist()


def class_balanced_holdout(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> list[int]:
    """Row indices (in split order) of round(fraction * n_c) rows of each class c drawn at random with `seed`: a
    validation set held out of a training split, the same rows for the same labels, fraction and seed.

    Raises:
        ValueError: `fraction` outside (0, 1), no row held out, or a class left without a training row.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"--validation_fraction {fraction}: give a number in (0, 1).")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    classes, sizes = np.unique(labels, return_counts=True)
    for label, size in zip(classes, sizes):
        count = round(fraction * size)
        if count >= size:
            raise ValueError(
                f"--validation_fraction {fraction} holds out every image of class {label} ({size} in the split): "
                "give a smaller fraction."
            )
        held[rng.permutation(np.flatnonzero(labels == label))[:count]] = True
    if not held.any():
        raise ValueError(
            f"--validation_fraction {fraction} holds out no image ({len(labels)} in the split): give a larger fraction."
        )
    return np.flatnonzero(held).tolist()
