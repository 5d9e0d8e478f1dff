"""Item-level checkpoint: a SQLite file on node-local scratch, copied to the shared store.

Why node-local: SQLite's locking is unreliable on NFS/Lustre, and a database written from two
nodes can be corrupted. Each task attempt owns its file on the node it runs on; the worker copies a
consistent snapshot (SQLite's backup API) to the store every ``interval_s`` and on SIGTERM, so a
task restarted on another node resumes from the last snapshot.

Layout (format 2, ``PRAGMA user_version = 2``): the worker records items in *runs* — contiguous
ranges of item ids handled one after another — and stores ONE row per run in ``chunks``: its first
and last item id, its row count, how many of its items failed, and its output rows as one blob (the
rows in item order, each followed by ``\\n``: exactly the bytes the published result file holds for
those items). Failed items are listed one per row in ``errors``. A one-row-per-item SQLite insert
was a third of a no-op item's cost; one row per run of ~1,000 items is noise. ``items`` is a view
with one row per recorded item (``item_id``, ``ok``), for people and tools that look inside.

Commits are batched (every ``commit_items`` items or ``commit_s`` seconds), not one per item. After
a crash the items since the last commit are processed again; the runs already committed say exactly
which items are done, so an item is never recorded twice: the *output* is exactly-once, the handler
call is at-least-once. Runs never overlap (an attempt only handles items no run covers), so the
runs ordered by ``first_id`` give the rows in item order.

Format 1 (slurmctl before this layout: one ``items`` table row per item with its rows as text) is
converted in place when such a file is opened, so a task interrupted by the previous version resumes
with no item redone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slurmctl.errors import StateError

log = logging.getLogger("slurmctl.worker")

FORMAT = 2
PAGE_SIZE = 16384

TABLES = """
CREATE TABLE IF NOT EXISTS chunks (
    first_id INTEGER PRIMARY KEY,  -- first item id of a run of contiguous items
    last_id INTEGER NOT NULL,      -- last item id of the run (inclusive)
    nrows INTEGER NOT NULL,        -- output rows of the run's items
    nfailed INTEGER NOT NULL,      -- items of the run that failed (listed in errors)
    rows BLOB NOT NULL             -- the rows, JSON, in item order, each followed by a newline
);
CREATE TABLE IF NOT EXISTS errors (
    item_id INTEGER PRIMARY KEY,
    category TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempt INTEGER NOT NULL
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

# A format-1 file is converted into runs of at most this many items (the blob of a run is held in
# memory while it is written).
_MIGRATE_RUN_ITEMS = 5000

ErrorRow = tuple[int, str, str, str, str, int]  # item_id, category, type, message, traceback, attempt


def _unreadable(path: Path, exc: Exception) -> StateError:
    return StateError(
        f"checkpoint {path} is unreadable: {exc}",
        hint="it is not a slurmctl checkpoint or it is damaged; delete it and the task restarts "
        "from its first item",
    )


def _format_of(db: sqlite3.Connection) -> int:
    """The checkpoint format of an open database: 0 (empty), 1 (per-item rows) or user_version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version:
        return int(version)
    kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE name IN ('items', 'chunks')"))
    if kinds.get("items") == "table":
        return 1
    return 0


class Checkpoint:
    """The checkpoint of one task attempt. Not thread-safe except where a method says so."""

    def __init__(
        self, path: Path, *, commit_items: int = 5000, commit_s: float = 1.0, commit_bytes: int = 64 << 20
    ) -> None:
        """Open (creating or converting) the checkpoint at ``path``. Pending runs are committed
        every ``commit_items`` items, ``commit_bytes`` bytes of rows or ``commit_s`` seconds.

        Raises StateError if the file is not a checkpoint, is damaged, or has a newer format."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # Rows are stored as ~100 KB blobs: 16 KiB pages write them ~2x faster than the default
            # 4 KiB (fewer overflow pages; measured in bench/RESULTS.md). Only takes effect when
            # the file is created (a no-op on an existing one).
            self.db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            version = _format_of(self.db)
            if version > FORMAT:
                raise StateError(
                    f"checkpoint {path} has format {version}; this slurmctl reads formats 1-{FORMAT}",
                    hint="run the task with the slurmctl version that wrote the checkpoint (upgrade "
                    "the workers' environment), or delete it to restart the task from its first item",
                )
            if version == 1:
                self._migrate_v1()
            else:
                self.db.executescript(TABLES + ITEMS_VIEW + f"PRAGMA user_version = {FORMAT};")
        except sqlite3.DatabaseError as exc:
            raise _unreadable(path, exc) from exc
        self.commit_items = commit_items
        self.commit_s = commit_s
        self.commit_bytes = commit_bytes
        self._chunks: list[tuple[int, int, int, int, bytes]] = []
        self._err: list[ErrorRow] = []
        self._pending_items = 0
        self._pending_bytes = 0
        self._last_commit = time.monotonic()

    def _migrate_v1(self) -> None:
        """Convert a format-1 file (one ``items`` row per item) to runs, in one transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("ALTER TABLE items RENAME TO items_v1")
            # Statement by statement: executescript() would commit the open transaction first.
            for statement in TABLES.split(";")[:-1]:
                db.execute(statement)
            run: list[tuple[int, int, int, str]] = []

            def flush() -> None:
                if not run:
                    return
                text = "".join(rows + "\n" for _, ok, nrows, rows in run if ok and nrows)
                failed = sum(1 for _, ok, _, _ in run if not ok)
                nrows = sum(nrows for _, ok, nrows, _ in run if ok)
                db.execute(
                    "INSERT INTO chunks VALUES (?,?,?,?,?)",
                    (run[0][0], run[-1][0], nrows, failed, text.encode()),
                )
                run.clear()

            for row in db.execute("SELECT item_id, ok, nrows, rows FROM items_v1 ORDER BY item_id"):
                if run and (row[0] != run[-1][0] + 1 or len(run) >= _MIGRATE_RUN_ITEMS):
                    flush()
                run.append(row)
            flush()
            db.execute("DROP TABLE items_v1")
            db.execute(ITEMS_VIEW)
            db.execute(f"PRAGMA user_version = {FORMAT}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def count(path: Path) -> int:
        """Return the items recorded in a checkpoint file, format 1 or 2; 0 if it is missing,
        unreadable or of a newer format (logged: the task then redoes those items). Never raises;
        read-only."""
        if not path.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(path)) as db:
                version = _format_of(db)
                if version == 1:
                    return db.execute("SELECT count(*) FROM items").fetchone()[0]
                if version == FORMAT:
                    sql = "SELECT coalesce(sum(last_id - first_id + 1), 0) FROM chunks"
                    return db.execute(sql).fetchone()[0]
                if version > FORMAT:
                    # Written by a newer slurmctl: its items are redone rather than misread.
                    log.warning(
                        "checkpoint %s has format %d, newer than this slurmctl reads (%d); ignoring it",
                        path,
                        version,
                        FORMAT,
                    )
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
        self._chunks.append((first_id, last_id, nrows, len(errors), rows))
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
            self.db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?)", self._chunks)
            if self._err:
                self.db.executemany("INSERT OR REPLACE INTO errors VALUES (?,?,?,?,?,?)", self._err)
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

    def snapshot(self, dest: Path) -> None:
        """Write a consistent copy to ``dest`` (SQLite backup API; readers of this file unaffected).
        Commits pending runs first. Idempotent."""
        self.commit_if_due(force=True)
        tmp = dest.with_name(dest.name + ".snap")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        with contextlib.closing(sqlite3.connect(tmp)) as out:
            self.db.backup(out)
        tmp.replace(dest)

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
        cols = ("item_id", "category", "type", "message", "traceback", "attempt")
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
