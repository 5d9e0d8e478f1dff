"""Item-level checkpoint: a SQLite file on node-local scratch, shipped to the shared store as segments.

Why node-local: SQLite's locking is unreliable on NFS/Lustre, and a database written from two
nodes can be corrupted. Each task attempt owns its file on the node it runs on.

Layout (format 4, ``PRAGMA user_version = 4``): the worker records items in *runs* — contiguous
ranges of item ids handled one after another — and stores ONE row per run in ``chunks``: its first
and last item id, its row count, how many of its items failed, whether the run is in the store
(``shipped``), and its output rows as one blob (the rows in item order, each followed by ``\\n``:
exactly the bytes the published result file holds for those items). Failed items are listed one per
row in ``errors`` (category, type, message, traceback, attempt, and where and when: host, Slurm job
id, time). ``items`` is a view with one row per recorded item (``item_id``, ``ok``), for
people and tools that look inside.

Commits are batched (every ``commit_items`` items or ``commit_s`` seconds), not one per item. After
a crash the items since the last commit are processed again; the runs already committed say exactly
which items are done, so an item is never recorded twice: the *output* is exactly-once, the handler
call is at-least-once. Runs never overlap (an attempt only handles items no run covers), so the
runs ordered by ``first_id`` give the rows in item order.

Shipping to the store (so another node can resume): each snapshot writes ONE *segment* holding the
committed runs not shipped yet, with their errors (``write_segment``), and the worker stores it under
its own key; the runs are then marked shipped. A long task's traffic is therefore its rows once, not
a copy of the whole database per snapshot. A segment is a self-checking file (see ``_MAGIC``): a
magic with the format, one frame per run (its numbers, rows and errors), an end frame, and the
sha256 of everything before it. ``read_segment`` refuses a truncated, damaged or other-format
segment (``SegmentError``); the resuming worker then ignores it and runs its items again. Restoring
is a union: ``merge`` adds the runs of a segment that overlap no run already present, so runs from
several attempts (one of them may have lost its lease and still shipped) never overlap either.

Only format 4 is read (format 4: item errors carry host, Slurm job id and time): a database of any
other format, or without a format number, is refused with a message (``StateError``, exit 5), and a
worker that finds one on its node runs its items again.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from slurmctl.errors import StateError, StorageError
from slurmctl.fsutil import CHUNK, fsync_dir

log = logging.getLogger("slurmctl.worker")

FORMAT = 4
PAGE_SIZE = 16384

TABLES = """
CREATE TABLE IF NOT EXISTS chunks (
    first_id INTEGER PRIMARY KEY,  -- first item id of a run of contiguous items
    last_id INTEGER NOT NULL,      -- last item id of the run (inclusive)
    nrows INTEGER NOT NULL,        -- output rows of the run's items
    nfailed INTEGER NOT NULL,      -- items of the run that failed (listed in errors)
    shipped INTEGER NOT NULL DEFAULT 0,  -- 1 once the run is in a segment in the store
    rows BLOB NOT NULL             -- the rows, JSON, in item order, each followed by a newline
);
-- The runs a snapshot has to ship: found without reading every run's row.
CREATE INDEX IF NOT EXISTS unshipped ON chunks (first_id) WHERE shipped = 0;
CREATE TABLE IF NOT EXISTS errors (
    item_id INTEGER PRIMARY KEY,
    category TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host TEXT,                     -- where and when the item failed
    slurm_job_id TEXT,
    at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# One row per recorded item, computed from the runs (nothing is stored per item).
ITEMS_VIEW = """
CREATE VIEW IF NOT EXISTS items (item_id, ok) AS
    WITH RECURSIVE ids (item_id, last_id) AS (
        SELECT first_id, last_id FROM chunks
        UNION ALL SELECT item_id + 1, last_id FROM ids WHERE item_id < last_id
    )
    SELECT item_id, item_id NOT IN (SELECT item_id FROM errors) FROM ids;
"""
_INSERT_RUN = "INSERT INTO chunks (first_id, last_id, nrows, nfailed, shipped, rows) VALUES (?,?,?,?,?,?)"
_INSERT_ERROR = "INSERT OR REPLACE INTO errors VALUES (?,?,?,?,?,?,?,?,?)"

# item_id, category, type, message, traceback, attempt, host, slurm_job_id, at (unix time)
ErrorRow = tuple[int, str, str, str, str, int, str | None, str | None, float | None]
ERROR_COLUMNS = (
    "item_id",
    "category",
    "type",
    "message",
    "traceback",
    "attempt",
    "host",
    "slurm_job_id",
    "at",
)
Run = tuple[int, int, int, int, bytes]  # first_id, last_id, nrows, nfailed, rows

# A segment file: _MAGIC, then one frame per run — _FRAME (first_id, last_id, nrows, nfailed,
# bytes of rows, bytes of errors) followed by the rows and the run's errors (a JSON array of error
# rows) — then an end frame (first_id -1, the rest 0), then the sha256 digest (32 bytes) of every
# byte before it. The last byte of the magic is the format.
_MAGIC = b"SLCKSEG" + bytes([FORMAT])
_FRAME = struct.Struct("<qqqqQQ")
_END = _FRAME.pack(-1, 0, 0, 0, 0, 0)
_DIGEST = 32


class SegmentError(Exception):
    """A segment file is truncated, damaged, or not of this format (the message says which)."""


class Segment(NamedTuple):
    """What ``write_segment`` wrote: its first item id, the first ids of its runs (for
    ``mark_shipped``), its items, its size in bytes and its sha256."""

    first_id: int
    runs: tuple[int, ...]
    items: int
    size: int
    sha256: str


# SQLite result codes that mean the file system, not the checkpoint, is at fault.
_DISK_ERRORS = {"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY"}


def disk_error(path: Path, exc: Exception) -> StorageError | None:
    """A StorageError for an SQLite error caused by the file system (full, read-only, I/O), else
    None."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if not any(name.startswith(code) for code in _DISK_ERRORS):
        return None
    return StorageError(
        f"checkpoint {path}: {exc} ({name})",
        hint=f"node-local scratch ({path.parent}) is full or unwritable: free space there or point "
        "$SLURMCTL_SCRATCH at a larger file system, then `slurmctl resubmit JOB`",
    )


def _unreadable(path: Path, exc: Exception) -> StateError | StorageError:
    disk = disk_error(path, exc)
    if disk is not None:
        return disk
    return StateError(
        f"checkpoint {path} is unreadable: {exc}",
        hint="it is not a slurmctl checkpoint or it is damaged; delete it and the task restarts "
        "from its first item",
    )


def _format_of(db: sqlite3.Connection) -> int:
    """The checkpoint format of an open database (its ``user_version``): 0 for an empty database,
    -1 for one with tables but no format number (not a checkpoint this slurmctl wrote)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        return -1
    return version


def _wrong_format(path: Path, version: int) -> StateError:
    found = f"format {version}" if version > 0 else "no format number"
    return StateError(
        f"checkpoint {path} has {found}; this slurmctl reads format {FORMAT} only",
        hint="delete it: the task restarts from its first item (a worker that finds such a file on "
        "its node ignores it and does that by itself), or run the task with the slurmctl version "
        "that wrote it",
    )


class Checkpoint:
    """The checkpoint of one task attempt. Not thread-safe except where a method says so."""

    def __init__(
        self, path: Path, *, commit_items: int = 5000, commit_s: float = 1.0, commit_bytes: int = 64 << 20
    ) -> None:
        """Open (creating) the checkpoint at ``path``. Pending runs are committed every
        ``commit_items`` items, ``commit_bytes`` bytes of rows or ``commit_s`` seconds.

        Raises StateError if the file is not a checkpoint, is damaged, or has another format."""
        self.path = path
        # Names this attempt's segments in the store: two attempts (one may have lost its lease
        # and still be running) never write the same key.
        self.writer = secrets.token_hex(4)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # Checked before anything is set: a refused file is left exactly as it was.
            version = _format_of(self.db)
            if version not in (0, FORMAT):
                self.db.close()
                raise _wrong_format(path, version)
            # Rows are stored as ~100 KB blobs: 16 KiB pages write them ~2x faster than the default
            # 4 KiB (fewer overflow pages; 2-core VM, 2026-11-23). Only takes effect when
            # the file is created (a no-op on an existing one).
            self.db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(TABLES + ITEMS_VIEW + f"PRAGMA user_version = {FORMAT};")
        except sqlite3.DatabaseError as exc:
            raise _unreadable(path, exc) from exc
        self.commit_items = commit_items
        self.commit_s = commit_s
        self.commit_bytes = commit_bytes
        self._chunks: list[tuple[int, int, int, int, int, bytes]] = []
        self._err: list[ErrorRow] = []
        self._pending_items = 0
        self._pending_bytes = 0
        self._last_commit = time.monotonic()

    @staticmethod
    def count(path: Path) -> int:
        """Return the items recorded in a checkpoint file; 0 if it is missing, unreadable or of
        another format (logged: the task then redoes those items). Never raises; read-only."""
        if not path.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(path)) as db:
                version = _format_of(db)
                if version == FORMAT:
                    sql = "SELECT coalesce(sum(last_id - first_id + 1), 0) FROM chunks"
                    return db.execute(sql).fetchone()[0]
                if version:
                    # Misread rather than redone would publish wrong rows; redone costs time only.
                    log.warning("%s; ignoring it, its items are run again", _wrong_format(path, version))
                return 0
        except sqlite3.DatabaseError:
            return 0

    @staticmethod
    def copy(src: Path, dest: Path) -> None:
        """Consistent copy of a checkpoint that another process may still be writing (backup API).
        Replaces ``dest``. Raises StateError if ``src`` is unreadable."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(dest) + suffix).unlink()
        try:
            with (
                contextlib.closing(sqlite3.connect(src)) as a,
                contextlib.closing(sqlite3.connect(dest)) as b,
            ):
                a.backup(b)
        except sqlite3.DatabaseError as exc:
            raise _unreadable(src, exc) from exc

    def done_ranges(self) -> list[tuple[int, int]]:
        """Return the recorded items as sorted, merged, inclusive ``(first, last)`` id ranges,
        pending records included (they are committed first)."""
        self.commit_if_due(force=True)
        merged: list[tuple[int, int]] = []
        for first, last in self.db.execute("SELECT first_id, last_id FROM chunks ORDER BY first_id"):
            if merged and first <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
            else:
                merged.append((first, last))
        return merged

    def record_run(
        self, first_id: int, last_id: int, rows: bytes, nrows: int, errors: list[ErrorRow]
    ) -> None:
        """Buffer a run: items ``first_id..last_id`` (inclusive, none recorded before), their
        output ``rows`` (each followed by a newline, item order) and the ``errors`` of the run's
        failed items. Commits when ``commit_items`` items or ``commit_bytes`` bytes are pending.
        Not idempotent: a run must be recorded once (a second record of the same ``first_id``
        fails at commit)."""
        self._chunks.append((first_id, last_id, nrows, len(errors), 0, rows))
        if errors:
            self._err.extend(errors)
        self._pending_items += last_id - first_id + 1
        self._pending_bytes += len(rows)
        if self._pending_items >= self.commit_items or self._pending_bytes >= self.commit_bytes:
            self.commit_if_due(force=True)

    def commit_if_due(self, *, force: bool = False) -> bool:
        """Commit pending runs if ``commit_items``/``commit_s`` says so (or ``force``). Returns
        whether it committed. Idempotent (nothing pending: no-op)."""
        if not self._chunks:
            return False
        if not force and time.monotonic() - self._last_commit < self.commit_s:
            return False
        self.db.execute("BEGIN")
        try:
            self.db.executemany(_INSERT_RUN, self._chunks)
            if self._err:
                self.db.executemany(_INSERT_ERROR, self._err)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self._chunks.clear()
        self._err.clear()
        self._pending_items = 0
        self._pending_bytes = 0
        self._last_commit = time.monotonic()
        return True

    # -- segments ---------------------------------------------------------------------------
    def write_segment(self, dest: Path) -> Segment | None:
        """Commit pending runs, then write the committed runs not shipped yet (and their errors)
        as one segment file at ``dest`` (temp file, fsync, rename). Returns what it wrote, or None
        if every run is shipped (no file written). The runs stay unshipped until ``mark_shipped``:
        if storing the segment fails, the next segment carries them again. Idempotent until then.
        Memory: one run's rows at a time."""
        self.commit_if_due(force=True)
        tmp = dest.with_name(dest.name + ".tmp")
        digest = hashlib.sha256()
        size = 0
        ids: list[int] = []
        items = 0
        try:
            with open(tmp, "wb") as out:

                def put(data: bytes) -> None:
                    nonlocal size
                    out.write(data)
                    digest.update(data)
                    size += len(data)

                put(_MAGIC)
                errors = self.db.cursor()
                for first, last, nrows, nfailed, rows in self.db.execute(
                    "SELECT first_id, last_id, nrows, nfailed, rows FROM chunks WHERE shipped = 0 "
                    "ORDER BY first_id"
                ):
                    errs = b""
                    if nfailed:
                        found = errors.execute(
                            "SELECT * FROM errors WHERE item_id BETWEEN ? AND ? ORDER BY item_id",
                            (first, last),
                        ).fetchall()
                        errs = json.dumps(found).encode()
                    put(_FRAME.pack(first, last, nrows, nfailed, len(rows), len(errs)))
                    put(rows)
                    put(errs)
                    ids.append(first)
                    items += last - first + 1
                if not ids:
                    out.close()
                    tmp.unlink()
                    return None
                put(_END)
                sha = digest.digest()
                out.write(sha)
                size += len(sha)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(dest.parent)
        return Segment(ids[0], tuple(ids), items, size, sha.hex())

    def mark_shipped(self, segment: Segment) -> None:
        """Record that ``segment``'s runs are in the store (the next segment leaves them out).
        Idempotent."""
        self.db.execute("BEGIN")
        self.db.executemany("UPDATE chunks SET shipped = 1 WHERE first_id = ?", [(i,) for i in segment.runs])
        self.db.execute("COMMIT")

    def set_shipped(self, in_store: set[tuple[int, int]]) -> None:
        """Mark shipped exactly the runs whose ``(first_id, last_id)`` is in ``in_store`` (the runs
        of the store's readable segments): a copy of an earlier attempt's file then ships what
        the store lacks (e.g. runs of a damaged segment) and nothing it has. Idempotent."""
        self.commit_if_due(force=True)
        heads = self.db.execute("SELECT first_id, last_id, shipped FROM chunks").fetchall()
        change = [
            (int((first, last) in in_store), first)
            for first, last, was in heads
            if int((first, last) in in_store) != was
        ]
        if change:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE chunks SET shipped = ? WHERE first_id = ?", change)
            self.db.execute("COMMIT")

    def merge(
        self, runs: Iterable[tuple[Run, list[ErrorRow]]], *, shipped: bool = True
    ) -> list[tuple[int, int]]:
        """Add the ``runs`` (each with its errors) that overlap no run already recorded, marked
        ``shipped``, in one transaction (all or nothing: if iterating ``runs`` raises, nothing is
        added). The others are dropped: their items are recorded once already. Returns the
        ``(first_id, last_id)`` of every run of ``runs``, added or not. Restoring from segments is
        this union of runs, never an item twice."""
        self.commit_if_due(force=True)
        heads = self.db.execute("SELECT first_id, last_id FROM chunks ORDER BY first_id").fetchall()
        firsts = [first for first, _ in heads]
        lasts = [last for _, last in heads]
        seen: list[tuple[int, int]] = []
        self.db.execute("BEGIN")
        try:
            for (first, last, nrows, nfailed, rows), errs in runs:
                seen.append((first, last))
                at = bisect.bisect_right(firsts, last)  # the runs that start at or before ``last``
                if at and lasts[at - 1] >= first:
                    continue  # overlaps the last of them (runs are disjoint: only it can)
                firsts.insert(at, first)
                lasts.insert(at, last)
                self.db.execute(_INSERT_RUN, (first, last, nrows, nfailed, int(shipped), rows))
                if errs:
                    self.db.executemany(_INSERT_ERROR, errs)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return seen

    # -- reading ----------------------------------------------------------------------------
    def counts(self) -> tuple[int, int, int]:
        """Return (items ok, items failed, rows) recorded so far, pending included."""
        self.commit_if_due(force=True)
        ok, failed, rows = self.db.execute(
            "SELECT coalesce(sum(last_id - first_id + 1 - nfailed), 0), coalesce(sum(nfailed), 0), "
            "coalesce(sum(nrows), 0) FROM chunks"
        ).fetchone()
        return ok, failed, rows

    def iter_rows(self) -> Iterator[bytes]:
        """Yield the output rows in item order, as blocks of newline-terminated JSON lines
        (pending runs are committed first). Raises StateError if two runs overlap (a damaged or
        hand-edited file: the same item would be published twice)."""
        self.commit_if_due(force=True)
        last = None
        for first_id, last_id, nrows, rows in self.db.execute(
            "SELECT first_id, last_id, nrows, rows FROM chunks ORDER BY first_id"
        ):
            if last is not None and first_id <= last:
                raise StateError(
                    f"checkpoint {self.path}: item runs overlap at item {first_id}",
                    hint="the file is damaged; delete it and the task restarts from its first item",
                )
            last = last_id
            if nrows:
                yield rows

    def iter_errors(self) -> Iterator[dict[str, Any]]:
        """Yield the failed items' errors in item order, as dicts."""
        cols = ERROR_COLUMNS
        for row in self.db.execute(f"SELECT {', '.join(cols)} FROM errors ORDER BY item_id"):
            yield dict(zip(cols, row, strict=True))

    def error_categories(self) -> dict[str, int]:
        """Return failed items per failure category."""
        return dict(self.db.execute("SELECT category, count(*) FROM errors GROUP BY category").fetchall())

    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON) under ``key``; idempotent."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        """Commit what is pending and close; never raises (a failing commit loses only items that
        are redone on resume)."""
        with contextlib.suppress(sqlite3.Error):
            self.commit_if_due(force=True)
            self.db.close()


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise SegmentError(f"truncated in {what}")
    return data


def read_segment(f: BinaryIO) -> Iterator[tuple[Run, list[ErrorRow]]]:
    """Check a whole segment file (open for binary reading, seekable), then yield its runs, each
    with its errors, in the order written. Raises SegmentError, before yielding anything, if the
    file is truncated, damaged (its sha256 does not match) or of another format; read-only."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    magic = f.read(len(_MAGIC))
    if magic[:-1] != _MAGIC[:-1]:
        raise SegmentError("not a slurmctl checkpoint segment")
    if len(magic) == len(_MAGIC) and magic[-1] != FORMAT:
        raise SegmentError(f"segment format {magic[-1]}; this slurmctl reads format {FORMAT} only")
    if size < len(_MAGIC) + len(_END) + _DIGEST:
        raise SegmentError(f"truncated ({size} bytes)")
    # The digest first, over the whole file: a damaged segment is refused before any run is used.
    digest = hashlib.sha256(magic)
    left = size - _DIGEST - len(magic)
    while left:
        block = f.read(min(CHUNK, left))
        if not block:
            raise SegmentError("truncated while checking its sha256")
        digest.update(block)
        left -= len(block)
    if f.read(_DIGEST) != digest.digest():
        raise SegmentError("damaged: its sha256 does not match its content")
    return _frames(f, size)


def _frames(f: BinaryIO, size: int) -> Iterator[tuple[Run, list[ErrorRow]]]:
    f.seek(len(_MAGIC))
    previous = None
    while True:
        first, last, nrows, nfailed, nbytes, nerrs = _FRAME.unpack(_read_exact(f, _FRAME.size, "a run"))
        if first == -1:
            break
        if (
            not 0 <= first <= last
            or (previous is not None and first <= previous)
            or nfailed > last - first + 1
        ):
            raise SegmentError(f"inconsistent run {first}..{last}")
        rows = _read_exact(f, nbytes, f"the rows of run {first}..{last}")
        errs = [tuple(e) for e in json.loads(_read_exact(f, nerrs, "errors"))] if nerrs else []
        if (
            len(errs) != nfailed
            or any(len(e) != len(ERROR_COLUMNS) or not first <= e[0] <= last for e in errs)
            or rows.count(b"\n") != nrows
        ):
            raise SegmentError(f"inconsistent run {first}..{last}")
        previous = last
        yield (first, last, nrows, nfailed, rows), errs  # type: ignore[misc]
    if f.tell() != size - _DIGEST:
        raise SegmentError("data after its end frame")
