"""A stat-validated cache of one record directory of the local state store.

Why: ``status`` on a job of 10k tasks scans 10k record files, and on a shared filesystem (or this
2-CPU VM) opening, reading and decoding each one costs ~15-25 µs — 0.15-0.25 s before any work.
Most records do not change between two scans (a finished task's record never does), so a scan
keeps, beside the state root, the records it read together with each file's identity, and the
next scan reads only the files whose identity changed. The idea is git's index (``racy git``), and
so are its safety rules.

How a scan decides (all timestamps are the *filesystem's*: a file's mtime is compared only with
the mtime of the cache file, written on the same filesystem, so client clock skew on NFS does not
matter):

* Every record write of the local store replaces the file by a rename in the same directory
  (temp → fsync → rename) — never an in-place write. A replaced record therefore has a new inode
  and a new mtime, and its directory a new mtime.
* An entry is reused when the file's (inode, mtime_ns, size) equals the cached one **and** its
  mtime is older than the cache file's mtime minus the racy window (2 s plus the time the scan
  that wrote the cache took). Within that window a rewrite could have kept the same coarse
  timestamp, so such entries are always read again (filesystem timestamps are jiffy- or
  second-granular on some servers).
* When the directory's own (inode, mtime_ns) equals the cached one and is older than the racy
  window, nothing was created, renamed or removed in it since the cache was written: the whole
  cached listing is reused without a single stat (a finished job).
* The cache is only a cache: it is written with temp → rename (no fsync — after a crash a torn or
  empty cache file fails its checksum and is rebuilt from the records), a cache that cannot be
  read or written is ignored, and concurrent scans simply race to replace it (every version is a
  correct snapshot).

Editing a record file by hand *in place* within the same second as a scan defeats the identity
check; the store's own writers never do that. ``SLURMCTL_SCAN_CACHE=0`` turns the cache off.

The file format (3) is ``HEADER`` and two sections, each the CRC-32 of its body (4 bytes), the
body's length (8 bytes; both big-endian) and the body, a :mod:`marshal` dump: first the listing —
``(fields, dir_ino, dir_mtime_ns, scan_ns, newest_mtime_ns, subdirs, keys, versions, values)``,
columns sorted by file name — then the files' identities ``(inos, mtimes_ns, sizes)``, which
only a scan of a changed directory decodes. Why marshal: it is built into the interpreter (no
import at all, where msgpack cost ~20 ms of every ``status`` start-up) and loads 10k entries in a
few ms. Its format may change between Python versions, so the header names the version that wrote
it and any other version rebuilds the cache; marshal is not meant for untrusted bytes, so nothing
is unmarshalled before its checksum matches (a torn write is rejected, not decoded).
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import sys
import time
import zlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of `status`)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    # What a reader returns for one file: (ino, mtime_ns, size, version, value)
    Entry = tuple[int, int, int, Any, Any]
    # read(dir_fd, file_names, fields) -> one Entry (or None: the file vanished) per name, in order
    Reader = Callable[[int, list[str], tuple[str, ...] | None], list[Entry | None]]

CACHE_FORMAT = 3
HEADER = b"slurmctl scan cache %d py%d.%d\n" % (CACHE_FORMAT, *sys.version_info[:2])
RACY_NS = 2_000_000_000
# Rewrite the cache after a scan that re-read at least this many records (or 1% of them); below
# that, re-reading them next time is cheaper than rewriting a large cache file on every poll.
REWRITE_MIN = 64
# ... and at most this often while the directory keeps changing (a running job polled every 0.5 s).
REWRITE_EVERY_NS = 5_000_000_000

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def enabled() -> bool:
    return os.environ.get("SLURMCTL_SCAN_CACHE", "1") not in ("0", "false", "no")


class Scan:
    """The records of one directory, as columns in file-name order: ``keys`` (file names without
    ``.json``), their ``versions`` and ``values`` (whole values, or lists of the projected
    fields); and the sorted names of its subdirectories."""

    __slots__ = ("keys", "subdirs", "values", "versions")

    def __init__(self, keys: list[str], versions: list[int], values: list[Any], subdirs: list[str]) -> None:
        self.keys = keys
        self.versions = versions
        self.values = values
        self.subdirs = subdirs


class _Cache:
    """One loaded cache file; the identities section is decoded only when asked for."""

    __slots__ = (
        "dir_ino",
        "dir_mtime_ns",
        "file_mtime_ns",
        "ids",
        "keys",
        "newest_ns",
        "scan_ns",
        "subdirs",
        "values",
        "versions",
    )

    def __init__(self, listing: Any, ids: memoryview, file_mtime_ns: int) -> None:
        (
            self.dir_ino,
            self.dir_mtime_ns,
            self.scan_ns,
            self.newest_ns,
            self.subdirs,
            self.keys,
            self.versions,
            self.values,
        ) = listing
        self.ids = ids
        self.file_mtime_ns = file_mtime_ns

    def identities(self) -> tuple[list[int], list[int], list[int]] | None:
        """``(inos, mtimes_ns, sizes)`` in the order of ``keys``, or None if that section is torn."""
        got = _section(self.ids, 0)
        if got is None:
            return None
        try:
            inos, mtimes, sizes = marshal.loads(got[0])
        except (ValueError, TypeError, EOFError):
            return None
        if not len(inos) == len(mtimes) == len(sizes) == len(self.keys):
            return None
        return inos, mtimes, sizes


def _section(data: memoryview, at: int) -> tuple[memoryview, int] | None:
    """The body of the section starting at ``at`` and where the next one starts; None if the
    section is truncated or its checksum does not match."""
    start = at + 12
    if len(data) < start:
        return None
    crc = int.from_bytes(data[at : at + 4], "big")
    end = start + int.from_bytes(data[at + 4 : start], "big")
    body = data[start:end]
    if len(data) < end or zlib.crc32(body) != crc:
        return None
    return body, end


def _pack(obj: Any) -> bytes:
    body = marshal.dumps(obj)
    return zlib.crc32(body).to_bytes(4, "big") + len(body).to_bytes(8, "big") + body


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _load(path: str, fields: tuple[str, ...] | None) -> _Cache | None:
    """The cache at ``path``, or None if it is missing, torn, from another format or Python
    version, or of another projection. Never raises."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return None
    try:
        mtime_ns = os.fstat(fd).st_mtime_ns
        data = memoryview(_read_all(fd))
    except OSError:
        return None
    finally:
        os.close(fd)
    if data[: len(HEADER)] != HEADER:
        return None
    got = _section(data, len(HEADER))
    if got is None:
        return None
    try:
        stored_fields, *listing = marshal.loads(got[0])
        if stored_fields != fields:  # two projections whose file names collide: just a miss
            return None
        cache = _Cache(listing, data[got[1] :], mtime_ns)
    except (ValueError, TypeError, EOFError):
        return None
    if not len(cache.keys) == len(cache.versions) == len(cache.values):
        return None
    return cache


