"""Atomic, locked file writes: a reader never sees a half-written file, and read-modify-write cycles of concurrent
processes do not lose each other's updates.

Writes go to a temporary file in the target's folder and are moved over the target with `os.replace` (atomic on
POSIX and Windows within one file system). Locks are `filelock.FileLock`s on a sibling `<name>.lock` file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_TIMEOUT_SECONDS = 600.0


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` with `data` in one step (temporary file in the same folder, fsync, `os.replace`).

    Raises:
        OSError: the folder is not writable; `path` is then left as it was.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def locked(path: str | os.PathLike, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold an exclusive inter-process lock for `path` (a `<name>.lock` file beside it) around a read-modify-write.

    Raises:
        filelock.Timeout: another process held the lock for longer than `timeout` seconds.
    """
    path = Path(path)
    with FileLock(str(path.parent / f".{path.name}.lock"), timeout=timeout):
        yield


@contextlib.contextmanager
def held_alone(folder: str | os.PathLike, flag: str) -> Iterator[None]:
    """Hold `folder` (given by the flag `flag`) for one process at a time while the body runs: a lock file
    `.<name>.lock` beside it (inside it when its parent is read-only), taken without waiting; the lock goes with the
    process, so a killed run leaves none behind. Only taking the lock is refused: errors of the body pass as they are.

    Raises:
        BlockingIOError: another process holds it (the message names `flag` and what to do).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder.parent / f".{folder.name}.lock"))
    try:
        try:
            lock.acquire(timeout=0)
        except PermissionError:  # a writable folder under a read-only parent
            folder.mkdir(exist_ok=True)
            lock = FileLock(str(folder / f".{folder.name}.lock"))
            lock.acquire(timeout=0)
    except Timeout:
        raise BlockingIOError(
            f"{flag} {folder} is in use by another run (it holds {lock.lock_file}): wait for that run to end, or "
            f"pass another {flag}."
        ) from None
    try:
        yield
    finally:
        lock.release()


def replace_marked_block(text: str, block: str, start: str, end: str) -> str | None:
    """`text` with what lies between its `start` and `end` markers replaced by `block` (markers kept); None when
    `text` lacks either marker (the caller decides: append, or leave the file alone)."""
    if start not in text or end not in text:
        return None
    head, rest = text.split(start, 1)
    return f"{head}{start}{block}{end}{rest.split(end, 1)[1]}"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes: 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
