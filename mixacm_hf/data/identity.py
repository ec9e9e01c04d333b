"""What a dataset is, for reports and cards: a Hub id, or a local copy named as itself (never as the Hub dataset it
may mirror), with a fingerprint of its files. Computed where the data are read (a relative path means something only
from the folder it was given in) and stored in each robustness report."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from huggingface_hub import metadata_load

LOCAL_COPY_SUFFIX = "-local-copy"
DATASET_README = "README.md"


def _looks_like_a_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything with more parts, a leading `.`, `/` or `~` is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _fingerprint(folder: Path) -> str:
    """A short revision for a local dataset copy: SHA-256 of its files' relative paths and sizes (12 hex digits)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))
    listing = "\n".join(f"{path.relative_to(folder).as_posix()}:{path.stat().st_size}" for path in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()[:12]


def dataset_identity(path_or_id: str | None, dataset_id: str | None = None) -> dict[str, Any]:
    """How a card names a dataset: `type` (model-index `dataset.type`), pretty `name`, `revision`, and `local`.

    A Hub id stays itself. A local folder is named as what it is, a local copy: `type` is `<folder>-local-copy`
    (never a Hub id, so the Hub does not index the results as results on the original dataset), `name` its README's
    `pretty_name`, `revision` a fingerprint of its files. A path that does not exist here (e.g. a relative path
    recorded elsewhere) is still a local copy, without fingerprint. `dataset_id` (the user's statement that the copy
    *is* that Hub dataset, `--card_dataset_id`) replaces the type; the name, revision and `local` keep the copy's
    provenance.
    """
    path = Path(path_or_id).expanduser() if path_or_id else None
    if path is not None and path.is_dir():
        readme = path / DATASET_README
        own = f"{path.resolve().name}{LOCAL_COPY_SUFFIX}"
        name = (metadata_load(readme) or {}).get("pretty_name", own) if readme.is_file() else own
        return {"type": dataset_id or own, "name": name, "revision": _fingerprint(path), "local": True}
    if path_or_id and _looks_like_a_path(path_or_id):
        own = f"{Path(path_or_id).name}{LOCAL_COPY_SUFFIX}"
        return {"type": dataset_id or own, "name": own, "revision": None, "local": True}
    return {"type": dataset_id or path_or_id or "unknown", "name": dataset_id or path_or_id or "unknown",
            "revision": None, "local": False}  # fmt: skip


def recorded_identity(dataset: dict[str, Any], dataset_id: str | None = None) -> dict[str, Any]:
    """The identity stored in a report's `dataset` record when it was evaluated (`identity`), else computed from its
    `name` here (reports written before identities were stored); `dataset_id` asserts a Hub id as in
    `dataset_identity`."""
    identity = dataset.get("identity")
    if identity is None:
        return dataset_identity(dataset.get("name"), dataset_id)
    if dataset_id is None:
        return dict(identity)
    return {**identity, "type": dataset_id, **({} if identity["local"] else {"name": dataset_id})}
