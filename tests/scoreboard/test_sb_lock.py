"""The poller lock: created whole (link), held by one process, stale locks taken over by exactly one."""

import multiprocessing
import os
import socket
import time

import pytest

from slurmctl.scoreboard import lock
from slurmctl.scoreboard.errors import LockHeldError, StorageError
from slurmctl.scoreboard.lock import PollLock


def _dead_lock(path):
    with open(path, "w") as fh:
        fh.write(f"999999 {socket.gethostname()} 0\n")  # pid 999999 does not exist


def _contender(path, start, log, hold_sec):
    while time.time() < start:
        time.sleep(0.0005)
    try:
        with PollLock(path):
            with open(log, "a") as fh:
                fh.write(f"in {os.getpid()} {time.time():.6f}\n")
            time.sleep(hold_sec)
            with open(log, "a") as fh:
                fh.write(f"out {os.getpid()} {time.time():.6f}\n")
    except LockHeldError:
        pass


def _holders_overlap(log):
    """True when two processes were inside the lock at once (by the order of their log lines)."""
    inside = 0
    with open(log) as fh:
        for line in fh:
            inside += 1 if line.startswith("in ") else -1
            if inside > 1:
                return True
    return False


def test_a_stale_lock_is_taken_over_by_exactly_one_of_many(tmp_path):
    """Eight processes find the same dead holder's lock at the same instant, five times over.

    Unlinking by name after judging a lock stale let two takers both hold it (the second removed the
    first one's fresh lock): the breaker file makes the takeover one poller's alone."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        path = str(tmp_path / f"lock{round_}.pid")
        log = str(tmp_path / f"log{round_}")
        _dead_lock(path)
        start = time.time() + 0.3
        procs = [ctx.Process(target=_contender, args=(path, start, log, 0.3)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        with open(log) as fh:
            lines = fh.read().splitlines()
        assert not _holders_overlap(log), lines
        assert sum(line.startswith("in ") for line in lines) >= 1  # someone took it over
        assert not os.path.exists(path) and not os.path.exists(path + ".break")


def test_the_lock_file_is_never_seen_empty(tmp_path):
    """Created by link(2) from a complete temp file: a reader sees a whole token or no file."""
    path = str(tmp_path / "lock.pid")
    with PollLock(path) as held:
        assert lock.read_lock(path)["pid"] == os.getpid()
        with open(path) as fh:
            assert fh.read() == held.token
    assert os.listdir(str(tmp_path)) == []  # no temp file or breaker left behind


def test_fresh_breaker_means_someone_else_is_taking_over(tmp_path):
    path = str(tmp_path / "lock.pid")
    _dead_lock(path)
    with open(path + ".break", "w") as fh:
        fh.write("taker\n")
    with pytest.raises(LockHeldError, match="taking over"):
        PollLock(path).acquire()
    old = time.time() - lock.BREAK_STALE_SEC - 10
    os.utime(path + ".break", (old, old))  # its taker died: the breaker is stale too
    with PollLock(path):
        assert lock.read_lock(path)["pid"] == os.getpid()
    assert not os.path.exists(path + ".break")


def test_live_holder_on_this_host_is_respected(tmp_path):
    path = str(tmp_path / "lock.pid")
    with PollLock(path), pytest.raises(LockHeldError, match="another poller holds"):
        PollLock(path).acquire()


def test_lock_path_that_is_a_directory_or_under_a_file_is_a_storage_error(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    (d / "lock.pid").mkdir()
    with pytest.raises(StorageError, match=r"lock\.pid"):
        PollLock(str(d / "lock.pid")).acquire()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot create the poller lock"):
        PollLock(str(tmp_path / "file" / "state" / "lock.pid")).acquire()
