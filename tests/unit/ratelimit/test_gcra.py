"""The bucket arithmetic: whatever the mix of reservations, slots honour rate + burst."""

from __future__ import annotations

import bisect
import random

import pytest

from slurmctl.ratelimit import gcra


def max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


@pytest.mark.parametrize("seed", range(8))
def test_random_workers_never_exceed_rate_plus_burst(seed: int) -> None:
    rng = random.Random(seed)
    rate, burst = rng.choice([(10, 1), (40, 20), (100, 5), (3.5, 7)])
    doc = gcra.new_bucket(rate, burst)
    now = 1000.0
    slots: list[float] = []
    while now < 1060.0:
        n = rng.randint(1, 30)
        grant, retry_at = gcra.reserve(doc, n, now, horizon_s=rng.choice([0.5, 2.0, 5.0]))
        if grant is not None:
            assert all(now - 1e-9 <= t <= now + 5.0 + 1e-9 for t in grant.slots)
            assert list(grant.slots) == sorted(grant.slots)
            # Some workers hand back part of their lease early.
            if rng.random() < 0.3:
                k = rng.randint(0, len(grant.slots))
                used, unused = list(grant.slots[:k]), list(grant.slots[k:])
                later = now + rng.random() * 0.2
                gcra.release(doc, grant, [t for t in unused if t > later], later)
                slots.extend(used + [t for t in unused if t <= later])
            else:
                slots.extend(grant.slots)
            now += rng.random() * 0.3
        else:
            assert retry_at > now
            now = max(now + 0.001, min(retry_at, now + rng.random()))
    for width in (1.0, 0.5, 3.0):
        assert max_in_window(slots, width) <= rate * width + burst + 1e-6


@pytest.mark.parametrize(("rate", "burst", "workers"), [(40, 20, 8), (1000, 10, 3), (2.5, 1, 2)])
def test_saturated_bucket_delivers_exactly_the_rate(rate: float, burst: int, workers: int) -> None:
    doc = gcra.new_bucket(rate, burst)
    free_at = [0.0] * workers  # each worker books again when its lease has run out
    slots: list[float] = []
    while min(free_at) < 100.0:
        w = free_at.index(min(free_at))
        now = free_at[w]
        grant, retry_at = gcra.reserve(doc, 10, now, horizon_s=2.0)
        if grant is None:
            free_at[w] = retry_at
            continue
        slots.extend(grant.slots)
        free_at[w] = grant.slots[-1]
    in_100s = sum(1 for t in slots if t < 100.0)
    # The burst less the jitter headroom (see gcra.jitter_s) comes on top of the rate.
    headroom = rate * gcra.jitter_s(gcra.new_bucket(rate, burst))
    assert in_100s == pytest.approx(rate * 100 + burst - headroom, abs=1.5)


def test_full_bucket_gives_burst_at_once_then_paced() -> None:
    doc = gcra.new_bucket(10, 5)
    grant, _ = gcra.reserve(doc, 8, 100.0, horizon_s=10)
    assert grant is not None
    # Burst 5 at rate 10: 0.2 s of jitter headroom (2 tokens) leaves 3 at once, then paced.
    assert grant.slots[:3] == (100.0,) * 3
    assert grant.slots[3:] == pytest.approx((100.1, 100.2, 100.3, 100.4, 100.5))


def test_horizon_limits_booking_ahead() -> None:
    doc = gcra.new_bucket(10, 1)
    grant, _ = gcra.reserve(doc, 100, 0.0, horizon_s=1.0)
    assert grant is not None and len(grant.slots) == 11 and max(grant.slots) <= 1.0 + 1e-9
    again, retry_at = gcra.reserve(doc, 5, 0.0, horizon_s=1.0)
    assert again is None and retry_at == pytest.approx(0.1)


def test_release_of_newest_lease_moves_schedule_back() -> None:
    doc = gcra.new_bucket(10, 1)
    grant, _ = gcra.reserve(doc, 10, 0.0, horizon_s=5)
    assert grant is not None
    assert gcra.release(doc, grant, list(grant.slots[3:]), 0.05) == 7
    nxt, _ = gcra.reserve(doc, 2, 0.05, horizon_s=5)
    assert nxt is not None and nxt.slots == pytest.approx((0.3, 0.4))


def test_release_behind_another_lease_becomes_credits() -> None:
    doc = gcra.new_bucket(10, 1)
    first, _ = gcra.reserve(doc, 10, 0.0, horizon_s=5)
    second, _ = gcra.reserve(doc, 10, 0.0, horizon_s=5)
    assert first is not None and second is not None
    assert gcra.release(doc, first, list(first.slots[5:]), 0.01) == 5
    third, _ = gcra.reserve(doc, 3, 0.2, horizon_s=5)
    assert third is not None and third.slots == pytest.approx((0.5, 0.6, 0.7))  # the returned slots
    # Returned slots that are already past are worthless: they are not handed out again.
    fourth, _ = gcra.reserve(doc, 3, 0.85, horizon_s=5)
    assert fourth is not None and fourth.slots == pytest.approx((0.9, 2.0, 2.1))


def test_throttle_blocks_then_resumes_without_burst() -> None:
    doc = gcra.new_bucket(10, 5)
    gcra.throttle(doc, 2.0, now=50.0)
    grant, retry_at = gcra.reserve(doc, 3, 51.0, horizon_s=5)
    assert grant is None and retry_at == 52.0
    grant, _ = gcra.reserve(doc, 3, 52.0, horizon_s=5)
    assert grant is not None and grant.slots == pytest.approx((52.0, 52.1, 52.2))


def test_set_limit_applies_to_next_reservation() -> None:
    doc = gcra.new_bucket(10, 1)
    gcra.reserve(doc, 10, 0.0, horizon_s=5)
    gcra.set_limit(doc, 2.0, 1)
    grant, _ = gcra.reserve(doc, 3, 0.0, horizon_s=5)
    assert grant is not None and grant.slots == pytest.approx((1.0, 1.5, 2.0))


def test_issued_counts_slots_handed_out_and_not_handed_back() -> None:
    """``issued`` is what the rate-limit alert compares with ``rate`` (slurmctl.alerts.rules)."""
    doc = gcra.new_bucket(10, 5)
    g1, _ = gcra.reserve(doc, 8, 100.0, horizon_s=5.0)
    g2, _ = gcra.reserve(doc, 4, 100.0, horizon_s=5.0)
    assert g1 is not None and g2 is not None
    assert doc["issued"] == 12
    assert gcra.release(doc, g1, list(g1.slots[5:]), 100.0) == 3  # back as credits (g2 is newer)
    assert doc["issued"] == 9
    g3, _ = gcra.reserve(doc, 2, 100.0, horizon_s=5.0)  # taken from the credits
    assert g3 is not None and doc["issued"] == 11
