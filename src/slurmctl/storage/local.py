"""The embedded default backend: a directory on a POSIX filesystem.

Safe when workers on several nodes share only that filesystem (NFS v3+, GPFS, Lustre):

* Objects are written to a temp file in the target directory, fsynced and renamed into place —
  rename is atomic on all of these filesystems.
* ``put_if_absent`` uses ``link(2)`` of a complete temp file onto the key, which fails with EEXIST
  for every caller but one (the classic NFS-safe exclusive create; ``O_EXCL`` alone would let a
  reader see an empty file).
* State records are JSON files with a ``version`` field. Compare-and-set takes a per-record lock
  (an exclusive ``link(2)`` of a lock file), re-reads, compares, writes with rename, and releases.
  The lock is held for milliseconds; one left behind by a SIGKILLed writer is broken after
  ``stale_lock_s`` (the lock file names its host, pid and time). Readers never lock.
* No SQLite database is ever shared between nodes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import operator
import os
import time

from slurmctl.errors import ConflictError, ObjectNotFoundError, StorageError
from slurmctl.fsutil import CHUNK, atomic_writer, fsync_dir, sha256_bytes, sha256_file
from slurmctl.storage import scancache
from slurmctl.storage.base import Backend, ObjectInfo, ObjectStore, Record, StateStore

# Imported where used, not here: `status` imports this module, and every module-level import is
# paid by each call (tempfile, shutil and socket were ~15 ms of a ~0.2 s command; pathlib, which
# only the writers use, ~5 ms).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path
    from typing import Any

    from slurmctl.storage.scancache import Entry

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Scans open records with O_NOATIME where the system has it: the first read of a freshly written
# file would otherwise update its access time (relatime), dirtying 10k inodes on a cold `status`
# (~20% slower here, and metadata load on a shared filesystem). The kernel refuses it (EPERM) on
# files of other users; the first refusal turns it off for the process.
_noatime = getattr(os, "O_NOATIME", 0)
# The C scanner behind json.loads, called directly: json.loads on bytes first detects the
# encoding and strips whitespace with regexes, which was a third of decoding a 300-byte record.
_scan_once = json.JSONDecoder().scan_once


_HAND_EDITED = "the file was edited by hand or written by another tool; `slurmctl inspect` shows it"


def _decode_record(data: bytes, where: str, name: str = "") -> tuple[int, Any]:
    """``(version, value)`` of a record file's bytes. Raises StorageError naming the file (``where``,
    joined with ``name`` if given — only on the error path) if they are not a state record."""
    try:
        try:
            text = data.decode()
            doc, end = _scan_once(text, 0)
            if end != len(text):
                raise ValueError
        except (ValueError, StopIteration):
            # Anything unusual (whitespace, a BOM, other encodings, errors): json.loads decides,
            # with its own error message — the same outcome as before the fast decode.
            doc = json.loads(data)
        return doc["version"], doc["value"]
    except ValueError as exc:
        path = os.path.join(where, name) if name else where
        raise StorageError(f"cannot read state record {path}: {exc}") from exc
    except (KeyError, TypeError, IndexError):
        path = os.path.join(where, name) if name else where
        raise StorageError(
            f"cannot read state record {path}: not a state record (an object with version and value)",
            hint=_HAND_EDITED,
        ) from None


# From this many records to read in one scan (a cold `status` of a big job), projections are
# decoded with msgspec: ~14k instructions a record against ~44k for json, which pays for its
# import (~100M instructions, ~30 ms) from ~3,500 records on. Smaller scans — the usual ones,
# served by the cache — never import it.
BULK_DECODE_MIN = 4000
_bulk_decoders: dict[tuple[str, ...], tuple[Any, Any, tuple[type[Exception], ...]] | None] = {}


def _bulk_decoder(fields: tuple[str, ...]) -> tuple[Any, Any, tuple[type[Exception], ...]] | None:
    """``(decode, astuple, errors)`` for reading many records projected on ``fields`` with msgspec:
    ``decode(bytes)`` gives an object with ``.version`` and ``.value``, ``astuple(value)`` the
    fields in order (None where absent), and ``errors`` are the exceptions after which the careful
    path decides (it yields exactly what json.loads would: msgspec is only ever stricter — NaN,
    lone surrogates, a BOM, numbers out of float range — and then the record is decoded again).
    None if msgspec is unavailable."""
    if fields in _bulk_decoders:
        return _bulk_decoders[fields]
    try:
        import msgspec
    except ImportError:
        got = None
    else:
        # Positional attribute names, renamed to the JSON fields: any field name works.
        projection = msgspec.defstruct(
            "Projection",
            [(f"f{i}", object, None) for i in range(len(fields))],
            rename={f"f{i}": name for i, name in enumerate(fields)},
        )
        record = msgspec.defstruct("ProjectedRecord", [("version", object), ("value", projection)])
        decoder = msgspec.json.Decoder(record)
        got = (decoder.decode, msgspec.structs.astuple, (msgspec.DecodeError, msgspec.ValidationError))
    _bulk_decoders[fields] = got
    return got


def _decode_projected(data: bytes, fields: tuple[str, ...] | None, where: str, name: str) -> tuple[int, Any]:
    """``(version, value)`` of a record file's bytes, the value projected on ``fields`` (None where
    a field is absent) unless ``fields`` is None. Raises StorageError naming the file."""
    version, value = _decode_record(data, where, name)
    if fields is None:
        return version, value
    if not isinstance(value, dict):
        raise StorageError(
            f"cannot read state record {os.path.join(where, name)}: its value is not an object",
            hint=_HAND_EDITED,
        )
    return version, [value.get(f) for f in fields]


def _projector(fields: tuple[str, ...]) -> Callable[[dict[str, Any]], list[Any]]:
    """A function from a record's value to the list of ``fields`` in it, in C (itemgetter); it
    raises KeyError where one is absent (then the careful path puts None there) and TypeError if
    the value is not an object."""
    if len(fields) == 1:
        one = operator.itemgetter(fields[0])
        return lambda value: [one(value)]
    many = operator.itemgetter(*fields)
    return lambda value: list(many(value))


def _read_rest(fd: int, head: bytes) -> bytes:
    """``head`` and what follows it in the open file ``fd``, to EOF. Raises OSError."""
    chunks = [head]
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_open(fd: int) -> tuple[os.stat_result, bytes]:
    """The identity and the whole content of the open file ``fd``. Raises OSError."""
    st = os.fstat(fd)
    data = os.read(fd, st.st_size + 1)
    if len(data) != st.st_size:  # a short read, or the file changed size since fstat: read to EOF
        data = _read_rest(fd, data)
    return st, data


def _check_key(key: str) -> str:
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts[:-1])
        or parts[-1] in ("", "..")
    ):
        raise StorageError(f"invalid storage key {key!r}")
    return key


def _link_exclusive(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Hard-link ``tmp`` to ``target``; False if ``target`` exists. The temp file is removed."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _absolute(root: str | os.PathLike[str]) -> str:
    """``str(Path(root).expanduser().absolute())`` without importing pathlib: ``~`` expanded,
    relative to the working directory, empty and ``.`` components dropped, ``..`` kept (the
    filesystem resolves it: ``a/link/..`` need not be ``a``), and POSIX's leading ``//`` kept."""
    path = os.path.expanduser(os.fspath(root))
    if not path.startswith("/"):
        cwd = os.getcwd()
        path = f"{cwd}/{path}" if path else cwd
    lead = "//" if path.startswith("//") and not path.startswith("///") else "/"
    return lead + "/".join(p for p in path.split("/") if p and p != ".")


