"""The embedded default backend: a directory on a POSIX filesystem.

Safe when workers on several nodes share only that filesystem (NFS v3+, GPFS, Lustre):

* Objects are written to a temp file in the target directory, fsynced and renamed into place —
  rename is atomic on all of these filesystems.
* ``put_if_absent`` uses ``link(2)`` of a complete temp file onto the key, which fails with EEXIST
  for every caller but one (the classic NFS-safe exclusive create; ``O_EXCL`` alone would let a
  reader see an empty file).
* State records are JSON files with a ``version`` field. Compare-and-set takes a per-record lock
  (an exclusive ``link(2)`` of a complete lock file), re-reads, compares, writes with rename, and
  releases. Readers never lock.
* The lock file names its holder: host, boot id, pid namespace, pid, the process's start time
  (field 22 of /proc/<pid>/stat) and a random token. A holder on this host (same boot and pid
  namespace) is checked at once: a lock whose pid is gone, a zombie, or a process with another
  start time (a reused pid) is broken without waiting. A lock from another host is judged by the
  observer's own monotonic clock, never by comparing clocks of two machines (a file's mtime is
  the file server's clock): a lock whose content stays unchanged for ``stale_lock_s`` (30 s) while
  this process watches is stale — live holders keep it for milliseconds.
* Breaking cannot remove a lock taken after it was judged stale: of the processes that judged
  a content stale, the one that links the breaker file ``<lock>.break-<digest of the content>``
  first re-reads the lock and removes it only if it still holds that content (tokens are unique).
  A breaker file whose creator died is judged and broken like a lock. A holder releases only its
  own lock, and checks just before its rename that the lock still holds its token: a holder on
  another host that stalled past ``stale_lock_s`` gets a ConflictError instead of overwriting
  (only a stall between that check and the rename could still lose an update).
* Every OSError is converted at this module's edge into a StorageError naming the path and the
  cause, with a hint for a full or over-quota file system, a read-only one, permissions, a stale
  NFS handle and file size limits. Writes through ``os.write`` check the byte count.
* No SQLite database is ever shared between nodes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slurmctl.errors import ConflictError, ObjectNotFoundError, StorageError
from slurmctl.fsutil import CHUNK, atomic_writer, fsync_dir, sha256_bytes, sha256_file
from slurmctl.storage.base import Backend, ObjectInfo, ObjectStore, Record, StateStore

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


def _mount_point(path: str | os.PathLike[str]) -> str:
    """The mount point of the file system that holds ``path`` (or would hold it: the nearest
    existing directory above it decides). Used on error paths only."""
    where = os.path.abspath(os.fspath(path))
    while not os.path.isdir(where) and where != os.path.dirname(where):
        where = os.path.dirname(where)
    while not os.path.ismount(where) and where != os.path.dirname(where):
        where = os.path.dirname(where)
    return where


def _hint(code: int | None, path: str | os.PathLike[str]) -> str | None:
    """What a user can do about an OSError with errno ``code`` at ``path``, or None."""
    if code in (errno.ENOSPC, errno.EDQUOT):
        fs = _mount_point(path)
        return f"free space or raise the quota on {fs} (`df -h {fs}` and `quota -s` show the usage)"
    if code == errno.EROFS:
        return (
            f"{_mount_point(path)} is mounted read-only: remount it read-write, or set backend.root "
            "(--root / SLURMCTL_ROOT) to a writable file system"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"check the permissions of {path} and of the directories above it: user id "
            f"{os.getuid()} must be able to read and write there"
        )
    if code == errno.ESTALE:
        return (
            "the file server no longer knows this file or directory (stale NFS file handle): run the "
            f"command again; if this persists, remount {_mount_point(path)}"
        )
    if code == errno.EFBIG:
        return "a file size limit was reached (`ulimit -f`, or the file system's largest file): raise it"
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return (
            "a file stands where the store needs a directory, or the other way round: something else "
            "wrote under the backend root; move it away, or use another backend.root"
        )
    if code == errno.EIO:
        return f"an I/O error on {_mount_point(path)}: check the disk or the file server"
    if code in (errno.EMFILE, errno.ENFILE):
        return "too many open files: raise the limit (`ulimit -n`)"
    return None


def _storage_error(exc: OSError, doing: str, path: str | os.PathLike[str]) -> StorageError:
    """The StorageError for ``exc``, raised while trying to ``doing`` ``path``: names the path,
    the cause (and the file the system refused, if another), and a hint where one helps."""
    where = os.fspath(path)
    message = f"cannot {doing} {where}: {exc.strerror or exc}"
    if exc.filename is not None and os.fspath(exc.filename) != where:
        message += f" ({os.fspath(exc.filename)})"
    return StorageError(message, hint=_hint(exc.errno, where))


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``. A short write is followed by another, which reports why
    the file system stopped (ENOSPC, EDQUOT, EFBIG...). Raises OSError."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "the file system accepted no bytes of a write")
        view = view[n:]


def _write_temp(directory: str, prefix: str, data: bytes, *, fsync: bool) -> str:
    """The path of a new file in ``directory``, named ``<prefix><random>.tmp``, holding ``data``
    (fsynced if ``fsync``), mode 0600 like mkstemp's. Raises OSError; then no file is left."""
    while True:
        tmp = f"{directory}/{prefix}{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            # close reports the write errors an NFS client defers to it (EDQUOT, ENOSPC, EIO)
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _link(tmp: str, target: str) -> bool:
    """Hard-link ``tmp`` to ``target``: True if this call made ``target``, False if it existed.
    ``tmp`` is kept. Raises OSError.

    On NFS a LINK whose reply was lost is sent again and then fails with EEXIST although it
    succeeded; the link count of ``tmp`` tells (the test open(2)'s manual gives for O_EXCL)."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return os.stat(tmp).st_nlink > 1


def _link_exclusive(tmp: str, target: str) -> bool:
    """``_link`` of ``tmp`` to ``target``, after which the temp file is removed. Raises OSError."""
    try:
        return _link(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _read_small(path: str) -> bytes | None:
    """The content of the small file ``path`` (a lock), or None if there is none. Raises OSError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return _read_open(fd)[1]
    finally:
        os.close(fd)


