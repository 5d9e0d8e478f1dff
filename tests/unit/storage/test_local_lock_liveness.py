"""The local state store's per-record lock: a dead holder on this host is detected at once (its pid
is gone or reused), a holder on another host by the observer's own clock, never by comparing the
file server's mtime with this host's clock; and breaking a stale lock never removes a lock that
someone took after it was judged stale (no lost compare-and-set update)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slurmctl.errors import ConflictError
from slurmctl.storage.local import FileStateStore

# A process that takes the per-record lock of t/k and then, by the first argument:
#   self    SIGKILLs itself while holding it (its parent reaps it at once);
#   wait    prints "held" and waits to be killed (the parent may leave it unreaped: a zombie);
#   hold    prints "held", waits for a line on stdin, creates the file named by argv[3] and releases.
_HOLDER = """
import os, signal, sys
from slurmctl.storage.local import FileStateStore
mode, root = sys.argv[1], sys.argv[2]
s = FileStateStore(root)
with s._locked(s._path("t", "k")):
    if mode == "self":
        os.kill(os.getpid(), signal.SIGKILL)
    print("held", flush=True)
    if mode == "wait":
        while True:
            signal.pause()
    sys.stdin.readline()
    open(sys.argv[3], "w").close()
"""

# compare_and_set of t/k from version 1 in a fresh process, with stale_lock_s from argv[2].
_CAS = """
import sys
from slurmctl.storage.local import FileStateStore
s = FileStateStore(sys.argv[1], stale_lock_s=float(sys.argv[2]))
print(s.compare_and_set("t", "k", {"n": 1}, 1).version)
"""

# A guard against a hang, not a timing assertion: the old age-based breaker would wait 2 h here.
HANG_S = 120


def _lock_path(root: Path) -> Path:
    return root / "t" / "k.json.lock"


def _leave_dead_holder_lock(root: Path) -> dict:
    """The lock of t/k as a SIGKILLed holder leaves it: returns its content."""
    p = subprocess.run([sys.executable, "-c", _HOLDER, "self", str(root)], capture_output=True, check=False)
    assert p.returncode == -signal.SIGKILL, p.stderr
    return json.loads(_lock_path(root).read_text())


def _cas_in_other_process(root: Path, stale_lock_s: float) -> int:
    p = subprocess.run(
        [sys.executable, "-c", _CAS, str(root), str(stale_lock_s)],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return int(p.stdout)


def test_lock_of_a_sigkilled_holder_is_broken_at_once_on_the_same_host(tmp_path: Path) -> None:
    """stale_lock_s is an hour: the next writer proceeds because the holder's pid is gone, not
    because the lock is old."""
    FileStateStore(tmp_path).create("t", "k", {"n": 0})
    info = _leave_dead_holder_lock(tmp_path)
    # the lock says who held it, so that the next writer (or a person) can tell it is dead
    assert {"host", "boot", "pid", "start", "token"} <= info.keys()
    assert _cas_in_other_process(tmp_path, 3600) == 2
    assert not _lock_path(tmp_path).exists()
    assert FileStateStore(tmp_path).get("t", "k").value == {"n": 1}


def test_lock_of_a_killed_unreaped_holder_is_broken_at_once(tmp_path: Path) -> None:
    """A holder SIGKILLed but not yet reaped by its parent is a zombie: its pid still exists."""
    FileStateStore(tmp_path).create("t", "k", {"n": 0})
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, "wait", str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        os.kill(holder.pid, signal.SIGKILL)
        assert _cas_in_other_process(tmp_path, 3600) == 2
    finally:
        holder.kill()
        holder.wait()


def test_a_live_holder_on_the_same_host_is_never_broken_by_age(tmp_path: Path) -> None:
    """stale_lock_s is tiny and the holder keeps the lock far longer: the writer waits for it."""
    store = FileStateStore(tmp_path, stale_lock_s=0.01)
    store.create("t", "k", {"n": 0})
    released = tmp_path / "released"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, "hold", str(tmp_path), str(released)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[bool] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"

        def cas() -> None:
            store.compare_and_set("t", "k", {"n": 1}, 1)
            seen.append(released.exists())

        writer = threading.Thread(target=cas)
        writer.start()
        time.sleep(1.0)  # a hundred times stale_lock_s: an age-based breaker has broken it by now
        assert holder.stdin is not None
        holder.stdin.write("release\n")
        holder.stdin.flush()
        writer.join(HANG_S)
        assert seen == [True], "the writer went ahead while the holder still held the lock"
    finally:
        holder.kill()
        holder.wait()


def test_lock_with_a_reused_pid_is_broken_at_once(tmp_path: Path) -> None:
    """The lock names a pid that is alive, but started at another time: not the holder."""
    FileStateStore(tmp_path).create("t", "k", {"n": 0})
    info = _leave_dead_holder_lock(tmp_path)
    info["pid"] = os.getpid()  # alive: this very process, which never took the lock
    _lock_path(tmp_path).write_text(json.dumps(info))
    assert _cas_in_other_process(tmp_path, 3600) == 2


def _foreign_lock(root: Path) -> Path:
    lock = _lock_path(root)
    lock.write_text(
        json.dumps(
            {
                "host": "elsewhere.invalid",
                "boot": "00000000-0000-0000-0000-000000000000",
                "pidns": "pid:[1]",
                "pid": 1,
                "start": 1,
                "token": "feedface",
                "time": 0,
            }
        )
    )
    # The file server's clock is a day ahead of ours: an age computed from the mtime is negative.
    ahead = time.time() + 86400
    os.utime(lock, (ahead, ahead))
    return lock


def test_lock_of_another_host_is_stale_after_stale_lock_s_on_the_observers_clock(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path, stale_lock_s=0.3)
    store.create("t", "k", {"n": 0})
    lock = _foreign_lock(tmp_path)
    assert store.compare_and_set("t", "k", {"n": 1}, 1).version == 2
    assert not lock.exists()


def test_dead_breaker_does_not_block_breaking(tmp_path: Path) -> None:
    """A writer that died while breaking a stale lock leaves its breaker file: on this host it is
    judged by its pid like a lock; a foreign one by the observer's clock."""
    store = FileStateStore(tmp_path, stale_lock_s=0.3)
    store.create("t", "k", {"n": 0})
    info = _leave_dead_holder_lock(tmp_path)
    lock = _lock_path(tmp_path)
    dead_breaker = dict(info, token="0badc0de")
    Path(store._breaker_path(str(lock), lock.read_bytes())).write_text(json.dumps(dead_breaker))
    assert store.compare_and_set("t", "k", {"n": 1}, 1).version == 2
    assert sorted(p.name for p in lock.parent.iterdir()) == ["k.json"]

    foreign = _foreign_lock(tmp_path)
    breaker = store._breaker_path(str(foreign), foreign.read_bytes())
    Path(breaker).write_bytes(foreign.read_bytes().replace(b"feedface", b"facade"))
    assert store.compare_and_set("t", "k", {"n": 2}, 2).version == 3
    assert sorted(p.name for p in lock.parent.iterdir()) == ["k.json"]


