"""Item-level checkpoint: a SQLite file on node-local scratch, copied to the shared store.

Why node-local: SQLite's locking is unreliable on NFS/Lustre, and a database written from two
nodes can be corrupted. Each task attempt owns its file on the node it runs on; the worker copies a
consistent snapshot (SQLite's backup API) to the store every ``interval_s`` and on SIGTERM, so a
task restarted on another node resumes from the last snapshot.

Commits are batched (every ``commit_items`` items or ``commit_s`` seconds), not one per item. After
a crash the items since the last commit are processed again; ``item_id`` is the primary key, so an
item is never recorded twice: the *output* is exactly-once, the handler call is at-least-once.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id INTEGER PRIMARY KEY,
    ok INTEGER NOT NULL,
    nrows INTEGER NOT NULL,
    rows TEXT NOT NULL             -- JSON lines, one per output row, each with _item_id
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


class Checkpoint:
    def __init__(self, path: Path, *, commit_items: int = 5000, commit_s: float = 1.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.commit_items = commit_items
        self.commit_s = commit_s
        self._ok: list[tuple[int, int, int, str]] = []
        self._err: list[tuple[int, str, str, str, str, int]] = []
        self._last_commit = time.monotonic()

    @staticmethod
    def count(path: Path) -> int:
        """Items recorded in a checkpoint file (0 if it is missing or unreadable)."""
        if not path.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(path)) as db:
                return db.execute("SELECT count(*) FROM items").fetchone()[0]
        except sqlite3.DatabaseError:
            return 0

    @staticmethod
    def copy(src: Path, dest: Path) -> None:
        """Consistent copy of a checkpoint that another process may still be writing (backup API)."""
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(dest) + suffix).unlink()
        with contextlib.closing(sqlite3.connect(src)) as a, contextlib.closing(sqlite3.connect(dest)) as b:
            a.backup(b)

    def done_ids(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT item_id FROM items")}

    def record_ok(self, item_id: int, rows_json: str, nrows: int) -> None:
        self._ok.append((item_id, 1, nrows, rows_json))
        if len(self._ok) >= self.commit_items:
            self.commit_if_due(force=True)

    def record_error(
        self, item_id: int, category: str, etype: str, message: str, tb: str, attempt: int
    ) -> None:
        self._ok.append((item_id, 0, 0, ""))
        self._err.append((item_id, category, etype, message, tb, attempt))

    def commit_if_due(self, *, force: bool = False) -> bool:
        """Commit pending records if ``commit_items``/``commit_s`` says so (or ``force``)."""
        if not self._ok:
            return False
        if not force and time.monotonic() - self._last_commit < self.commit_s:
            return False
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR IGNORE INTO items VALUES (?,?,?,?)", self._ok)
        if self._err:
            self.db.executemany("INSERT OR REPLACE INTO errors VALUES (?,?,?,?,?,?)", self._err)
        self.db.execute("COMMIT")
        self._ok.clear()
        self._err.clear()
        self._last_commit = time.monotonic()
        return True

    def snapshot(self, dest: Path) -> None:
        """Write a consistent copy to ``dest`` (SQLite backup API; readers of this file unaffected)."""
        self.commit_if_due(force=True)
        tmp = dest.with_name(dest.name + ".snap")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        with contextlib.closing(sqlite3.connect(tmp)) as out:
            self.db.backup(out)
        tmp.replace(dest)

    def counts(self) -> tuple[int, int, int]:
        """(items ok, items failed, rows) recorded so far, pending included."""
        self.commit_if_due(force=True)
        ok, failed, rows = self.db.execute(
            "SELECT coalesce(sum(ok),0), coalesce(sum(1-ok),0), coalesce(sum(nrows),0) FROM items"
        ).fetchone()
        return ok, failed, rows

    def iter_rows(self) -> Iterator[str]:
        """Output rows (JSON lines text blocks) in item order."""
        self.commit_if_due(force=True)
        for (rows,) in self.db.execute("SELECT rows FROM items WHERE ok=1 AND nrows>0 ORDER BY item_id"):
            yield rows

    def iter_errors(self) -> Iterator[dict[str, Any]]:
        cols = ("item_id", "category", "type", "message", "traceback", "attempt")
        for row in self.db.execute(f"SELECT {', '.join(cols)} FROM errors ORDER BY item_id"):
            yield dict(zip(cols, row, strict=True))

    def error_categories(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT category, count(*) FROM errors GROUP BY category").fetchall())

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.commit_if_due(force=True)
            self.db.close()
