"""The storage contract: every backend implements these two roles.

``ObjectStore`` holds immutable-ish blobs addressed by key (batches, manifests, results, ``.done``
markers, checkpoints). ``StateStore`` holds small mutable JSON records (job and task state) with a
version number and compare-and-set, so concurrent writers on different nodes never lose an update.

Keys are built only in :mod:`slurmctl.storage.keys`; callers never concatenate paths.

Backends: :mod:`slurmctl.storage.local` (a POSIX directory, safe on NFS/GPFS/Lustre: atomic
renames and exclusive creates, no database shared between nodes) and, later, AWS (S3 +
DynamoDB). The same conformance suite (tests/contract) runs against each.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurmctl.errors import ChecksumMismatchError, ConflictError, StorageError


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Record:
    """One versioned state record. ``version`` starts at 1 and grows by one per successful write."""

    key: str
    version: int
    value: dict[str, Any]


class ObjectStore(ABC):
    """Blobs by key. Every write is atomic: a reader sees the whole object or none of it."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` at ``key``, replacing any previous object. Returns its size and sha256.
        Idempotent. Raises StorageError."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Store the file at ``path`` (streamed, never read whole into memory). Idempotent."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        """Create ``key`` only if no object exists there. Raises ConflictError if one does.
        Exactly one of several concurrent callers succeeds."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes. Raises ObjectNotFoundError."""

    @abstractmethod
    def get_file(self, key: str, path: Path) -> ObjectInfo:
        """Copy the object to a local file ``path`` (atomically). Raises ObjectNotFoundError."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size and sha256 of the object, or None if absent. May read the object to hash it."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if an object is stored at ``key``. Cheap (no read)."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys that start with ``prefix``, in lexicographic order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``. Idempotent: deleting an absent key is not an error."""

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size in bytes)`` of the keys that start with ``prefix``, in key order (what
        ``slurmctl purge`` counts). An object deleted meanwhile is left out."""
        for key in self.list(prefix):
            path = self.local_path(key)
            if path is not None:
                try:
                    yield key, path.stat().st_size
                except FileNotFoundError:
                    continue
            else:
                info = self.head(key)
                if info is not None:
                    yield key, info.size

    def batch_durability(self) -> contextlib.AbstractContextManager[None]:
        """Within this context, writes may defer their flush to disk; every write is durable when
        the context exits. Lets the coordinator create thousands of manifests with one sync."""
        return contextlib.nullcontext()

    def local_path(self, key: str) -> Path | None:
        """A local filesystem path holding the object, when the backend has one (lets readers
        stream without a copy). None for remote backends."""
        return None

    def get_verified(self, key: str, sha256: str) -> bytes:
        """Return the object's bytes after checking them against ``sha256``.
        Raises ObjectNotFoundError or ChecksumMismatchError."""
        from slurmctl.fsutil import sha256_bytes

        data = self.get(key)
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ChecksumMismatchError(key, sha256, actual)
        return data


class StateStore(ABC):
    """Small JSON records in named tables, each with a version for optimistic concurrency."""

    @abstractmethod
    def get(self, table: str, key: str) -> Record | None:
        """The current record, or None."""

    @abstractmethod
    def create(self, table: str, key: str, value: dict[str, Any]) -> Record:
        """Create a record at version 1. Raises ConflictError if it exists."""

    @abstractmethod
    def compare_and_set(self, table: str, key: str, value: dict[str, Any], expected_version: int) -> Record:
        """Replace the record if its version is still ``expected_version``; the new version is
        ``expected_version + 1``. Raises ConflictError if another writer got there first (or the
        record does not exist). Never a lost update."""

    @abstractmethod
    def scan(self, table: str, prefix: str = "") -> list[Record]:
        """Every record whose key starts with ``prefix``, sorted by key. Key prefixes that end at
        a ``/`` are efficient on every backend (``jobs/<id>/`` style)."""

    @abstractmethod
    def delete(self, table: str, key: str) -> None:
        """Remove a record. Idempotent."""

    def batch_durability(self) -> contextlib.AbstractContextManager[None]:
        """See ObjectStore.batch_durability."""
        return contextlib.nullcontext()

    def update(
        self,
        table: str,
        key: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
        *,
        attempts: int = 50,
    ) -> Record | None:
        """Read-modify-write with retries on conflict.

        ``change`` receives a copy of the current value (None if absent) and returns the new
        value, or None to leave the record as it is (then the current record is returned). It
        may raise to abort; it may be called several times, so it must be pure.
        """
        delay = 0.002
        for _ in range(attempts):
            current = self.get(table, key)
            new = change(None if current is None else dict(current.value))
            if new is None:
                return current
            try:
                if current is None:
                    return self.create(table, key, new)
                return self.compare_and_set(table, key, new, current.version)
            except ConflictError:
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        raise StorageError(f"gave up updating {table}/{key} after {attempts} conflicting writes")


@dataclass
class Backend:
    """The storage a job uses: one object store and one state store. ``spec`` is how a worker on
    another node reopens the same backend (the ``backend:`` block of the job config)."""

    objects: ObjectStore
    state: StateStore
    description: str
    spec: dict[str, Any]

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Group many writes under one durability point (see ObjectStore.batch_durability)."""
        with self.objects.batch_durability(), self.state.batch_durability():
            yield
