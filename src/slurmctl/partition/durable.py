"""Durable file writes for the partitioner: atomic JSON files, and batch files fsynced in groups.

A batch file is written to a temp name (``.b0000000.jsonl.tmp``) and renamed to its final name by the
commit that records it in the state file; a commit happens only after the batch files, the rejects
file, the batch log and the directory entries are on stable storage. So a file under a batch's final
name is always complete and fsynced (temp → fsync → rename, the project's rule for every output), and
a resumed run deletes every batch file past the last commit, temp or not. (Writing final names at
once saves one rename per batch — ~1,000 per million records, within noise here — and would let a
reader that globs the directory see a partial batch, so we do not.)

A reference batch (``ref_inputs``, docs/partitioning.md) has no file at all: while its writes continue
an input's own bytes only their sha256 is computed; if it stops qualifying, its file is created then,
with the bytes referred to so far copied from the input in the kernel (``copy_file_range``). The batch
log and state commit it like any other batch; there is nothing of it to sync.

How a group is made durable, while parsing continues:

- On a local ext2/3/4, XFS or btrfs under Linux >= 5.8 (``syncfs_suits``): one ``syncfs(2)`` of the
  output's file system, in a thread (ctypes releases the GIL, and the thread needs it back only once
  per group). It writes back every dirty page and inode of that file system and flushes the device
  cache, and reports writeback errors since 5.8. It replaces one fsync per file, each of which on ext4
  also writes the parent directory and flushes the device cache (512 of them per group, contending
  with the parser's file creations in the same directory). Measured with bench/partition_vs_split.py:
  5M records 6.28 s -> 5.03 s wall, 5.65 s -> 4.67 s CPU (4 alternating runs each). The cost: it also
  writes back other programs' dirty data on that file system, which a busy shared disk makes slower.
- Elsewhere (NFS, Lustre, GPFS, ... where syncfs's guarantees vary): coreutils ``sync FILE...`` (it
  fsyncs each file) in 8 child processes at once. Not a thread per fsync: it would have to win the GIL
  back from the parser after every fsync. Several children because fsyncs in flight at the same time
  share a journal commit (jbd2 group commit): on ext4 one ``sync`` over 1000 new files took 5-6 s,
  8 children over the same files about 0.5 s. Without ``sync`` on PATH: in-process threads.

Then the batch log is appended and fsynced, the directory fsynced and the state file replaced; each of
those fsyncs also flushes the device cache, so the state never names a batch before its bytes are on
stable storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from slurmctl.errors import StorageError

# The rule for when one syncfs(2) may replace per-file fsyncs, and write_all, are shared with the
# scoreboard: slurmctl.portable holds them (standard library only, Python 3.6-compatible).
from slurmctl.portable.diskio import SYNCFS_TYPES as SYNCFS_TYPES
from slurmctl.portable.diskio import fs_type as fs_type
from slurmctl.portable.diskio import load_syncfs as _load_syncfs
from slurmctl.portable.diskio import syncfs_suits
from slurmctl.portable.diskio import write_all as _write_all

from .model import BatchInfo

if TYPE_CHECKING:
    import subprocess

STATE_NAME = "_partition.json"
BATCH_LOG_NAME = "_batches.jsonl"
REJECTS_NAME = "rejects.jsonl"


def batch_id(index: int) -> str:
    """Returns the id of batch ``index``: "b" + the index zero-padded to 7 digits."""
    return f"b{index:07d}"


def fsync_dir(path: Path) -> None:
    """Make the directory entries of ``path`` (creations, renames) durable. Idempotent."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path``: temp file, fsync, rename, fsync of the directory.

    Readers see the old or the new file, never a mix. Idempotent.
    Raises: StorageError when the file system refuses.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc


def _log_line(info: BatchInfo) -> bytes:
    return json.dumps(info.to_dict(), sort_keys=True).encode() + b"\n"


def _copy_range(path: str, offset: int, length: int, out_fd: int) -> None:
    """Append ``length`` bytes at ``offset`` of the file ``path`` to ``out_fd`` (in the kernel where it
    can). Raises: OSError, also when the file is shorter (it changed while being partitioned)."""
    with open(path, "rb") as src:
        left = length
        while left:
            try:
                n = os.copy_file_range(src.fileno(), out_fd, left, offset)
            except OSError:  # e.g. EXDEV on old kernels, or a file system without it
                data = os.pread(src.fileno(), min(left, 1 << 20), offset)
                n = len(data)
                _write_all(out_fd, data)
            if n == 0:
                raise OSError(f"{path} ended at byte {offset}, {left} bytes early: it changed")
            offset += n
            left -= n


