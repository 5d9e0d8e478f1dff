"""Durable file writes for the shared root: temp file in the same directory, fsync, rename, fsync dir.

A reader (the TUI, another cluster's poller) therefore sees either the old or the new file, never a
torn one, and a crash leaves at worst a stray ``.tmp-*`` file that the next write of the same path or
``slurm-sb doctor`` removes.
"""

import json
import os
import tempfile
from typing import Any

from .errors import StorageError

# Tests set this to a callable(path) to simulate a crash after the temp file is written but before the
# rename (the one window where a torn state could appear).
_before_rename_hook = None  # type: Optional[Any]


def atomic_write_bytes(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically and durably. Idempotent. Raises StorageError with the path."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=directory)
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc}", hint="check the permissions and free space of the shared root"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if _before_rename_hook is not None:
            _before_rename_hook(path)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {path}: {exc}") from exc
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    # The rename is durable only once the directory entry is on disk; some filesystems (NFS) refuse
    # fsync on a directory, and the rename is still atomic there, so failures are ignored.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def dumps(obj: Any) -> bytes:
    """Return compact, key-order-preserving JSON bytes with a trailing newline. Pure."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as compact JSON to ``path`` atomically. Idempotent. Raises StorageError."""
    atomic_write_bytes(path, dumps(obj))


def remove_stale_temps(directory: str, older_than_sec: float = 3600.0) -> int:
    """Delete ``.tmp-*`` files older than ``older_than_sec`` in ``directory``; return how many. Idempotent."""
    import time

    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    now = time.time()
    for name in names:
        if not name.startswith(".tmp-"):
            continue
        p = os.path.join(directory, name)
        try:
            if now - os.path.getmtime(p) > older_than_sec:
                os.unlink(p)
                removed += 1
        except OSError:
            pass
    return removed
