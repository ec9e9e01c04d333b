"""What produced a result: the versions of the packages involved and the git commit of this package's code, recorded
in robustness reports and training summaries so that a number can be traced to the code that made it."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import Any

PACKAGES = ("mixacm-hf", "torch", "transformers", "datasets", "pyautoattack")


def package_versions() -> dict[str, str]:
    """{distribution name: installed version} of the packages a result depends on (those installed)."""
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


@functools.cache
def code_commit() -> dict[str, Any]:
    """{"commit": the git commit of the checkout this package runs from, "dirty": whether `mixacm_hf/` has uncommitted
    changes}; both None when it is not a git checkout (e.g. a wheel install: `package_versions` then says which).

    Read once per process, at the first call (`run_mixacm` calls it before training): the code a process runs is the
    code it imported, so a checkout that moves on while a long run goes on does not change what the run records.
    Returns a read-only mapping (the cached value)."""
    package = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=package, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", str(package)) if commit else None
    return MappingProxyType({"commit": commit, "dirty": None if status is None else bool(status)})


# the files of a model folder that say what the model computes (weights, architecture, input processing)
MODEL_FILES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", "config.json")


def model_identity(spec: str | None) -> str | None:
    """What a model spec (`--teacher`, `--student`) names, to tell whether two runs use the same model: a local file
    or folder by the sha256 of its weight and config files' contents (wherever it is, whatever its name), anything
    else (a preset name, a Hub id, a RobustBench entry) as it is spelled; None for None or ''."""
    if not spec:
        return None
    path = Path(spec).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(MODEL_FILES))
    else:
        return spec
    stamp = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _contents_sha256(stamp)


@functools.lru_cache(maxsize=16)
def _contents_sha256(stamp: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over the named files' contents, in name order (a file's name within its folder counts, not its path)."""
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(Path(name).name.encode() + b"\0")
        with open(name, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"