class _RootDir:
    """A store's root directory: kept as a string for the readers, a Path made on first use."""

    _root: str
    _root_path: Path | None = None

    @property
    def root(self) -> Path:
        """The root directory, as a Path (pathlib is imported by the first writer to need it)."""
        if self._root_path is None:
            from pathlib import Path

            self._root_path = Path(self._root)
        return self._root_path


class _DeferrableSync:
    """``batch_durability`` for the local stores: skip per-file fsync, then one ``sync()``."""

    fsync: bool

    @contextlib.contextmanager
    def batch_durability(self) -> Iterator[None]:
        previous = self.fsync
        self.fsync = False
        try:
            yield
        finally:
            self.fsync = previous
            if previous:
                os.sync()


class LocalObjectStore(_RootDir, _DeferrableSync, ObjectStore):
    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._root = os.fspath(root)
        self.fsync = fsync

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def put(self, key: str, data: bytes) -> ObjectInfo:
        path = self._path(key)
        try:
            with atomic_writer(path, fsync=self.fsync) as f:
                f.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        return ObjectInfo(key, len(data), sha256_bytes(data))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        target = self._path(key)
        try:
            if os.path.realpath(path) == os.path.realpath(target):
                return ObjectInfo(key, target.stat().st_size, sha256_file(target))
            import shutil

            with atomic_writer(target, fsync=self.fsync) as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
        except OSError as exc:
            raise StorageError(f"cannot store {path} as {target}: {exc.strerror}") from exc
        return ObjectInfo(key, target.stat().st_size, sha256_file(target))

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        import tempfile

        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            created = _link_exclusive(tmp, target)
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
        if not created:
            raise ConflictError(key, "already exists")
        if self.fsync:
            fsync_dir(target.parent)
        return ObjectInfo(key, len(data), sha256_bytes(data))

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    def get_file(self, key: str, path: Path) -> ObjectInfo:
        src = self._path(key)
        try:
            import shutil

            with open(src, "rb") as f, atomic_writer(path, fsync=False) as out:
                shutil.copyfileobj(f, out, CHUNK)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot copy {src} to {path}: {exc.strerror}") from exc
        return ObjectInfo(key, os.stat(path).st_size, sha256_file(path))

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            size = path.stat().st_size
            return ObjectInfo(key, size, sha256_file(path))
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> Iterator[str]:
        # Walk only the directory the prefix names (plus a name filter), never the whole root.
        head, _, name_prefix = prefix.rpartition("/")
        base = self.root / head if head else self.root
        if not base.is_dir():
            return iter(())
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for fn in filenames:
                if fn.endswith(".tmp") and fn.startswith("."):
                    continue  # an in-flight atomic write
                key = rel + fn
                if key.startswith(prefix):
                    found.append(key)
            if dirpath == str(base) and name_prefix:
                dirnames[:] = [d for d in dirnames if d.startswith(name_prefix)]
        return iter(sorted(found))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