def _increment(root: str, rounds: int, stale_lock_s: float, done: mp.Queue) -> None:
    store = FileStateStore(root, fsync=False, stale_lock_s=stale_lock_s)
    ok = 0
    for _ in range(rounds):
        while True:
            rec = store.get("t", "k")
            assert rec is not None
            try:
                store.compare_and_set("t", "k", {"n": rec.value["n"] + 1}, rec.version)
            except ConflictError:
                continue
            ok += 1
            break
    done.put(ok)


@pytest.mark.parametrize("stale_lock_s", [0.002, 30.0])
def test_contended_increments_after_a_dead_holder_lose_no_update(tmp_path: Path, stale_lock_s: float) -> None:
    """8 processes increment one counter by read-modify-compare-and-set, starting on a lock left by
    a SIGKILLed holder: every successful increment is in the final count. With a tiny stale_lock_s
    an age-based breaker removes live locks and two writers both 'win' the same version."""
    store = FileStateStore(tmp_path, fsync=False)
    store.create("t", "k", {"n": 0})
    _leave_dead_holder_lock(tmp_path)
    n, rounds = 8, 40
    done: mp.Queue = mp.Queue()
    args = (str(tmp_path), rounds, stale_lock_s, done)
    procs = [mp.Process(target=_increment, args=args) for _ in range(n)]
    for p in procs:
        p.start()
    counts = [done.get(timeout=HANG_S) for _ in procs]
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    final = store.get("t", "k")
    assert final is not None
    assert sum(counts) == n * rounds
    assert final.value["n"] == sum(counts), "lost updates: some successful increments are not in the count"
    assert final.version == 1 + n * rounds
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["k.json"]


def test_a_holder_whose_lock_was_taken_over_neither_writes_nor_removes_the_new_lock(tmp_path: Path) -> None:
    """A holder judged gone (it stalled past stale_lock_s on another host) and then resumed: the
    lock now holds another writer's token; its write is a conflict and its release leaves that
    writer's lock alone."""
    store = FileStateStore(tmp_path)
    store.create("t", "k", {"n": 0})
    path = str(store._path("t", "k"))
    lock = Path(path + ".lock")
    taker = b""
    with pytest.raises(ConflictError, match="lock was broken"), store._locked(path) as mine:
        info = json.loads(mine)
        taker = json.dumps(dict(info, token="0" + info["token"])).encode()
        lock.write_bytes(taker)  # broken and re-taken by another writer
        store._write(path, "t/k", 2, {"n": 99}, (str(lock), mine))
    assert lock.read_bytes() == taker
    assert store.get("t", "k").value == {"n": 0}


def test_a_lock_this_process_leaked_is_broken_at_once(tmp_path: Path) -> None:
    """A lock naming this very process but none of the locks it holds now (its release failed):
    waiting for this process to exit would wait for ever."""
    store = FileStateStore(tmp_path, stale_lock_s=3600)
    store.create("t", "k", {"n": 0})
    lock = _lock_path(tmp_path)
    with store._locked(store._path("t", "k")):
        leaked = lock.read_bytes()
    lock.write_bytes(leaked)
    done: list[int] = []

    def cas() -> None:
        done.append(store.compare_and_set("t", "k", {"n": 1}, 1).version)

    writer = threading.Thread(target=cas, daemon=True)
    writer.start()
    writer.join(HANG_S)
    assert done == [2]
