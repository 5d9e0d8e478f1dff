"""A stat-validated cache of one record directory of the local state store.

Why: ``status`` on a job of 10k tasks scans 10k record files, and on a shared filesystem (or this
2-CPU VM) opening and reading each one costs ~25 µs — 0.25 s before any work. Most records do not
change between two scans (a finished task's record never does), so a scan keeps, beside the state
root, the records it read together with each file's identity, and the next scan reads only the
files whose identity changed. The idea is git's index (``racy git``), and so are its safety rules.

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
  empty cache file fails to decode and is rebuilt from the records), a cache that cannot be read
  or written is ignored, and concurrent scans simply race to replace it (every version is a
  correct snapshot).

Editing a record file by hand *in place* within the same second as a scan defeats the identity
check; the store's own writers never do that. ``SLURMCTL_SCAN_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import msgspec

CACHE_FORMAT = 2
RACY_NS = 2_000_000_000
# Rewrite the cache after a scan that re-read at least this many records (or 1% of them); below
# that, re-reading them next time is cheaper than rewriting a large cache file on every poll.
REWRITE_MIN = 64
# ... and at most this often while the directory keeps changing (a running job polled every 0.5 s).
REWRITE_EVERY_NS = 5_000_000_000

Reader = Any  # Callable[[str, str], tuple[int, Any] | None]: (path, key) -> (version, value)


class Entry(msgspec.Struct, array_like=True):
    ino: int
    mtime_ns: int
    size: int
    version: int
    value: Any


class _Cache(msgspec.Struct):
    format: int
    dir_ino: int
    dir_mtime_ns: int
    scan_ns: int  # how long the scan that wrote this cache took (widens the racy window)
    subdirs: list[str]
    entries: dict[str, Entry]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Cache)


def enabled() -> bool:
    return os.environ.get("SLURMCTL_SCAN_CACHE", "1") not in ("0", "false", "no")


def _load(path: Path) -> tuple[_Cache, int] | None:
    """The cache at ``path`` and the cache file's mtime_ns, or None if missing or unreadable."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
        cache = _decoder.decode(data)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if cache.format != CACHE_FORMAT:
        return None
    return cache, st.st_mtime_ns


def _store(path: Path, cache: _Cache) -> None:
    """Replace the cache file (temp → rename, no fsync: a lost cache is rebuilt). Never raises."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_encoder.encode(cache))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _should_rewrite(loaded: tuple[_Cache, int] | None, reread: int, entries: dict[str, Entry]) -> bool:
    """Whether this scan should replace the cache: there is none, many records were re-read, the
    set of records changed, or — at most every few seconds — anything at all was not reusable
    (so that a directory that has gone quiet soon qualifies for the no-stat shortcut)."""
    if loaded is None:
        return True
    cache, cache_mtime = loaded
    if reread >= max(1, min(REWRITE_MIN, len(entries) // 100)) or len(entries) != len(cache.entries):
        return True
    return time.time_ns() - cache_mtime > REWRITE_EVERY_NS


def cache_file(cache_dir: Path, fields: tuple[str, ...] | None) -> Path:
    """Where the cache of a directory lives: one file per projection (None: whole values)."""
    if fields is None:
        return cache_dir / ".scan"
    return cache_dir / f".scan-{hashlib.sha256(chr(0).join(fields).encode()).hexdigest()[:16]}"


def scan_dir(
    base: str, cache_dir: Path, read: Reader, fields: tuple[str, ...] | None = None
) -> tuple[dict[str, Entry], list[str]] | None:
    """The records of the directory ``base``: ``({name: Entry}, subdirs)``, names without
    ``.json``, both sorted (each Entry has ``.version`` and ``.value``). With ``fields``, each
    value is the list of those top-level fields (None where absent) — a smaller cache that
    decodes several times faster. Returns None when ``base`` does not exist.

    ``read(path, name)`` reads one record file: ``(version, value)``, or None if it vanished.
    Reads only the files the cache cannot vouch for; rewrites the cache when that was many.
    Idempotent; raises what ``read`` raises for an unreadable record."""
    cache_path = cache_file(cache_dir, fields)
    t0 = time.monotonic_ns()
    loaded = _load(cache_path)
    try:
        dst = os.stat(base)
    except FileNotFoundError:
        return None
    old: dict[str, Entry] = {}
    if loaded is not None:
        cache, cache_mtime = loaded
        safe_before = cache_mtime - RACY_NS - cache.scan_ns
        if (
            cache.dir_ino == dst.st_ino
            and cache.dir_mtime_ns == dst.st_mtime_ns
            and dst.st_mtime_ns < safe_before
            and all(e.mtime_ns < safe_before for e in cache.entries.values())
        ):
            # Nothing was created, renamed or removed here since the cache was written.
            # Stored sorted by name (msgpack keeps the order): no sort needed here.
            return cache.entries, cache.subdirs
        old = {n: e for n, e in cache.entries.items() if e.mtime_ns < safe_before}

    entries: dict[str, Entry] = {}
    subdirs: list[str] = []
    reread = 0
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as it:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in names:
            if is_dir:
                subdirs.append(name)
                continue
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                st = os.stat(name, dir_fd=fd)
            except FileNotFoundError:
                continue  # removed since the listing
            key = name[:-5]
            prev = old.get(key)
            if (
                prev is not None
                and prev.ino == st.st_ino
                and prev.mtime_ns == st.st_mtime_ns
                and prev.size == st.st_size
            ):
                entries[key] = prev
                continue
            got = read(os.path.join(base, name), key)
            reread += 1
            if got is None:
                continue
            # The stat taken before the read: if the file was replaced in between, the entry
            # carries the older identity and is simply read again next time.
            value = got[1] if fields is None else [got[1].get(f) for f in fields]
            entries[key] = Entry(st.st_ino, st.st_mtime_ns, st.st_size, got[0], value)
    finally:
        os.close(fd)
    ordered = dict(sorted(entries.items()))
    if _should_rewrite(loaded, reread, ordered):
        scan_ns = time.monotonic_ns() - t0
        _store(
            cache_path, _Cache(CACHE_FORMAT, dst.st_ino, dst.st_mtime_ns, scan_ns, sorted(subdirs), ordered)
        )
    return ordered, sorted(subdirs)
