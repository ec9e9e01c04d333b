"""What produced a result: the versions of the packages involved and the git commit of this package's code, recorded
in robustness reports and training summaries so that a number can be traced to the code that made it."""

from __future__ import annotations

import functools
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
