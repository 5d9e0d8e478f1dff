"""Limiter + stores on the local backend's SQLite store (real files, real processes)."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest

from slurmctl.errors import ConfigError
from slurmctl.ratelimit import LimitConfig, Limiter, RateLimitTimeout, Throttled, set_limit, set_paused
from slurmctl.ratelimit.limiter import bucket_key
from slurmctl.ratelimit.stores import SqliteBucketStore


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
    store = SqliteBucketStore(tmp_path / "rl.sqlite")
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


def _spend(path: str, n: int, start: Any, out: Any) -> None:
    store = SqliteBucketStore(Path(path))
    start.wait()
    for _ in range(n):
        store.modify("counter", lambda d: d.__setitem__("n", d["n"] + 1), {"n": 0})
    out.put(store.calls)


def test_sqlite_store_serialises_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(str(tmp_path / "c.sqlite"), 50, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    assert sum(out.get(timeout=120) for _ in procs) == 200
    for p in procs:
        p.join(30)
    assert SqliteBucketStore(tmp_path / "c.sqlite").get("counter") == {"n": 200}


def test_real_clock_smoke(tmp_path: Path) -> None:
    store = SqliteBucketStore(tmp_path / "rl.sqlite")
    lim = Limiter(store, "api", LimitConfig(rate=50, burst=1), job_id="j")
    t0 = time.monotonic()
    lim.acquire(11)
    assert time.monotonic() - t0 >= 0.19  # 10 intervals of 20 ms cannot take less
    assert bucket_key("api", "j", False) in store.keys("j/")
