"""The bucket arithmetic: GCRA (virtual scheduling), with leases of pre-scheduled slots.

A bucket with ``rate`` R tokens/s and ``burst`` B keeps one number, the *theoretical arrival
time* ``tat`` of the next token. Token i of a reservation made at time ``now`` may be used at

    u_i = max(now, t0 + i/R - tau),   t0 = max(tat, now),   tau = (B - 1)/R - L

and the reservation moves ``tat`` to ``t0 + n/R``. The ``u_i`` of all reservations, whoever
holds them, form one conforming sequence: any window of W seconds holds at most ``R*W + B`` of
them, provided no slot is used more than L late (L = jitter allowance, :func:`jitter_s`; the
worker drops such slots). So a worker can take a *lease* of n slots with one compare-and-set and
spend them locally (sleeping until each slot's time) without breaking the shared limit — that is
what saves round trips. A slot is a time, not a coin: slots of a worker that dies simply pass; a
lease never reaches further than ``horizon_s`` ahead, so a dead worker's tokens are available
again within that horizon (the lease TTL). Unused future slots are handed back on exit
(``release``): if the lease is the newest, ``tat`` moves back; otherwise the slots become
*credits* the next reservation takes first.

``issued`` counts the slots handed out and not handed back, ever: the alert rule "rate limit
saturated" (slurmctl.alerts) compares its growth with ``rate`` between two looks.

Pure functions over a JSON-able dict, applied inside the state store's compare-and-set (a JSON
record file on the local backend, a conditional PutItem on DynamoDB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_JITTER_S = 0.25  # lateness a slot may be used with; see jitter_s
MIN_LATE_S = 0.02  # with burst 1 there is no headroom; tolerate this much (documented)
MAX_CREDITS = 64  # returned slot runs kept per bucket; older ones are dropped (capacity lost, never gained)


@dataclass(frozen=True)
class Grant:
    """Slot times (epoch seconds, ascending) a reservation handed out. ``end`` is the bucket's
    ``tat`` right after it (lets ``release`` know whether the lease is still the newest)."""

    slots: tuple[float, ...]
    end: float
    step: float
    fresh: tuple[float, ...] = ()  # the slots taken from the schedule (not from credits)
    late_s: float = MIN_LATE_S  # a slot not used by its time + late_s must be dropped


def new_bucket(rate: float, burst: int) -> dict[str, Any]:
    """A full bucket (``burst`` tokens available at once)."""
    return {"rate": float(rate), "burst": int(burst), "tat": 0.0, "blocked_until": 0.0, "credits": []}


def jitter_s(doc: dict[str, Any]) -> float:
    """How late a worker may use a slot: half the burst's span, at most MAX_JITTER_S.

    Workers never send exactly at a slot's time (scheduling, GIL, network). A slot used up to
    ``L`` late can join a window with the slots after it, so a window of 1 s could see the slots
    of 1 + L seconds. Taking ``R*L`` tokens out of the burst keeps the server's view within
    ``R*W + burst`` anyway; slots later than ``L`` are dropped by the worker, not spent."""
    return min(MAX_JITTER_S, (max(1, int(doc["burst"])) - 1) / (2 * float(doc["rate"])))


def _tau(doc: dict[str, Any]) -> float:
    return (max(1, int(doc["burst"])) - 1) / float(doc["rate"]) - jitter_s(doc)


def reserve(doc: dict[str, Any], n: int, now: float, horizon_s: float) -> tuple[Grant | None, float]:
    """Take up to ``n`` slots no later than ``now + horizon_s``. Mutates ``doc``.

    Returns (grant, 0.0), or (None, retry_at) when no slot is available yet (the bucket is
    blocked after a 429, or booked beyond the horizon). Never returns an empty grant."""
    if n < 1:
        raise ValueError("reserve at least one slot")
    blocked = float(doc.get("blocked_until", 0.0))
    if blocked > now:
        return None, blocked
    slots: list[float] = []
    # 1. Credits: slots other leases handed back, still in the future (past ones are gone).
    credits: list[list[float]] = []
    for start, count, step in doc.get("credits", []):
        first = max(0, math.ceil((now - start) / step - 1e-9)) if start < now else 0
        k = first
        while k < count and len(slots) < n and start + k * step <= now + horizon_s:
            slots.append(start + k * step)
            k += 1
        if k < count:
            credits.append([start + k * step, count - k, step])
    doc["credits"] = credits
    # 2. Fresh slots from the schedule.
    step = 1.0 / float(doc["rate"])
    tau = _tau(doc)
    t0 = max(float(doc["tat"]), now)
    # The last slot index i allowed: t0 + i*step - tau <= now + horizon_s.
    room = math.floor((now + horizon_s + tau - t0) / step + 1e-9) + 1
    take = max(0, min(n - len(slots), room))
    fresh = [max(now, t0 + i * step - tau) for i in range(take)]
    slots.extend(fresh)
    if take:
        doc["tat"] = t0 + take * step
    if not slots:
        return None, t0 - tau - horizon_s
    slots.sort()
    doc["issued"] = int(doc.get("issued", 0)) + len(slots)
    late = max(MIN_LATE_S, jitter_s(doc))
    return Grant(tuple(slots), float(doc["tat"]), step, tuple(fresh), late), 0.0


def release(doc: dict[str, Any], grant: Grant, unused: list[float], now: float) -> int:
    """Hand back the ``unused`` slots of ``grant`` that are not yet past. Mutates ``doc``.
    Returns how many slots went back. The caller must forget the slots afterwards."""
    future = sorted(t for t in unused if t >= now)
    if not future:
        return 0
    returned = 0
    newest = abs(float(doc["tat"]) - grant.end) < 1e-9 and abs(grant.step - 1.0 / float(doc["rate"])) < 1e-12
    if newest:
        # Nobody reserved after us: the unused tail of our fresh slots goes back by moving tat.
        for t in reversed(grant.fresh):
            if not future or abs(future[-1] - t) > 1e-9:
                break
            future.pop()
            doc["tat"] = float(doc["tat"]) - grant.step
            returned += 1
    if future:
        credits = list(doc.get("credits", [])) + [[t, 1, grant.step] for t in future]
        doc["credits"] = _merge_credits(credits)[-MAX_CREDITS:]
        returned += len(future)
    doc["issued"] = max(0, int(doc.get("issued", 0)) - returned)
    return returned


def _merge_credits(credits: list[list[float]]) -> list[list[float]]:
    """Join single slots into runs (start, count, step) where they line up."""
    out: list[list[float]] = []
    for start, count, step in sorted(credits):
        if out:
            s, c, st = out[-1]
            if abs(st - step) < 1e-12 and abs(s + c * st - start) < 1e-6:
                out[-1] = [s, c + count, st]
                continue
        out.append([start, count, step])
    return out


def throttle(doc: dict[str, Any], retry_after_s: float, now: float) -> None:
    """The remote API said 429: issue nothing until ``now + retry_after_s``, then resume at the
    plain rate with no burst (the API just told us it is overloaded). Drops credits. Mutates doc."""
    until = now + max(0.0, retry_after_s)
    doc["blocked_until"] = max(float(doc.get("blocked_until", 0.0)), until)
    doc["tat"] = max(float(doc["tat"]), doc["blocked_until"] + _tau(doc))
    doc["credits"] = []


def set_limit(doc: dict[str, Any], rate: float | None, burst: int | None) -> None:
    """Change rate and/or burst in place. Slots already leased keep their times; the new rate
    applies to the next reservation (within one lease horizon everywhere). Mutates doc."""
    if rate is not None:
        doc["rate"] = float(rate)
    if burst is not None:
        doc["burst"] = int(burst)
    doc["credits"] = []  # their spacing belongs to the old rate
