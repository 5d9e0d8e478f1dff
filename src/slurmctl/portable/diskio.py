"""Writing bytes completely, and when one ``syncfs(2)`` may stand for an fsync of each new file.

``write_all``: ``os.write`` may write fewer bytes than asked (a file system nearly full, ``ulimit -f``,
a signal); a caller that ignores the count leaves a truncated file behind while reporting success.

``syncfs_suits``: ``syncfs(2)`` flushes one file system in one call. For thousands of small new files
that is one journal commit instead of one fsync each. It is trusted only on a local ext2/3/4, XFS or
btrfs under Linux >= 5.8 (before 5.8 it did not report writeback errors). On network and parallel file
systems (NFS, Lustre, GPFS, BeeGFS, CephFS) what syncfs does varies, and on a shared login node it
would flush everyone's dirty data on that mount: every file is fsynced on its own there.
"""

import errno
import os
from typing import Any, Optional

SYNCFS_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs"})
SYNCFS_MIN_KERNEL = (5, 8)
_syncfs = None  # type: Any  # None: not looked up yet; False: unavailable


def write_all(fd: int, data: Any) -> None:
    """Write every byte of ``data`` (bytes-like) to ``fd``, calling ``os.write`` until all are written.

    Raises OSError: the one ``os.write`` raised (ENOSPC, EFBIG, EIO, ...), or ENOSPC when a write
    wrote nothing, with how many bytes were written before.
    """
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        n = os.write(fd, view[done:])
        if n <= 0:
            raise OSError(
                errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: wrote {done} of {len(view)} bytes, then 0"
            )
        done += n


def load_syncfs() -> Optional[Any]:
    """Return libc's ``syncfs`` (a ctypes function of an fd, 0 on success), or None. Looked up once."""
    global _syncfs
    if _syncfs is None:
        _syncfs = False
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).syncfs
            fn.argtypes = [ctypes.c_int]
            fn.restype = ctypes.c_int
            _syncfs = fn
        except (OSError, AttributeError):
            _syncfs = False
    return _syncfs or None


def fs_type(path: Any) -> Optional[str]:
    """Return the type of the mounted file system holding ``path`` (from /proc/self/mountinfo, matched
    by device number), or None when it cannot be told (not Linux, no /proc). Idempotent."""
    try:
        st = os.stat(path)
        with open("/proc/self/mountinfo", "rb") as fh:
            table = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == dev and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return None


def syncfs_suits(path: Any) -> bool:
    """Return whether one syncfs(2) may stand for fsyncing each new file under ``path``: Linux 5.8 or
    later with libc's syncfs, on a local file system of ``SYNCFS_TYPES``. Idempotent."""
    if load_syncfs() is None:
        return False
    try:
        kernel = tuple(int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return kernel >= SYNCFS_MIN_KERNEL and fs_type(path) in SYNCFS_TYPES
