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

The file format (3) is ``HEADER``, the CRC-32 of the payload (4 bytes, big-endian) and the payload,
a :mod:`marshal` dump of a tuple (see ``_load``). Why marshal: it is built into the interpreter
(no import at all, where msgpack cost ~20 ms of every ``status`` start-up) and loads 10k entries in
~10 ms. Its format may change between Python versions, so the header names the version that wrote
it and any other version rebuilds the cache; marshal is not meant for untrusted bytes, so nothing
is unmarshalled before its checksum matches (a torn write is rejected, not decoded).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sys
import time
import zlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of `status`)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Entry = tuple[int, int, int, int, Any]
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

# An Entry is a plain tuple (a class instance per record costs more to build and to marshal):
INO, MTIME_NS, SIZE, VERSION, VALUE = range(5)

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def enabled() -> bool:
    return os.environ.get("SLURMCTL_SCAN_CACHE", "1") not in ("0", "false", "no")


class _Cache:
    """One loaded cache file."""

    __slots__ = ("dir_ino", "dir_mtime_ns", "entries", "file_mtime_ns", "newest_ns", "scan_ns", "subdirs")

    def __init__(self, payload: Any, file_mtime_ns: int) -> None:
        (self.dir_ino, self.dir_mtime_ns, self.scan_ns, self.newest_ns, self.subdirs, self.entries) = payload
        self.file_mtime_ns = file_mtime_ns


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
        data = _read_all(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    start = len(HEADER) + 4
    if not data.startswith(HEADER) or zlib.crc32(data[start:]) != int.from_bytes(data[len(HEADER) : start]):
        return None
    try:
        stored_fields, *payload = marshal.loads(data[start:])
        if stored_fields != fields:  # two projections whose file names collide: just a miss
            return None
        return _Cache(payload, mtime_ns)
    except (ValueError, TypeError, EOFError):
        return None


def _store(path: str, payload: tuple[Any, ...]) -> None:
    """Replace the cache file (temp → rename, no fsync: a lost cache is rebuilt). Never raises."""
    body = marshal.dumps(payload)
    data = HEADER + zlib.crc32(body).to_bytes(4) + body
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


def _should_rewrite(loaded: _Cache | None, reread: int, entries: dict[str, Entry]) -> bool:
    """Whether this scan should replace the cache: there is none, many records were re-read, the
    set of records changed, or — at most every few seconds — anything at all was not reusable
    (so that a directory that has gone quiet soon qualifies for the no-stat shortcut)."""
    if loaded is None:
        return True
    if reread >= max(1, min(REWRITE_MIN, len(entries) // 100)) or len(entries) != len(loaded.entries):
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
) -> tuple[dict[str, Entry], list[str]] | None:
    """The records of the directory ``base``: ``({name: Entry}, subdirs)``, names without
    ``.json``, both sorted; an Entry is the tuple ``(ino, mtime_ns, size, version, value)`` (index
    it with ``VERSION`` and ``VALUE``). With ``fields``, each value is the list of those top-level
    fields (None where absent) — a smaller cache that loads several times faster. Returns None
    when ``base`` does not exist.

    ``read(dir_fd, file_names, fields)`` reads record files in the directory open as ``dir_fd``:
    one Entry per name — with the identity of the file it read, taken by ``fstat`` on the open
    file — or None where the file vanished. It is called only for the files the cache cannot
    vouch for, at most once per scan. Rewrites the cache when that was many. Idempotent; raises
    what ``read`` raises for an unreadable record."""
    path = cache_file(cache_dir, fields)
    t0 = time.monotonic_ns()
    loaded = _load(path, fields)
    try:
        dst = os.stat(base)
    except FileNotFoundError:
        return None
    old: dict[str, Entry] = {}
    safe_before = 0
    if loaded is not None:
        safe_before = loaded.file_mtime_ns - RACY_NS - loaded.scan_ns
        if (
            loaded.dir_ino == dst.st_ino
            and loaded.dir_mtime_ns == dst.st_mtime_ns
            and dst.st_mtime_ns < safe_before
            and loaded.newest_ns < safe_before
        ):
            # Nothing was created, renamed or removed here since the cache was written.
            # Stored sorted by name (marshal keeps a dict's order): no sort needed here.
            return loaded.entries, loaded.subdirs
        old = loaded.entries

    entries: dict[str, Entry | None] = {}
    subdirs: list[str] = []
    to_read: list[str] = []
    stat = os.stat
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    try:
        with os.scandir(fd) as it:
            listing = sorted([(e.name, e.is_dir(follow_symlinks=False)) for e in it])
        for name, is_dir in listing:
            if is_dir:
                subdirs.append(name)
                continue
            if not name.endswith(".json") or name.startswith("."):
                continue
            key = name[:-5]
            prev = old.get(key)
            if prev is not None and prev[MTIME_NS] < safe_before:
                try:
                    st = stat(name, dir_fd=fd)
                except FileNotFoundError:
                    continue  # removed since the listing
                if prev[INO] == st.st_ino and prev[MTIME_NS] == st.st_mtime_ns and prev[SIZE] == st.st_size:
                    entries[key] = prev
                    continue
            # A file the cache does not know (or no longer trusts): no stat here, the reader
            # takes the identity from the file it opens. Its slot keeps the sorted order.
            entries[key] = None
            to_read.append(name)
        if to_read:
            for name, got in zip(to_read, read(fd, to_read, fields), strict=True):
                if got is None:
                    del entries[name[:-5]]  # vanished since the listing
                else:
                    entries[name[:-5]] = got
    finally:
        os.close(fd)
    done: dict[str, Entry] = entries  # type: ignore[assignment]  # every None slot is filled or gone
    if _should_rewrite(loaded, len(to_read), done):
        newest = max((e[MTIME_NS] for e in done.values()), default=0)
        scan_ns = time.monotonic_ns() - t0
        _store(path, (fields, dst.st_ino, dst.st_mtime_ns, scan_ns, newest, subdirs, done))
    return done, subdirs