# The lock protocol of FileStateStore, per process: who this process is (cached per pid: a
# forked child is another holder), and the tokens of the locks it holds right now.
_identity_of: tuple[int, dict[str, Any]] | None = None
_HELD: set[str] = set()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of process ``pid``: fields 3 and 22 of /proc/<pid>/stat (the
    start time in clock ticks since boot tells a reused pid), or None if there is no such
    process. Raises OSError if /proc cannot tell."""
    try:
        data = _read_small(f"/proc/{pid}/stat")
    except ProcessLookupError:  # it exited while being read
        return None
    if data is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    rest = data[data.rindex(b")") + 2 :].split()
    return rest[0].decode(), int(rest[19])


def _identity() -> dict[str, Any]:
    """This process as a lock names it: host, boot id, pid namespace, pid and start time (None
    where /proc does not tell). Computed once per process."""
    global _identity_of
    pid = os.getpid()
    if _identity_of is None or _identity_of[0] != pid:
        boot = pidns = start = None
        with contextlib.suppress(OSError, ValueError):
            boot = (_read_small("/proc/sys/kernel/random/boot_id") or b"").decode().strip() or None
        with contextlib.suppress(OSError):
            pidns = os.readlink("/proc/self/ns/pid")
        with contextlib.suppress(OSError, ValueError, IndexError):
            start = (_proc_stat(pid) or (None, None))[1]
        me = {"host": socket.gethostname(), "boot": boot, "pidns": pidns, "pid": pid, "start": start}
        _identity_of = (pid, me)
    return _identity_of[1]


def _holder_alive(info: dict[str, Any]) -> bool | None:
    """Whether the holder a lock file names (``info``) is alive, if this host can tell: the lock
    was taken on this host, in this boot and pid namespace. None if it cannot (another host, a
    lock without these fields, a process /proc hides from this user)."""
    me = _identity()
    pid = info.get("pid")
    if (
        me["boot"] is None
        or info.get("host") != me["host"]
        or info.get("boot") != me["boot"]
        or info.get("pidns") != me["pidns"]
        or not isinstance(pid, int)
        or isinstance(pid, bool)
        or pid <= 0
    ):
        return None
    if pid == me["pid"] and info.get("start") == me["start"]:
        # This process: held if a call in it holds the lock now, else leaked (its release failed).
        return info.get("token") in _HELD
    try:
        got = _proc_stat(pid)
    except (OSError, ValueError, IndexError):
        return None
    if got is None:
        try:  # /proc may hide other users' processes (hidepid): ask the kernel
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return None
        return None
    state, started = got
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    start = info.get("start")
    return start is None or started == start  # another start time: the pid was reused


def _lock_content() -> tuple[str, bytes]:
    """A new random token, and the content of a lock file naming this process as the holder of
    that token. The time is for people reading the file: no process compares it with its clock."""
    token = os.urandom(8).hex()
    return token, json.dumps({**_identity(), "token": token, "time": round(time.time(), 3)}).encode()


def _describe_holder(data: bytes) -> str:
    """Who a lock file's content says holds it, for messages."""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError, OverflowError, OSError):
        info = json.loads(data)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["time"])))
        return f"pid {info['pid']} on {info['host']} (since {when} by its clock)"
    return "an unknown holder (the file is not one slurmctl wrote)"


