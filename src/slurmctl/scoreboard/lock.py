"""The poller lock ``state/lock.pid``: one poller per cluster, safe on a shared filesystem.

``O_CREAT | O_EXCL`` is atomic on local filesystems and NFSv3+ (flock is not reliable over NFS). The
file holds ``<pid> <hostname> <epoch>``; a lock whose process is gone on this host, or older than
``stale_sec`` from another host, is taken over.
"""

import contextlib
import os
import socket
import time
from typing import Optional

from .errors import LockHeldError, StorageError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: str) -> Optional[dict]:
    """Return ``{"pid", "host", "since"}`` of the lock file, or None when absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            parts = fh.read().split()
        return {"pid": int(parts[0]), "host": parts[1], "since": float(parts[2])}
    except (OSError, ValueError, IndexError):
        return None


def is_stale(info: Optional[dict], stale_sec: float, now: Optional[float] = None) -> bool:
    """Return True when the holder described by ``info`` is certainly or probably gone."""
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

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = read_lock(self.path)
                if not is_stale(info, self.stale_sec):
                    raise LockHeldError(
                        f"another poller holds {self.path} (pid {info['pid']} on {info['host']})",
                        hint="nothing to do: the running poller covers this cycle",
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # stale: the holder died without releasing
                continue
            except OSError as exc:
                raise StorageError(f"cannot create lock {self.path}: {exc}") from exc
            with os.fdopen(fd, "w") as fh:
                fh.write(self.token)
            self.held = True
            return
        raise LockHeldError(f"could not take {self.path}: another poller raced us", hint="retry next cycle")

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
