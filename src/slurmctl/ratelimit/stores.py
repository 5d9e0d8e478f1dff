"""Where bucket records live: an atomic read-modify-write of one small JSON document per key.

:class:`BucketStore` keeps each bucket as a record of the backend's state store and changes it
by compare-and-set on the record's version: on the aws backend a conditional PutItem on the
``limits`` DynamoDB table; on the local backend a versioned JSON file under
``<root>/state/limits/`` (:class:`~slurmctl.storage.local.FileStateStore`: exclusive ``link(2)``
lock files and rename, which hold on NFS, Lustre, GPFS, BeeGFS, CephFS and local disks alike, so
buckets are shared correctly by workers on any number of nodes that see the root). It remembers
the last record it wrote, so an uncontended reservation is one request (the CAS), not two.

It counts the calls it makes (``calls``): the limiter benchmark reports calls per 1,000 tokens.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from slurmctl.errors import ConflictError, StorageError
from slurmctl.storage.base import Record, StateStore

T = TypeVar("T")
Change = Callable[[dict[str, Any]], T]

MAX_CONFLICTS = 500  # compare-and-set attempts before modify gives up (backing off up to 0.1 s each)


class BucketStore:
    """Bucket documents in ``table`` of a StateStore. Thread-safe; one per process (the record
    cache is per object)."""

    def __init__(self, state: StateStore, table: str = "limits") -> None:
        self.state = state
        self.table = table
        self.calls = 0
        self._cache: dict[str, Record] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        """The current document (a copy), or None. Raises StorageError if the store fails."""
        self.calls += 1
        rec = self.state.get(self.table, key)
        if rec is not None:
            with self._lock:
                self._cache[key] = rec
        return None if rec is None else copy.deepcopy(rec.value)

    def modify(self, key: str, change: Change[T], initial: dict[str, Any] | None = None) -> T:
        """Apply ``change`` (which mutates the document in place and returns a result) atomically
        and return its result. A missing record starts as a copy of ``initial``; with no
        ``initial`` a missing record raises KeyError. ``change`` may run several times (once per
        lost compare-and-set), always on a fresh copy, so it must depend only on its argument and
        the clock. Raises StorageError if the store fails or MAX_CONFLICTS writes conflict."""
        with self._lock:
            rec: Record | None = self._cache.get(key)
        delay = 0.002
        for _ in range(MAX_CONFLICTS):
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
        raise StorageError(
            f"gave up updating rate-limit record {self.table}/{key} after {MAX_CONFLICTS} conflicting writes",
            hint="too many workers book from one bucket at once: raise the limit's `batch` (fewer bookings)",
        )

    def keys(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        self.calls += 1
        return sorted(r.key for r in self.state.scan(self.table, prefix))