class _RootDir:
    """A store's root directory (``root``; ``_root`` is the same as a string)."""

    _root: str
    _root_seen: bool = False  # the root existed when the store was opened: never recreate it

    @property
    def root(self) -> Path:
        return Path(self._root)

    def _makedirs(self, directory: str | os.PathLike[str]) -> None:
        """Create ``directory`` and its parents below the root, never the root itself: a root that
        vanished (unmounted, renamed away, an NFS outage) is an error, not an empty new root that
        would hide every record and result. Raises OSError (ENOENT naming the root)."""
        if os.path.isdir(directory):
            return
        if self._root_seen and not os.path.isdir(self._root):
            try:
                os.stat(self._root)
            except FileNotFoundError:
                raise FileNotFoundError(
                    errno.ENOENT, "the backend root is gone (unmounted or moved?)", self._root
                ) from None
        os.makedirs(directory, exist_ok=True)
        self._root_seen = True


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
        self._root_seen = os.path.isdir(self._root)  # existing now: never recreated by a writer
        self.fsync = fsync

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def put(self, key: str, data: bytes) -> ObjectInfo:
        path = self._path(key)
        try:
            self._makedirs(path.parent)
            with atomic_writer(path, fsync=self.fsync) as f:
                f.write(data)
        except OSError as exc:
            raise _storage_error(exc, "write", path) from exc
        return ObjectInfo(key, len(data), sha256_bytes(data))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        target = self._path(key)
        try:
            if os.path.realpath(path) != os.path.realpath(target):
                self._makedirs(target.parent)
                with atomic_writer(target, fsync=self.fsync) as out, open(path, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
            return ObjectInfo(key, target.stat().st_size, sha256_file(target))
        except OSError as exc:
            raise _storage_error(exc, f"store {path} as", target) from exc

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        target = self._path(key)
        try:
            directory, name = os.path.split(target)
            self._makedirs(directory)
            tmp = _write_temp(directory, f".{name}.", data, fsync=self.fsync)
            created = _link_exclusive(tmp, os.fspath(target))
            if created and self.fsync:
                fsync_dir(directory)
        except OSError as exc:
            raise _storage_error(exc, "write", target) from exc
        if not created:
            raise ConflictError(key, "already exists")
        return ObjectInfo(key, len(data), sha256_bytes(data))

    def get(self, key: str) -> bytes:
        path = os.path.join(self._root, _check_key(key))  # no pathlib: discovery reads 2 per result
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            raise _storage_error(exc, "read", path) from exc

    def get_file(self, key: str, path: Path) -> ObjectInfo:
        src = self._path(key)
        try:
            with open(src, "rb") as f, atomic_writer(path, fsync=False) as out:
                shutil.copyfileobj(f, out, CHUNK)
            return ObjectInfo(key, os.stat(path).st_size, sha256_file(path))
        except FileNotFoundError as exc:
            if not os.path.exists(src):
                raise ObjectNotFoundError(key) from exc
            raise _storage_error(exc, f"copy {src} to", path) from exc
        except OSError as exc:
            raise _storage_error(exc, f"copy {src} to", path) from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            size = path.stat().st_size
            return ObjectInfo(key, size, sha256_file(path))
        except (FileNotFoundError, NotADirectoryError):
            return None  # as exists(): a key below a key that is an object is not one
        except OSError as exc:
            raise _storage_error(exc, "read", path) from exc

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return path.exists()
        except OSError as exc:
            raise _storage_error(exc, "look up", path) from exc

    def list(self, prefix: str) -> Iterator[str]:
        # Walk only the directory the prefix names (plus a name filter), never the whole root.
        head, _, name_prefix = prefix.rpartition("/")
        base = self.root / head if head else self.root
        if not base.is_dir():
            return iter(())

        def fail(exc: OSError) -> None:
            # os.walk skips what it cannot read: a listing of results must not silently miss some
            raise _storage_error(exc, "list", exc.filename or base) from exc

        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base, onerror=fail):
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
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _storage_error(exc, "delete", path) from exc


