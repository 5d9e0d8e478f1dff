"""Durable file writes for the shared root: temp file in the same directory, fsync, rename, fsync dir.

A reader (the TUI, another cluster's poller) therefore sees either the old or the new file, never a
torn one, and a crash leaves at worst a stray ``.tmp-*`` file, which the next poll of that cluster removes
once it is an hour old (``stale_temps``, ``Poller.sweep_temps``; ``slurm-sb doctor`` counts them).
"""

import contextlib
import json
import os
import tempfile
from typing import Any

from slurmctl.portable import diskio

from .errors import StorageError

_HINT = "check free space, quotas, the file size limit (`ulimit -f`) and permissions under the root"

# Tests set this to a callable(path) to simulate a crash after the temp file is written but before the
# rename (the one window where a torn state could appear).
_before_rename_hook = None  # type: Any


def atomic_write_bytes(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically and durably. Idempotent. Raises StorageError with the path."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=directory)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}", hint=_HINT) from exc
    try:
        try:
            diskio.write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        if _before_rename_hook is not None:
            _before_rename_hook(path)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {path}: {exc}", hint=_HINT) from exc
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


def stale_temps(top: str, older_than_sec: float = 3600.0) -> list:
    """Return the ``.tmp-*`` files older than ``older_than_sec`` anywhere under ``top``. Reads listings."""
    import time

    now = time.time()
    found = []
    for d, _dirs, names in os.walk(top):
        for name in names:
            if name.startswith(".tmp-"):
                p = os.path.join(d, name)
                with contextlib.suppress(OSError):
                    if now - os.lstat(p).st_mtime > older_than_sec:
                        found.append(p)
    return found


_SYNCFS_MIN_FILES = 32  # a batch this big is flushed with one syncfs(2) where diskio.syncfs_suits
_suits_by_dev = {}  # type: dict


def _flush(temps: list) -> None:
    """Make the data of every (fd, tmp, path) durable before any rename. Raises StorageError."""
    for fd, _tmp, path in temps:
        try:
            os.fchmod(fd, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc
    if len(temps) >= _SYNCFS_MIN_FILES:
        by_dev = {}
        for fd, tmp, _path in temps:
            by_dev.setdefault(os.fstat(fd).st_dev, (fd, tmp))
        for dev, (_fd, tmp) in by_dev.items():
            if dev not in _suits_by_dev:
                _suits_by_dev[dev] = diskio.syncfs_suits(tmp)
        syncfs = diskio.load_syncfs()
        if all(_suits_by_dev[dev] for dev in by_dev) and all(syncfs(fd) == 0 for fd, _t in by_dev.values()):
            return
    for fd, _tmp, path in temps:
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc


class BatchWriter:
    """Atomic, durable writes of many files at once: every file still goes temp → flushed → rename, but
    the phases are batched (all temps written, then all flushed — one syncfs per filesystem for big
    batches, else fsync each — then all renamed, then each directory fsynced once). Used for the
    derived files (thousands of per-user files on a big cluster). Not thread-safe.
    """

    def __init__(self) -> None:
        self.pending = []  # type: list

    def add_json(self, path: str, obj: Any) -> None:
        self.pending.append((path, dumps(obj)))

    def commit(self) -> int:
        """Write every pending file; return how many. Raises StorageError naming the failing path."""
        temps = []
        try:
            for path, data in self.pending:
                directory = os.path.dirname(path) or "."
                try:
                    os.makedirs(directory, exist_ok=True)
                    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=directory)
                    temps.append((fd, tmp, path))
                    diskio.write_all(fd, data)
                except OSError as exc:
                    raise StorageError(f"cannot write {path}: {exc}", hint=_HINT) from exc
            _flush(temps)
            for fd, _tmp, _path in temps:
                os.close(fd)
            closed = True
            if _before_rename_hook is not None:
                for _fd, _tmp, path in temps:
                    _before_rename_hook(path)
            for _fd, tmp, path in temps:
                os.replace(tmp, path)
        except BaseException:
            if not locals().get("closed"):
                for fd, _tmp, _path in temps:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            for _fd, tmp, _path in temps:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        for directory in sorted({os.path.dirname(p) or "." for _f, _t, p in temps}):
            _fsync_dir(directory)
        n = len(self.pending)
        self.pending = []
        return n
