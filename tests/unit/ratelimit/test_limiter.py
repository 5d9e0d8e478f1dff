"""Limiter + the local backend's bucket store (the state store's compare-and-set on real files,
real processes)."""

from __future__ import annotations

import bisect
import itertools
import json
import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import Any

import pytest

from slurmctl.errors import ConfigError
from slurmctl.ratelimit import (
    LimitConfig,
    Limiter,
    RateLimitTimeout,
    Throttled,
    bucket_store,
    gcra,
    set_limit,
    set_paused,
)
from slurmctl.ratelimit.limiter import bucket_key
from slurmctl.ratelimit.stores import BucketStore
from slurmctl.storage.local import local_backend


def local_store(root: Path) -> BucketStore:
    """The bucket store a worker of a job on the local backend at ``root`` uses."""
    return bucket_store(local_backend(root))


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def make(tmp_path: Path, clock: FakeClock, **cfg: Any) -> Limiter:
    store = local_store(tmp_path / "root")
    config = LimitConfig(**{"rate": 10, "burst": 2, "lease_s": 2.0, **cfg})
    return Limiter(store, "api", config, job_id="job1", clock=clock, sleep=clock.sleep)


def test_acquire_paces_at_the_rate(tmp_path: Path) -> None:
    clock = FakeClock()
    lim = make(tmp_path, clock, batch=5)
    times = []
    for _ in range(12):
        lim.acquire()
        times.append(clock.t)
    # Burst 2 at 10/s: half a token of the burst is jitter headroom, so the 2nd comes at +0.05.
    assert times[:2] == pytest.approx([1000.0, 1000.05])
    assert [round(b - a, 6) for a, b in itertools.pairwise(times[1:])] == [0.1] * 10
    assert lim.reservations <= 3  # leases, not one store call per token


def test_close_returns_unused_tokens(tmp_path: Path) -> None:
    clock = FakeClock()
    a = make(tmp_path, clock, batch=10)
    a.acquire()
    assert a.close() == 9
    b = make(tmp_path, clock, batch=3)
    b.acquire(3)
    # b got a's returned slots (1000.05, 1000.15, 1000.25), not slots after a's lease.
    assert clock.t == pytest.approx(1000.25)


def test_pause_and_resume(tmp_path: Path) -> None:
    clock = FakeClock()
    lim = make(tmp_path, clock, batch=1)
    lim.acquire()
    set_paused(lim.store, "job1", True)
    clock.t += 5  # past the pause-check interval
    with pytest.raises(RateLimitTimeout):
        lim.acquire(timeout=3)
    set_paused(lim.store, "job1", False)
    clock.t += 5
    lim.acquire(timeout=3)


def test_limits_set_changes_rate_of_a_running_bucket(tmp_path: Path) -> None:
    clock = FakeClock()
    lim = make(tmp_path, clock, batch=1, burst=1)
    lim.acquire()
    set_limit(lim.store, "api", rate=2.0, burst=None, job_id="job1")
    start = clock.t
    lim.acquire()
    lim.acquire()
    # The slot booked at the old rate (0.1 s) stands; the next one follows at the new 0.5 s.
    assert clock.t - start == pytest.approx(0.1 + 0.5)
    with pytest.raises(ConfigError):
        set_limit(lim.store, "api", rate=-1, burst=None, job_id="job1")


def test_throttled_backs_off_everyone(tmp_path: Path) -> None:
    clock = FakeClock()
    a = make(tmp_path, clock, batch=1)
    b = make(tmp_path, clock, batch=1)
    calls = []

    @a.limited
    def call() -> str:
        calls.append(clock.t)
        if len(calls) == 1:
            raise Throttled(retry_after_s=3.0)
        return "ok"

    assert call() == "ok"
    assert calls[1] - calls[0] >= 3.0
    t0 = clock.t
    b.acquire()
    assert clock.t >= t0  # b waits for the same block / pacing, never bursts past it


def test_local_buckets_are_state_records_on_the_root(tmp_path: Path) -> None:
    # Workers on several nodes share the root (often over NFS), so the buckets live where the
    # state store's compare-and-set keeps them: versioned JSON records, no SQLite database.
    clock = FakeClock()
    lim = make(tmp_path, clock, batch=3)
    lim.acquire()
    record = json.loads((tmp_path / "root" / "state" / "limits" / "job1" / "api.json").read_bytes())
    assert record["version"] == 1 and record["value"]["rate"] == 10.0
    assert not list((tmp_path / "root").glob("*.sqlite*"))
    assert local_store(tmp_path / "root").get("job1/api") == record["value"]