class FileStateStore(_RootDir, _DeferrableSync, StateStore):
    """Versioned JSON records, one file each: ``<root>/<table>/<key>.json``."""

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, stale_lock_s: float = 30.0
    ) -> None:
        self._root = os.fspath(root)
        self._root_seen = os.path.isdir(self._root)  # existing now: never recreated by a writer
        self.fsync = fsync
        self.stale_lock_s = stale_lock_s
        # lock or breaker file -> (its content, when this process first saw that content, on
        # its monotonic clock): how a holder on another host is judged gone
        self._seen: dict[str, tuple[bytes, float]] = {}

    def _path(self, table: str, key: str) -> Path:
        return self.root / _check_key(table) / f"{_check_key(key)}.json"

    @staticmethod
    def _read(path: str | os.PathLike[str], key: str) -> Record | None:
        """The record at ``path``, or None if there is none. Raises StorageError if unreadable.

        Plain os.open/os.read rather than a buffered file object: a scan reads thousands of tiny
        records, and the file object's set-up was a third of each read."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _storage_error(exc, "read state record", path) from exc
        try:
            data = _read_open(fd)[1]
        except OSError as exc:
            raise _storage_error(exc, "read state record", path) from exc
        finally:
            os.close(fd)
        version, value = _decode_record(data, os.fspath(path))
        return Record(key, version, value)

    def get(self, table: str, key: str) -> Record | None:
        return self._read(os.path.join(self._root, _check_key(table), f"{_check_key(key)}.json"), key)

    def _write(
        self, path: str, name: str, version: int, value: dict[str, Any], fence: tuple[str, bytes]
    ) -> None:
        """Replace the record file ``path`` (``name`` in errors) by ``version`` and ``value``, unless the
        lock file ``fence[0]`` no longer holds ``fence[1]`` (this writer's lock was broken: then
        ConflictError, nothing written). Raises StorageError."""
        target = os.fspath(path)
        directory, base = os.path.split(target)
        data = json.dumps({"version": version, "value": value}, separators=(",", ":")).encode()
        try:
            tmp = _write_temp(directory, f".{base}.", data, fsync=self.fsync)
            try:
                # A holder judged gone (stalled for stale_lock_s on another host) must not
                # overwrite the record that the writer after it may have changed.
                if _read_small(fence[0]) != fence[1]:
                    held = f"longer than {self.stale_lock_s} s"
                    raise ConflictError(name, f"its lock was broken while this writer held it ({held})")
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            if self.fsync:
                fsync_dir(directory)
        except OSError as exc:
            raise _storage_error(exc, "write state record", target) from exc

    @contextlib.contextmanager
    def _locked(self, path: str | os.PathLike[str]) -> Iterator[bytes]:
        """Hold the lock of the record file ``path`` (``<path>.lock``) for the ``with`` block;
        yields the lock file's content, unique to this holder. Waits while a live holder has it,
        breaks it if its holder is gone. Raises StorageError if the lock cannot be written, or
        stays held for ``2 * stale_lock_s + 10`` seconds."""
        record = os.fspath(path)
        lock = record + ".lock"
        token, content = _lock_content()
        # Registered before the lock exists: another thread of this process that finds it must
        # see a holder, not a lock its process leaked.
        _HELD.add(token)
        try:
            directory = os.path.dirname(lock)
            self._makedirs(directory)
            tmp = _write_temp(directory, f".{os.path.basename(lock)}.", content, fsync=False)
            try:
                self._acquire(record, lock, tmp)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            _HELD.discard(token)
            raise _storage_error(exc, "lock state record", record) from exc
        except BaseException:
            _HELD.discard(token)
            raise
        try:
            yield content
        except BaseException:
            self._release(lock, token, content, quiet=True)
            raise
        self._release(lock, token, content, quiet=False)

    def _acquire(self, record: str, lock: str, tmp: str) -> None:
        """Link ``tmp`` (this holder's lock content) to ``lock``, breaking a lock whose holder is
        gone. Raises OSError, StorageError if it stays held too long."""
        deadline = time.monotonic() + 2 * self.stale_lock_s + 10
        delay = 0.001
        while not _link(tmp, lock):
            seen = _read_small(lock)
            if seen is None:
                continue  # released since the link: try again at once
            if self._is_stale(lock, seen) and self._break(lock, seen):
                continue
            if time.monotonic() > deadline:
                raise StorageError(
                    f"could not lock state record {record}: {lock} stays held by {_describe_holder(seen)}",
                    hint=f"if that process is not running, remove {lock}",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._seen.pop(lock, None)

    def _release(self, lock: str, token: str, content: bytes, *, quiet: bool) -> None:
        """Remove ``lock`` if it still holds ``content`` (a lock broken and re-taken by another
        writer is theirs). Raises StorageError unless ``quiet``; then the lock stays, and this
        process treats it as leaked (see ``_holder_alive``). Idempotent."""
        try:
            if _read_small(lock) == content:
                os.unlink(lock)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if not quiet:
                raise _storage_error(exc, "unlock", lock) from exc
        finally:
            _HELD.discard(token)

    def _is_stale(self, path: str, data: bytes) -> bool:
        """Whether the lock (or breaker) file ``path``, read as ``data``, was left by a holder that
        is gone. On this host: its pid is gone, a zombie, or another process. Elsewhere (or when
        this host cannot tell): ``data`` has stayed the same for ``stale_lock_s`` on this process's
        monotonic clock — clocks of different machines are never compared, and a live holder
        keeps a lock for milliseconds. Reads /proc only; records what it saw."""
        info: Any = None
        with contextlib.suppress(ValueError):
            info = json.loads(data)
        alive = _holder_alive(info) if isinstance(info, dict) else None
        if alive is not None:
            return not alive
        now = time.monotonic()
        seen = self._seen.get(path)
        if seen is None or seen[0] != data:
            self._seen[path] = (data, now)
            return False
        return now - seen[1] >= self.stale_lock_s

    @staticmethod
    def _breaker_path(target: str, seen: bytes) -> str:
        """The mutex file whose creator alone may remove ``target`` while it holds ``seen``."""
        return f"{target}.break-{hashlib.sha256(seen).hexdigest()[:16]}"

    def _break(self, target: str, seen: bytes, depth: int = 0) -> bool:
        """Remove the stale lock (or breaker) ``target`` if it still holds ``seen``; True if it is
        gone (by this call or another), False if another breaker is at work. Raises OSError.

        Of all processes that judged ``seen`` stale, the one that links the breaker file first
        re-reads ``target`` and removes it only if it still holds ``seen``: a lock re-taken since
        has another (random) content and stays. A breaker file whose creator died is judged like
        a lock and broken the same way (up to three levels deep)."""
        mutex = self._breaker_path(target, seen)
        directory, name = os.path.split(mutex)
        token, mine = _lock_content()
        _HELD.add(token)  # a breaker of this process is alive to its other threads, like a lock
        try:
            tmp = _write_temp(directory, f".{name}.", mine, fsync=False)
            try:
                won = _link(tmp, mutex)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            if won:
                try:
                    if _read_small(target) == seen:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(target)
                    self._seen.pop(target, None)
                finally:
                    if _read_small(mutex) == mine:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(mutex)
                return True
        finally:
            _HELD.discard(token)
        other = _read_small(mutex)
        if other is None:
            return _read_small(target) != seen
        if depth < 2 and self._is_stale(mutex, other):
            self._break(mutex, other, depth + 1)
        return False

    def create(self, table: str, key: str, value: dict[str, Any]) -> Record:
        path = os.fspath(self._path(table, key))
        directory, name = os.path.split(path)
        data = json.dumps({"version": 1, "value": value}, separators=(",", ":")).encode()
        try:
            self._makedirs(directory)
            tmp = _write_temp(directory, f".{name}.", data, fsync=self.fsync)
            created = _link_exclusive(tmp, path)
            if created and self.fsync:
                fsync_dir(directory)
        except OSError as exc:
            raise _storage_error(exc, "create state record", path) from exc
        if not created:
            raise ConflictError(f"{table}/{key}", "record already exists")
        return Record(key, 1, value)

    def compare_and_set(self, table: str, key: str, value: dict[str, Any], expected_version: int) -> Record:
        path = os.fspath(self._path(table, key))
        with self._locked(path) as mine:
            current = self._read(path, key)
            if current is None:
                raise ConflictError(f"{table}/{key}", "record does not exist")
            if current.version != expected_version:
                raise ConflictError(
                    f"{table}/{key}", f"version is {current.version}, expected {expected_version}"
                )
            self._write(path, f"{table}/{key}", expected_version + 1, value, (path + ".lock", mine))
            return Record(key, expected_version + 1, value)

    def _location(self, table: str, prefix: str) -> tuple[str, str, str]:
        """(directory to list, key prefix of its records, name prefix to match) for a scan."""
        head, _, name_prefix = prefix.rpartition("/")
        table_dir = os.path.join(self._root, _check_key(table))
        base = os.path.join(table_dir, head) if head else table_dir
        return base, f"{head}/" if head else "", name_prefix

    def scan(self, table: str, prefix: str = "") -> list[Record]:
        base, key_head, name_prefix = self._location(table, prefix)
        records: list[Record] = []
        try:
            with os.scandir(base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return records
        except OSError as exc:
            raise _storage_error(exc, "list state records in", base) from exc
        for entry in entries:
            name = entry.name
            try:
                is_dir = entry.is_dir()
            except OSError as exc:
                raise _storage_error(exc, "list state records in", base) from exc
            if is_dir:
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

    def delete(self, table: str, key: str) -> None:
        path = self._path(table, key)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _storage_error(exc, "delete state record", path) from exc


def local_backend(root: str | os.PathLike[str], *, fsync: bool = True) -> Backend:
    """The local backend rooted at ``root`` (``~`` expanded, made absolute; created if missing).
    Raises StorageError if it cannot be created. Idempotent."""
    path = str(Path(root).expanduser().absolute())
    try:
        os.makedirs(os.path.join(path, "state"), exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create backend root {path}: {exc.strerror}",
            hint=_hint(exc.errno, path)
            or "set backend.root in the job file or --root / SLURMCTL_ROOT to a writable directory",
        ) from exc
    return Backend(
        objects=LocalObjectStore(path, fsync=fsync),
        state=FileStateStore(os.path.join(path, "state"), fsync=fsync),
        description=f"local:{path}",
        spec={"kind": "local", "root": path},
    )