class FileStateStore(_RootDir, _DeferrableSync, StateStore):
    """Versioned JSON records, one file each: ``<root>/<table>/<key>.json``."""

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, stale_lock_s: float = 30.0
    ) -> None:
        self._root = os.fspath(root)
        self.fsync = fsync
        self.stale_lock_s = stale_lock_s
        self._host_name: str | None = None

    @property
    def _host(self) -> str:
        """This host's name, for lock files (looked up on the first write: readers never lock,
        and importing socket is a cost every `status` would pay)."""
        if self._host_name is None:
            import socket

            self._host_name = socket.gethostname()
        return self._host_name

    def _path(self, table: str, key: str) -> Path:
        return self.root / _check_key(table) / f"{_check_key(key)}.json"

    @staticmethod
    def _read(path: str | os.PathLike[str], key: str) -> Record | None:
        """The record at ``path``, or None if there is none. Raises StorageError if unreadable.

        Plain os.open/os.read rather than a buffered file object: a scan reads thousands of tiny
        records, and the file object's set-up was a third of each read."""
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read state record {path}: {exc}") from exc
        try:
            data = _read_open(fd)[1]
        except OSError as exc:
            raise StorageError(f"cannot read state record {path}: {exc}") from exc
        finally:
            os.close(fd)
        version, value = _decode_record(data, os.fspath(path))
        return Record(key, version, value)

    @staticmethod
    def _read_many(
        dir_fd: int, names: list[str], fields: tuple[str, ...] | None, base: str
    ) -> list[Entry | None]:
        """The scan cache's reader (:mod:`slurmctl.storage.scancache`): for each record file of
        ``names`` in the directory open as ``dir_fd`` (``base``, named in errors), the entry
        ``(ino, mtime_ns, size, version, value)`` — the value projected on ``fields`` unless None
        — or None if the file vanished. Raises StorageError if a record is unreadable. Reads
        only: idempotent.

        One loop with openat(2) relative to the directory (no path building or lookup per file)
        and fstat on the open file, whose identity is then exactly that of the bytes read."""
        # Written for speed (a cold `status` of a 10k-task job reads 10k records): two passes,
        # the system calls first and then the decoding — interleaving them was ~20% slower (the
        # kernel and the JSON scanner keep evicting each other from the CPU caches); locals for
        # the functions; the C JSON scanner; an itemgetter for the projection. A record that is
        # not exactly what the store writes takes the careful path, which gives the same value
        # (or the same error) as json.loads would.
        raw: list[tuple[os.stat_result, bytes] | None] = []
        append = raw.append
        open_at, fstat, read, close = os.open, os.fstat, os.read, os.close
        global _noatime
        flags = os.O_RDONLY | _O_CLOEXEC | _noatime
        for name in names:
            try:
                fd = open_at(name, flags, dir_fd=dir_fd)
            except FileNotFoundError:
                append(None)  # replaced or removed since the listing
                continue
            except OSError as exc:
                try:
                    if not (isinstance(exc, PermissionError) and flags & _noatime):
                        raise
                    # O_NOATIME is refused on files of other users: read them as usual
                    fd = open_at(name, flags & ~_noatime, dir_fd=dir_fd)
                    flags &= ~_noatime
                    _noatime = 0
                except FileNotFoundError:
                    append(None)
                    continue
                except OSError as exc2:
                    where = os.path.join(base, name)
                    raise StorageError(f"cannot read state record {where}: {exc2}") from exc2
            try:
                st = fstat(fd)
                data = read(fd, st.st_size + 1)
                if len(data) != st.st_size:  # a short read, or the size changed since fstat
                    data = _read_rest(fd, data)
            except OSError as exc:
                raise StorageError(f"cannot read state record {os.path.join(base, name)}: {exc}") from exc
            finally:
                close(fd)
            append((st, data))

        bulk = _bulk_decoder(fields) if fields is not None and len(names) >= BULK_DECODE_MIN else None
        if bulk is not None:
            bulk_decode, as_tuple, bulk_errors = bulk

            def decode(data: bytes, name: str) -> tuple[int, Any]:
                try:
                    rec = bulk_decode(data)
                    return rec.version, list(as_tuple(rec.value))
                except bulk_errors:
                    return _decode_projected(data, fields, base, name)

        else:
            scan = _scan_once
            project = None if fields is None else _projector(fields)

            def decode(data: bytes, name: str) -> tuple[int, Any]:
                try:
                    text = data.decode()
                    doc, end = scan(text, 0)
                    if end != len(text):
                        raise ValueError("trailing data")
                    value = doc["value"]
                    return doc["version"], value if project is None else project(value)
                except (ValueError, StopIteration, KeyError, TypeError, IndexError):
                    return _decode_projected(data, fields, base, name)

        out: list[Entry | None] = []
        for name, got in zip(names, raw, strict=True):
            if got is None:
                out.append(None)
                continue
            st, data = got
            version, value = decode(data, name)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size, version, value))
        return out

    def get(self, table: str, key: str) -> Record | None:
        return self._read(os.path.join(self._root, _check_key(table), f"{_check_key(key)}.json"), key)

    def _write(self, path: Path, key: str, version: int, value: dict[str, Any]) -> Record:
        data = json.dumps({"version": version, "value": value}, separators=(",", ":")).encode()
        try:
            with atomic_writer(path, fsync=self.fsync) as f:
                f.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write state record {path}: {exc.strerror}") from exc
        return Record(key, version, value)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        import tempfile

        lock = path.with_name(path.name + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        info = json.dumps({"host": self._host, "pid": os.getpid(), "time": time.time()}).encode()
        delay = 0.001
        deadline = time.monotonic() + 2 * self.stale_lock_s + 10
        while True:
            fd, tmp = tempfile.mkstemp(prefix=f".{lock.name}.", suffix=".tmp", dir=lock.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(info)
            if _link_exclusive(tmp, lock):
                break
            self._break_if_stale(lock)
            if time.monotonic() > deadline:
                raise StorageError(f"could not lock {path} (lock file {lock} is held)")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def _break_if_stale(self, lock: Path) -> None:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age < self.stale_lock_s:
            return
        # Rename to a unique name first: of several breakers exactly one rename succeeds.
        grave = lock.with_name(f".{lock.name}.stale.{os.getpid()}.{time.monotonic_ns()}")
        try:
            os.rename(lock, grave)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            return
        with contextlib.suppress(FileNotFoundError):
            grave.unlink()

    def create(self, table: str, key: str, value: dict[str, Any]) -> Record:
        import tempfile

        path = self._path(table, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"version": 1, "value": value}, separators=(",", ":")).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        if not _link_exclusive(tmp, path):
            raise ConflictError(f"{table}/{key}", "record already exists")
        return Record(key, 1, value)

    def compare_and_set(self, table: str, key: str, value: dict[str, Any], expected_version: int) -> Record:
        path = self._path(table, key)
        with self._locked(path):
            current = self._read(path, key)
            if current is None:
                raise ConflictError(f"{table}/{key}", "record does not exist")
            if current.version != expected_version:
                raise ConflictError(
                    f"{table}/{key}", f"version is {current.version}, expected {expected_version}"
                )
            return self._write(path, key, expected_version + 1, value)

    def _location(self, table: str, prefix: str) -> tuple[str, str, str]:
        """(directory to list, key prefix of its records, name prefix to match) for a scan."""
        head, _, name_prefix = prefix.rpartition("/")
        table_dir = os.path.join(self._root, _check_key(table))
        base = os.path.join(table_dir, head) if head else table_dir
        return base, f"{head}/" if head else "", name_prefix

    def scan(self, table: str, prefix: str = "") -> list[Record]:
        if scancache.enabled():
            return list(map(Record, *self._scan_cached(table, prefix)))
        base, key_head, name_prefix = self._location(table, prefix)
        records: list[Record] = []
        try:
            with os.scandir(base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return records
        for entry in entries:
            name = entry.name
            if entry.is_dir():
                if name.startswith(name_prefix):
                    records.extend(self.scan(table, f"{key_head}{name}/"))
                continue
            if not name.endswith(".json") or name.startswith(".") or not name.startswith(name_prefix):
                continue
            # entry.path as a str: building a Path per record cost a third of a 10k-task scan.
            rec = self._read(entry.path, key_head + name[:-5])
            if rec is not None:
                records.append(rec)
        return records

    def scan_fields(self, table: str, prefix: str, fields: Sequence[str]) -> list[tuple[str, list[Any]]]:
        if not scancache.enabled():
            return super().scan_fields(table, prefix, fields)
        keys, _, values = self._scan_cached(table, prefix, tuple(fields))
        return list(zip(keys, values, strict=True))

    def _scan_cached(
        self, table: str, prefix: str, fields: tuple[str, ...] | None = None
    ) -> tuple[list[str], list[int], list[Any]]:
        """``scan`` through the stat-validated directory cache (:mod:`slurmctl.storage.scancache`):
        the keys, versions and values of the records, in the same order as ``scan``, reading only
        the record files that changed since the last scan."""
        base, key_head, name_prefix = self._location(table, prefix)
        where = base

        def read(dir_fd: int, names: list[str], fields: tuple[str, ...] | None) -> list[Entry | None]:
            return self._read_many(dir_fd, names, fields, where)

        cache_dir = os.path.join(self._root, ".scan-cache", table, key_head)
        found = scancache.scan_dir(where, cache_dir, read, fields)
        if found is None:
            return [], [], []
        subdirs = [d for d in found.subdirs if d.startswith(name_prefix)]
        if not subdirs and not name_prefix:
            return [key_head + k for k in found.keys], found.versions, found.values
        rows = [
            (f"{k}.json", key_head + k, v, val)
            for k, v, val in zip(found.keys, found.versions, found.values, strict=True)
            if k.startswith(name_prefix)
        ]
        # Same order as a sorted listing of the directory: a record file `x.json` and a
        # subdirectory `x` sort by their names on disk.
        merged: list[tuple[str, Any]] = [(r[0], r) for r in rows] + [(d, None) for d in subdirs]
        merged.sort(key=lambda t: t[0])
        keys: list[str] = []
        versions: list[int] = []
        values: list[Any] = []
        for name, row in merged:
            if row is None:
                k, v, val = self._scan_cached(table, f"{key_head}{name}/", fields)
                keys += k
                versions += v
                values += val
            else:
                keys.append(row[1])
                versions.append(row[2])
                values.append(row[3])
        return keys, versions, values

    def delete(self, table: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(table, key).unlink()


def local_backend(root: str | os.PathLike[str], *, fsync: bool = True) -> Backend:
    """The local backend rooted at ``root`` (``~`` expanded, made absolute; created if missing).
    Raises StorageError if it cannot be created. Idempotent."""
    path = _absolute(root)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create backend root {path}: {exc.strerror}",
            hint="set backend.root in the job file or --root / SLURMCTL_ROOT to a writable directory",
        ) from exc
    return Backend(
        objects=LocalObjectStore(path, fsync=fsync),
        state=FileStateStore(os.path.join(path, "state"), fsync=fsync),
        description=f"local:{path}",
        spec={"kind": "local", "root": path},
    )