def collect(procs: list[Any], out: Any, timeout: float = 300.0) -> list[Any]:
    """One result per process from ``out``; fails at once (not after the timeout) if a process
    died without sending one."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < len(procs):
        try:
            got.append(out.get(timeout=0.5))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a process failed (exit codes {dead}); its traceback is above"
            assert time.monotonic() < deadline, "processes sent no result in time"
    for p in procs:
        p.join(30)
    return got


def _spend(root: str, n: int, start: Any, out: Any) -> None:
    store = local_store(Path(root))
    start.wait()
    for _ in range(n):
        store.modify("counter", lambda d: d.__setitem__("n", d["n"] + 1), {"n": 0})
    out.put(store.calls)


def test_cas_store_loses_no_update_between_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(str(tmp_path / "root"), 50, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    calls = sum(collect(procs, out))
    assert local_store(tmp_path / "root").get("counter") == {"n": 200}
    assert calls >= 200  # one compare-and-set per update at least; more where two collided


class GrantLog(BucketStore):
    """The real store, keeping every slot its reservations were granted (for the window check) and
    counting how often a change was applied (more often than ``modify`` was called = collisions)."""

    def __init__(self, root: Path) -> None:
        super().__init__(local_backend(root).state, "limits")
        self.granted: list[float] = []
        self.modifies = 0
        self.applied = 0

    def modify(self, key: str, change: Any, initial: dict[str, Any] | None = None) -> Any:
        def counted(doc: dict[str, Any]) -> Any:
            self.applied += 1
            return change(doc)

        self.modifies += 1
        result = super().modify(key, counted, initial)
        if isinstance(result, tuple) and result and isinstance(result[0], gcra.Grant):
            self.granted.extend(result[0].slots)
        return result


# The rate, not the store, must be what holds the workers back (4 x 10 bookings/s at most), so
# that a lost update would show as more slots than the bucket allows.
CONTENDED = {"rate": 50.0, "burst": 5, "lease_s": 1.0, "batch": 5}


def _contend(root: str, seconds: float, start: Any, out: Any) -> None:
    store = GrantLog(Path(root))
    lim = Limiter(store, "api", LimitConfig(**CONTENDED), job_id="jobc")
    start.wait()
    spent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lim.acquire()
        spent += 1
    # Unused slots are not handed back (close()): they stay granted, and the check counts them.
    out.put((store.granted, spent, store.modifies, store.applied))


def max_in_window(times: list[float], width: float) -> int:
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


def test_processes_sharing_a_local_bucket_never_exceed_rate_plus_burst(tmp_path: Path) -> None:
    # Four processes take tokens from one bucket as fast as it lets them. A lost update (two
    # compare-and-sets both winning) would hand two of them the same stretch of the schedule;
    # whatever the interleaving, the slots granted to all of them must form one conforming GCRA
    # sequence (the bound of tests/unit/ratelimit/test_gcra.py).
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    root = str(tmp_path / "root")
    procs = [ctx.Process(target=_contend, args=(root, 2.0, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    parts = collect(procs, out)
    granted = sorted(t for part in parts for t in part[0])
    spent = sum(part[1] for part in parts)
    rate, burst = CONTENDED["rate"], CONTENDED["burst"]
    assert all(part[1] > 0 for part in parts) and spent <= len(granted)
    assert len(granted) <= rate * (granted[-1] - granted[0]) + burst + 1e-6
    for width in (0.05, 0.25, 1.0):
        assert max_in_window(granted, width) <= rate * width + burst + 1e-6, width


def test_real_clock_smoke(tmp_path: Path) -> None:
    store = local_store(tmp_path / "root")
    lim = Limiter(store, "api", LimitConfig(rate=50, burst=1), job_id="j")
    t0 = time.monotonic()
    lim.acquire(11)
    assert time.monotonic() - t0 >= 0.19  # 10 intervals of 20 ms cannot take less
    assert bucket_key("api", "j", False) in store.keys("j/")