class RejectsFile:
    """``rejects.jsonl``, appended on the main thread, created at the first reject."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size  # bytes written so far (the durable prefix is recorded in the state)
        self._fh: BinaryIO | None = None
        self.count = 0

    def append(self, source: str, line: int, reason: str, excerpt: str) -> None:
        """Append one reject. Raises: StorageError."""
        data = json.dumps(
            {"source": source, "line": line, "reason": reason, "excerpt": excerpt}, ensure_ascii=False
        ).encode("utf-8", "backslashreplace")
        try:
            if self._fh is None:
                self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()
            self._fh.write(data + b"\n")
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc}") from exc
        self.size += len(data) + 1
        self.count += 1

    def flush(self) -> None:
        """Hand buffered rejects to the OS (durability is the committer's job). Raises: StorageError."""
        if self._fh is not None:
            try:
                self._fh.flush()
            except OSError as exc:
                raise StorageError(f"cannot write {self.path}: {exc}") from exc

    def exists(self) -> bool:
        """Returns whether the rejects file has been created (by this run or the interrupted one)."""
        return self._fh is not None or self.size > 0

    def close(self) -> None:
        """Flush and close. Idempotent."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class BatchWriter:
    """Writes batch files and commits them in groups; see the module docstring.

    Use: ``open_batch`` → ``write``* → ``close_batch`` per batch, ``checkpoint`` after a batch closed
    (it commits when a group is due), ``finish`` at the end.
    """

    GROUP_BATCHES = 512
    GROUP_SECONDS = 5.0
    SYNC_PARALLEL = 8  # fsyncs in flight at once; see the module docstring
    USE_SYNCFS = True  # where syncfs_suits(); False: always per-file fsync

    def __init__(
        self,
        out_dir: Path,
        log_bytes: int,
        batches: list[BatchInfo],
        rejects: RejectsFile,
        ref_inputs: list[tuple[str, int] | None] | None = None,
    ) -> None:
        """``ref_inputs[src]``: (absolute path, size) of input ``src`` when a batch made only of its own
        bytes may refer to them instead of being copied (reference batches), else None."""
        self.out_dir = out_dir
        self.ref_inputs = ref_inputs or []
        # the open batch while it is still only a reference: (input index, offset of its first byte)
        self._ref: tuple[int, int] | None = None
        self.batches = batches  # committed (in the state file) or pending a commit
        self.rejects = rejects
        self._log_path = out_dir / BATCH_LOG_NAME
        self._log_bytes = log_bytes
        self._fd: int | None = None
        self._dir = str(out_dir)  # plain strings: pathlib costs ~10 us per batch file name
        self._path: str | None = None
        self._hash: Any = None
        self._size = 0
        # closed batches not yet handed to a sync: (temp path or None for a reference, BatchInfo)
        self._pending: list[tuple[str | None, BatchInfo]] = []
        # the group being synced: its batches, the state to commit after, the child
        self._syncing: (
            tuple[list[tuple[str | None, BatchInfo]], dict[str, Any], list[subprocess.Popen[bytes]]] | None
        ) = None
        self._last_group = time.monotonic()
        self._committed = len(batches)
        # how to sync a group: decided at the first group with files (reference batches have none)
        self._syncfs: bool | None = None
        self._sync_cmd: str | None = None

    def open_batch(self, index: int) -> None:
        """Start batch ``index``. Its temp file is created at the first write that cannot be a reference."""
        # A temp name until the commit renames it: a file under a final name is always complete.
        self._path = f"{self._dir}/.{batch_id(index)}.jsonl.tmp"
        self._fd = None
        self._ref = None
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes | memoryview, source: int | None = None, offset: int = 0) -> None:
        """Append ``data`` to the open batch. ``source``/``offset``: ``data`` are the bytes at ``offset``
        of input ``source`` (None: they are not the input's own bytes). While every write continues the
        same input's bytes, and that input may be referred to, nothing is written: the batch will be a
        reference. Raises: StorageError."""
        if self._fd is None:
            ref = self._ref
            inp = self.ref_inputs[source] if source is not None and source < len(self.ref_inputs) else None
            if (
                inp is not None
                # a last line without its newline gets one in the batch: not the input's bytes then
                and offset + len(data) <= inp[1]
                and (ref is None if self._size == 0 else ref == (source, offset - self._size))
            ):
                if ref is None:
                    self._ref = (source, offset)
                self._hash.update(data)
                self._size += len(data)
                return
            self._create_file()
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            raise StorageError(f"cannot write {self._path}: {exc}") from exc
        self._hash.update(data)
        self._size += len(data)

    def _create_file(self) -> None:
        """Create the open batch's temp file, with the input bytes it referred to so far."""
        assert self._path is not None
        try:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            if self._ref is not None:
                inp = self.ref_inputs[self._ref[0]]
                assert inp is not None
                _copy_range(inp[0], self._ref[1], self._size, self._fd)
        except OSError as exc:
            raise StorageError(f"cannot create {self._path}: {exc}") from exc
        self._ref = None

    def close_batch(self, meta: dict[str, Any]) -> None:
        """Finish the open batch; ``meta`` supplies the rest of its BatchInfo. Raises: StorageError."""
        assert self._path is not None
        ref_path = ref_offset = None
        if self._fd is None and self._ref is None:
            self._create_file()  # an empty batch (not made by the batcher): still a real file
        if self._fd is None:
            assert self._ref is not None
            inp = self.ref_inputs[self._ref[0]]
            assert inp is not None
            ref_path, ref_offset = inp[0], self._ref[1]
            self._ref = None
        else:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:
                raise StorageError(f"cannot write {self._path}: {exc}") from exc
        info = BatchInfo(
            batch_id=batch_id(meta["index"]),
            bytes=self._size,
            sha256=self._hash.hexdigest(),
            ref_path=ref_path,
            ref_offset=ref_offset,
            **meta,
        )
        self.batches.append(info)
        self._pending.append((None if ref_path else self._path, info))

    def checkpoint(self, state: Callable[[], dict[str, Any]]) -> None:
        """Called between batches: finish a sync that is done, start one for a due group.

        ``state()`` is what to record once every batch closed so far is durable.
        Raises: StorageError.
        """
        if self._syncing is not None and all(c.poll() is not None for c in self._syncing[2]):
            self._complete_sync()
        due = (
            len(self._pending) >= self.GROUP_BATCHES
            or time.monotonic() - self._last_group >= self.GROUP_SECONDS
        )
        if self._syncing is None and self._pending and due:
            self._start_sync(state())

    def finish(self, state: dict[str, Any]) -> None:
        """Make everything durable and commit ``state`` (the final one). Raises: StorageError. Idempotent."""
        if self._syncing is not None:
            self._complete_sync()
        self._start_sync(state)
        if self._syncing is not None:
            self._complete_sync()

    def abandon(self) -> None:
        """After an error: close files and wait for a running child, without committing. Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._syncing is not None:
            for child in self._syncing[2]:
                child.wait()
            self._syncing = None

    def _start_sync(self, state: dict[str, Any]) -> None:
        group, self._pending = self._pending, []
        self._last_group = time.monotonic()
        self.rejects.flush()
        paths = [path for path, _ in group if path is not None]  # reference batches have no file
        if self.rejects.exists():
            paths.append(str(self.rejects.path))
        if not paths:  # nothing new to flush: commit the batch log and state right away
            self._commit(group, state)
            return
        if self._syncfs is None:
            import shutil

            self._syncfs = self.USE_SYNCFS and syncfs_suits(self.out_dir)
            self._sync_cmd = shutil.which("sync")
        if self._syncfs:
            self._syncing = (group, state, [_SyncfsJob(self._dir)])  # type: ignore[list-item]
            return
        if self._sync_cmd is None:
            try:
                # imported here: concurrent.futures costs ~20 ms of start-up, and this is the rare path
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(self.SYNC_PARALLEL) as pool:
                    list(pool.map(_fsync_path, paths))
            except OSError as exc:
                raise StorageError(f"cannot fsync the batch files in {self.out_dir}: {exc}") from exc
            self._commit(group, state)
            return
        import subprocess

        per_child = -(-len(paths) // self.SYNC_PARALLEL)
        children = [
            subprocess.Popen(
                [self._sync_cmd, "--", *paths[i : i + per_child]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(0, len(paths), per_child)
        ]
        self._syncing = (group, state, children)

    def _complete_sync(self) -> None:
        assert self._syncing is not None
        group, state, children = self._syncing
        self._syncing = None
        failures = []
        for child in children:
            _, stderr = child.communicate()
            if child.returncode != 0:
                failures.append(f"exit code {child.returncode}: {stderr.decode(errors='replace').strip()}")
        if failures:
            raise StorageError(
                f"fsync of the batch files in {self.out_dir} failed (sync {'; '.join(failures)})",
                hint="check free space and the file system; the partition resumes from its last commit",
            )
        self._commit(group, state)

    def _commit(self, group: list[tuple[str | None, BatchInfo]], state: dict[str, Any]) -> None:
        try:
            for tmp, info in group:
                if tmp is not None:
                    os.replace(tmp, f"{self._dir}/{info.batch_id}.jsonl")
            if group:
                data = b"".join(_log_line(info) for _, info in group)
                with open(self._log_path, "ab") as log:
                    log.write(data)
                    log.flush()
                    os.fsync(log.fileno())
                self._log_bytes += len(data)
            fsync_dir(self.out_dir)  # the renames, and the log's and the rejects file's entries
        except OSError as exc:
            raise StorageError(f"cannot commit batches in {self.out_dir}: {exc}") from exc
        self._committed += len(group)
        write_json_atomic(
            self.out_dir / STATE_NAME, dict(state, batches=self._committed, batch_log_bytes=self._log_bytes)
        )


class _SyncfsJob:
    """syncfs(2) of the file system holding ``directory``, run in a thread (ctypes releases the GIL);
    it answers ``poll``/``wait``/``communicate`` like the ``sync`` children it replaces."""

    def __init__(self, directory: str) -> None:
        self.returncode: int | None = None
        self._error = b""
        self._thread = threading.Thread(target=self._run, args=(directory,), daemon=True)
        self._thread.start()

    def _run(self, directory: str) -> None:
        import ctypes

        syncfs = _load_syncfs()
        assert syncfs is not None
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                if syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs: {os.strerror(err)}")
            finally:
                os.close(fd)
            self.returncode = 0
        except OSError as exc:
            self._error = str(exc).encode()
            self.returncode = 1

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode

    def wait(self) -> int | None:
        self._thread.join()
        return self.returncode

    def communicate(self) -> tuple[bytes, bytes]:
        self.wait()
        return b"", self._error


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
