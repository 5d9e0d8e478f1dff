"""The poller lock ``state/lock.pid``: one poller per cluster, safe on a shared filesystem.

The file holds ``<pid> <hostname> <epoch>``. It is created complete or not at all: the token is written
to a private temp file which is then hard-linked to ``lock.pid`` (``link(2)`` fails when the name
exists, atomically on local filesystems and on NFS, where ``O_EXCL`` was unreliable before NFSv3 and
``flock`` is still unreliable). So a reader never sees an empty lock that is being written.

A lock whose process is gone on this host, or older than ``stale_sec`` from another host, is taken
over -- but by one poller only: the taker first creates ``lock.pid.break`` the same way, re-reads the
lock, and removes it only if it still holds the stale token it judged; a second taker finds the
breaker and backs off. A breaker left by a taker that died is removed after ``BREAK_STALE_SEC``.
"""

import contextlib
import os
import socket
import time
from typing import Optional

from .errors import LockHeldError, StorageError

BREAK_STALE_SEC = 120.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory, no permission: not a lock we can judge
        raise StorageError(
            f"cannot read lock {path}: {exc}", hint="remove it if no poller is running (`slurm-sb doctor`)"
        ) from exc


def parse_lock(text: Optional[str]) -> Optional[dict]:
    """Return ``{"pid", "host", "since"}`` of a lock file's text, or None when it is not a lock token."""
    try:
        parts = (text or "").split()
        return {"pid": int(parts[0]), "host": parts[1], "since": float(parts[2])}
    except (ValueError, IndexError):
        return None


def read_lock(path: str) -> Optional[dict]:
    """Return ``{"pid", "host", "since"}`` of the lock file, or None when absent or unreadable."""
    try:
        return parse_lock(_read_text(path))
    except StorageError:
        return None


def is_stale(info: Optional[dict], stale_sec: float, now: Optional[float] = None) -> bool:
    """Return True when the holder described by ``info`` is certainly or probably gone.

    ``None`` (no token: a file written by hand or damaged; the poller never leaves a partial one) is stale.
    """
    if info is None:
        return True
    now = time.time() if now is None else now
    if info["host"] == socket.gethostname():
        return not _alive(info["pid"])
    return now - info["since"] > stale_sec


class PollLock:
    """Context manager holding the lock. Raises LockHeldError when another live poller holds it."""

    def __init__(self, path: str, stale_sec: float = 6 * 3600) -> None:
        self.path = path
        self.stale_sec = stale_sec
        self.token = f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n"
        self.held = False

    def _link(self, tmp: str, name: str) -> bool:
        """Hard-link ``tmp`` to ``name``; return False when ``name`` exists. Raises StorageError."""
        try:
            os.link(tmp, name)
        except FileExistsError:
            return False
        except OSError as exc:
            # A link that reached the server but whose reply was lost (NFS): the name is our file.
            with contextlib.suppress(OSError):
                if os.stat(name).st_ino == os.stat(tmp).st_ino:
                    return True
            raise StorageError(f"cannot create {name}: {exc}") from exc
        return True

    def acquire(self) -> None:
        d = os.path.dirname(self.path)
        tmp = f"{self.path}.{socket.gethostname()}.{os.getpid()}.tmp"
        try:
            os.makedirs(d, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(self.token)
        except OSError as exc:
            raise StorageError(
                f"cannot create the poller lock in {d}: {exc}",
                hint="the poller needs write access to its cluster's state/ directory under the root",
            ) from exc
        try:
            self._acquire(tmp)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _acquire(self, tmp: str) -> None:
        if self._link(tmp, self.path):
            self.held = True
            return
        text = _read_text(self.path)
        info = parse_lock(text)
        if not is_stale(info, self.stale_sec):
            raise LockHeldError(
                f"another poller holds {self.path} (pid {info['pid']} on {info['host']})",
                hint="nothing to do: the running poller covers this cycle",
            )
        breaker = self.path + ".break"
        if not self._link(tmp, breaker):
            try:
                age = time.time() - os.stat(breaker).st_mtime
            except FileNotFoundError:
                age = 0.0
            if age <= BREAK_STALE_SEC:
                raise LockHeldError(
                    f"another poller is taking over the stale lock {self.path}", hint="retry next cycle"
                )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(breaker)  # its taker died between taking and releasing it
            if not self._link(tmp, breaker):
                raise LockHeldError(f"another poller is taking over {self.path}", hint="retry next cycle")
        try:
            if _read_text(self.path) != text:
                raise LockHeldError(f"another poller took over {self.path} first", hint="retry next cycle")
            if text is not None:
                try:
                    os.unlink(self.path)  # stale: the holder died without releasing
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StorageError(
                        f"cannot remove the stale lock {self.path}: {exc}", hint="remove it by hand"
                    ) from exc
            if not self._link(tmp, self.path):
                raise LockHeldError(f"another poller took {self.path} first", hint="retry next cycle")
            self.held = True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(breaker)

    def release(self) -> None:
        """Remove the lock if it is still ours. Idempotent."""
        if not self.held:
            return
        try:
            with open(self.path, encoding="utf-8") as fh:
                mine = fh.read() == self.token
            if mine:
                os.unlink(self.path)
        except OSError:
            pass
        self.held = False

    def __enter__(self) -> "PollLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
