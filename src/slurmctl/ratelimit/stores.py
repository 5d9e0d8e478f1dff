"""Where bucket records live: an atomic read-modify-write of one small JSON document per key.

* :class:`SqliteBucketStore` — the local backend: one SQLite file, every change in a
  ``BEGIN IMMEDIATE`` transaction (SQLite's POSIX file locks). Holds across processes on one node
  on any local filesystem, and across nodes only where POSIX (fcntl) locks are coherent between
  nodes: GPFS/Spectrum Scale, Lustre mounted with ``-o flock``, BeeGFS with tuneUseGlobalFileLocks.
  NOT on NFS (lock daemons and attribute caching make SQLite locking unreliable there) — use
  the aws backend for limits shared by workers on several nodes of an NFS cluster. The rollback
  journal (not WAL) is used because WAL needs shared memory, i.e. a single host.
* :class:`StateBucketStore` — any StateStore, i.e. DynamoDB on the aws backend: compare-and-set
  on the record version (a conditional PutItem). It remembers the last record it wrote, so an
  uncontended reservation is one request (the CAS), not two.

Both count the calls they make (``calls``): the limiter benchmark reports calls per 1,000 tokens.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from slurmctl.errors import ConflictError, StorageError
from slurmctl.storage.base import Record, StateStore

T = TypeVar("T")
Change = Callable[[dict[str, Any]], T]


class BucketStore(ABC):
    calls: int = 0

    @abstractmethod
    def get(self, key: str) -> dict[str, Any] | None:
        """The current document, or None."""

    @abstractmethod
    def modify(self, key: str, change: Change[T], initial: dict[str, Any] | None = None) -> T:
        """Apply ``change`` (which mutates the document in place and returns a result) atomically
        and return its result. A missing record starts as a copy of ``initial``; with no
        ``initial`` a missing record raises KeyError. ``change`` may run several times (on
        conflicts), always on a fresh copy, so it must depend only on its argument and the clock."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted."""


class SqliteBucketStore(BucketStore):
    def __init__(self, path: Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.calls = 0
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
                conn.execute("PRAGMA journal_mode=DELETE")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, doc TEXT NOT NULL, "
                    "version INTEGER NOT NULL)"
                )
            except sqlite3.Error as exc:
                raise StorageError(
                    f"cannot open the rate-limit database {self.path}: {exc}",
                    hint="it needs a filesystem with working POSIX locks (not NFS); see docs/rate-limits.md",
                ) from exc
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get(self, key: str) -> dict[str, Any] | None:
        self.calls += 1
        try:
            row = self._db().execute("SELECT doc FROM buckets WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"rate-limit database {self.path}: {exc}") from exc
        return None if row is None else json.loads(row[0])

    def modify(self, key: str, change: Change[T], initial: dict[str, Any] | None = None) -> T:
        self.calls += 1
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")  # takes the write lock now: no read-then-upgrade deadlock
            try:
                row = db.execute("SELECT doc, version FROM buckets WHERE key = ?", (key,)).fetchone()
                if row is None:
                    if initial is None:
                        raise KeyError(key)
                    doc, version = copy.deepcopy(initial), 0
                else:
                    doc, version = json.loads(row[0]), row[1]
                result = change(doc)
                db.execute(
                    "INSERT OR REPLACE INTO buckets (key, doc, version) VALUES (?, ?, ?)",
                    (key, json.dumps(doc, separators=(",", ":")), version + 1),
                )
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"rate-limit database {self.path}: {exc}") from exc
        return result

    def keys(self, prefix: str) -> list[str]:
        self.calls += 1
        rows = self._db().execute(
            "SELECT key FROM buckets WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )
        return [r[0] for r in rows]


class StateBucketStore(BucketStore):
    def __init__(self, state: StateStore, table: str = "limits") -> None:
        self.state = state
        self.table = table
        self.calls = 0
        self._cache: dict[str, Record] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        self.calls += 1
        rec = self.state.get(self.table, key)
        if rec is not None:
            with self._lock:
                self._cache[key] = rec
        return None if rec is None else copy.deepcopy(rec.value)

    def modify(self, key: str, change: Change[T], initial: dict[str, Any] | None = None) -> T:
        with self._lock:
            rec: Record | None = self._cache.get(key)
        delay = 0.002
        for _ in range(500):
            if rec is None:
                self.calls += 1
                rec = self.state.get(self.table, key)
            if rec is None and initial is None:
                raise KeyError(key)
            doc = copy.deepcopy(rec.value if rec is not None else initial)
            assert doc is not None
            result = change(doc)
            self.calls += 1
            try:
                if rec is None:
                    new = self.state.create(self.table, key, doc)
                else:
                    new = self.state.compare_and_set(self.table, key, doc, rec.version)
            except ConflictError:
                rec = None  # someone else wrote: re-read and re-apply
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.1)
                continue
            with self._lock:
                self._cache[key] = new
            return result
        raise StorageError(f"gave up updating rate-limit record {key} after 500 conflicting writes")

    def keys(self, prefix: str) -> list[str]:
        self.calls += 1
        return [r.key for r in self.state.scan(self.table, prefix)]