def _store(path: str, listing: tuple[Any, ...], ids: tuple[list[int], list[int], list[int]]) -> bool:
    """Replace the cache file (temp → rename, no fsync: a lost cache is rebuilt); return whether it
    was written. Never raises."""
    data = HEADER + _pack(listing) + _pack(ids)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
        except FileNotFoundError:
            os.makedirs(head, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def _should_rewrite(loaded: _Cache | None, reread: int, count: int) -> bool:
    """Whether this scan should replace the cache: there is none, many records were re-read, the
    set of records changed, or — at most every few seconds — anything at all was not reusable
    (so that a directory that has gone quiet soon qualifies for the no-stat shortcut)."""
    if loaded is None:
        return True
    if reread >= max(1, min(REWRITE_MIN, count // 100)) or count != len(loaded.keys):
        return True
    return time.time_ns() - loaded.file_mtime_ns > REWRITE_EVERY_NS


def cache_file(cache_dir: str | os.PathLike[str], fields: tuple[str, ...] | None) -> str:
    """Where the cache of a directory lives: one file per projection (None: whole values). The
    projection's name is hashed only to name the file; the cache itself records its fields."""
    if fields is None:
        return os.path.join(cache_dir, ".scan")
    return os.path.join(cache_dir, f".scan-{zlib.crc32(chr(0).join(fields).encode()):08x}")


def scan_dir(
    base: str, cache_dir: str | os.PathLike[str], read: Reader, fields: tuple[str, ...] | None = None
) -> Scan | None:
    """The records of the directory ``base`` (a :class:`Scan`: keys, versions, values in file-name
    order, and the subdirectories). With ``fields``, each value is the list of those top-level
    fields (None where absent) — a smaller cache that loads several times faster. Returns None
    when ``base`` does not exist.

    ``read(dir_fd, file_names, fields)`` reads record files in the directory open as ``dir_fd``:
    one entry ``(ino, mtime_ns, size, version, value)`` per name — with the identity of the file
    it read, taken by ``fstat`` on the open file — or None where the file vanished. It is called
    only for the files the cache cannot vouch for, at most once per scan. Rewrites the cache when
    that was many. Idempotent; raises what ``read`` raises for an unreadable record."""
    # The cyclic garbage collector is paused for the scan: it builds tens of thousands of
    # containers that all stay alive, and the collections their allocations trigger (each one
    # traversing everything built so far) cost several percent of a scan, for nothing.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _scan_dir(base, cache_dir, read, fields)
    finally:
        if paused:
            gc.enable()


def _scan_dir(
    base: str, cache_dir: str | os.PathLike[str], read: Reader, fields: tuple[str, ...] | None
) -> Scan | None:
    path = cache_file(cache_dir, fields)
    t0 = time.monotonic_ns()
    loaded = _load(path, fields)
    try:
        dst = os.stat(base)
    except FileNotFoundError:
        return None
    safe_before = 0
    known: dict[str, int] = {}  # key -> its index in the loaded cache (and in the lists below)
    old_versions: list[Any] = []
    old_values: list[Any] = []
    old_inos: list[int] = []
    old_mtimes: list[int] = []
    old_sizes: list[int] = []
    if loaded is not None:
        safe_before = loaded.file_mtime_ns - RACY_NS - loaded.scan_ns
        if (
            loaded.dir_ino == dst.st_ino
            and loaded.dir_mtime_ns == dst.st_mtime_ns
            and dst.st_mtime_ns < safe_before
            and loaded.newest_ns < safe_before
        ):
            # Nothing was created, renamed or removed here since the cache was written: the
            # listing is reused as stored (sorted), the identities are not even decoded.
            return Scan(loaded.keys, loaded.versions, loaded.values, loaded.subdirs)
        ids = loaded.identities()
        if ids is not None:  # else: a torn identities section, every record is read again
            known = {k: i for i, k in enumerate(loaded.keys)}
            old_versions, old_values = loaded.versions, loaded.values
            old_inos, old_mtimes, old_sizes = ids

    subdirs: list[str] = []
    to_read: list[str] = []
    stat = os.stat
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    try:
        with os.scandir(fd) as it:
            listing = []
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(e.name)
                else:
                    listing.append(e.name)
        listing.sort()  # names, not (name, is_dir) pairs: comparing str is several times cheaper
        subdirs.sort()
        names = [n for n in listing if n.endswith(".json") and not n.startswith(".")]
        if not known:
            # No usable cache (the first scan): read everything, no stat (the reader fstat's
            # each file it opens), and transpose its entries into columns in C.
            to_read = names
            got = read(fd, to_read, fields)
            if None in got:  # files that vanished between the listing and their read
                names = [n for n, e in zip(names, got, strict=True) if e is not None]
                got = [e for e in got if e is not None]
            keys = [n[:-5] for n in names]
            columns = [list(c) for c in zip(*got, strict=True)] if got else [[], [], [], [], []]
            inos, mtimes, sizes, versions, values = columns
        else:
            keys, versions, values, inos, mtimes, sizes = [], [], [], [], [], []
            slots: list[int] = []  # where each of to_read goes in the columns
            for name in names:
                key = name[:-5]
                i = known.get(key)
                if i is not None and old_mtimes[i] < safe_before:
                    try:
                        st = stat(name, dir_fd=fd)
                    except FileNotFoundError:
                        continue  # removed since the listing
                    ino, mtime_ns, size = st.st_ino, st.st_mtime_ns, st.st_size
                    if (old_inos[i], old_mtimes[i], old_sizes[i]) == (ino, mtime_ns, size):
                        keys.append(key)
                        versions.append(old_versions[i])
                        values.append(old_values[i])
                        inos.append(ino)
                        mtimes.append(mtime_ns)
                        sizes.append(size)
                        continue
                # A file the cache does not know (or no longer trusts): no stat here, the reader
                # takes the identity from the file it opens. Its slot keeps the sorted order.
                slots.append(len(keys))
                to_read.append(name)
                keys.append(key)
                versions.append(None)
                values.append(None)
                inos.append(0)
                mtimes.append(0)
                sizes.append(0)
            gone: list[int] = []
            if to_read:
                for slot, got_one in zip(slots, read(fd, to_read, fields), strict=True):
                    if got_one is None:
                        gone.append(slot)  # vanished since the listing
                    else:
                        inos[slot], mtimes[slot], sizes[slot], versions[slot], values[slot] = got_one
            for slot in reversed(gone):
                for col in (keys, versions, values, inos, mtimes, sizes):
                    del col[slot]
    finally:
        os.close(fd)
    if _should_rewrite(loaded, len(to_read), len(keys)):
        scan_ns = time.monotonic_ns() - t0
        newest = max(mtimes, default=0)
        stored = _store(
            path,
            (fields, dst.st_ino, dst.st_mtime_ns, scan_ns, newest, subdirs, keys, versions, values),
            (inos, mtimes, sizes),
        )
        if stored and loaded is None:
            _drop_format2(cache_dir)
    return Scan(keys, versions, values, subdirs)


def _drop_format2(cache_dir: str | os.PathLike[str]) -> None:
    """Remove the projection caches of format 2 in ``cache_dir``: format 2 named them ``.scan-`` and
    16 hex digits (a sha256 of the fields), format 3 names them after a CRC (8 hex digits), so
    nothing reads them any more, and they stayed beside every job scanned before the upgrade (~0.5 MB
    for 10k tasks). Runs when a directory first gets a format-3 file; a cache directory holds only
    cache files, so listing it is cheap. Idempotent; never raises."""
    with contextlib.suppress(OSError):
        for name in os.listdir(cache_dir):
            if len(name) == 22 and name.startswith(".scan-") and _is_hex(name[6:]):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(cache_dir, name))


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
