"""Alert state: one record per job in the state table ``alerts`` (key ``<job>/alerts``), changed only by
compare-and-set, so that each condition is sent once per channel however many evaluators look.

The record::

    {"memory": {...},                      what the rules keep between looks (rules.evaluate)
     "conditions": {key: {
         "rule", "severity", "summary", "command", "since",
         "state": "firing" | "resolved", "first_at", "last_active", "notified_at", "resolved_at",
         "deliveries": {channel: {"event": "trigger" | "resolve", "issued_at", "sent_at",
                                  "claim", "claimed_at", "tries", "next_try", "error", "triggered"}}}},
     "updated_at": t}

One evaluation is two writes. :func:`step` (pure) applies what the rules found: a new condition
(or one resolved earlier) fires and a *trigger* is issued to every channel; a condition still
firing ``repeat_s`` after its last trigger is issued again; a firing condition that has not held for
``resolve_after_s`` — or whose job ended — resolves and a *resolve* is issued to each channel that
was sent its trigger (a trigger never sent is dropped instead). In the same write the evaluator
*claims* every due delivery with its own token. The record is written by compare-and-set: an
evaluator that loses the race computes the step again on the winner's record, where the
deliveries are claimed already, and so sends nothing. It then sends what it claimed, and
:func:`mark` (the second write) records each outcome: sent, or failed with the next try after a
backoff (up to ``RETRY_CAP_S``). A claim older than ``CLAIM_S`` is taken over by the next
evaluation (its evaluator died between the two writes): such a notification may go out twice,
never zero times.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from slurmctl.alerts.rules import Condition
from slurmctl.storage.keys import ALERTS_TABLE

TABLE = ALERTS_TABLE
CLAIM_S = 120.0  # a claim not settled for this long is taken over
RETRY_CAP_S = 600.0  # the longest wait before a failed delivery is tried again
KEEP_S = 7 * 86400.0  # resolved conditions, all sent, are dropped after this
KEEP_MAX = 100  # conditions kept at most (the oldest resolved ones go first)


@dataclass(frozen=True)
class Claimed:
    """A delivery this evaluator claimed: send ``event`` of condition ``key`` to ``channel``."""

    key: str
    channel: str
    event: str
    condition: dict[str, Any]


def step(
    record: dict[str, Any] | None,
    active: Iterable[Condition],
    memory: dict[str, Any] | None,
    channels: list[str],
    *,
    now: float,
    token: str,
    repeat_s: float,
    resolve_after_s: float,
    ended: bool,
) -> dict[str, Any]:
    """The record after one look: conditions fired, repeated or resolved, deliveries due claimed
    by ``token`` (see the module docstring). ``memory`` None keeps the stored one. Pure."""
    rec = copy.deepcopy(record) if record else {"memory": {}, "conditions": {}}
    if memory is not None:
        rec["memory"] = memory
    conds: dict[str, Any] = rec.setdefault("conditions", {})
    seen = set()
    for c in active:
        seen.add(c.key)
        cur = conds.get(c.key)
        if cur is None or cur["state"] == "resolved":
            cur = conds[c.key] = {
                "rule": c.rule,
                "state": "firing",
                "since": c.since,
                "first_at": now,
                "resolved_at": None,
                "deliveries": (cur or {}).get("deliveries", {}),
            }
            _issue(cur, "trigger", channels, now)
        elif now - cur["notified_at"] >= repeat_s:
            _issue(cur, "trigger", channels, now)
        cur.update(severity=c.severity, summary=c.summary, command=c.command, last_active=now)
    for key, cur in conds.items():
        if (
            cur["state"] == "firing"
            and key not in seen
            and (ended or now - cur["last_active"] >= resolve_after_s)
        ):
            cur["state"] = "resolved"
            cur["resolved_at"] = now
            _issue(cur, "resolve", channels, now)
    for cur in conds.values():
        for name, d in cur["deliveries"].items():
            stale = d["claim"] is not None and now - d["claimed_at"] >= CLAIM_S
            if (
                name in channels
                and d["sent_at"] is None
                and (d["claim"] is None or stale)
                and d["next_try"] <= now
            ):
                d["claim"], d["claimed_at"] = token, now
    _prune(conds, now)
    rec["updated_at"] = now
    return rec


def _issue(cond: dict[str, Any], event: str, channels: list[str], now: float) -> None:
    if event == "trigger":
        cond["notified_at"] = now
    deliveries = cond.setdefault("deliveries", {})
    for name in channels:
        old = deliveries.get(name) or {}
        # A trigger being sent right now (claimed, not yet marked) may reach the channel: resolve it
        # too, or an incident would stay open (a resolve for a trigger that failed is harmless).
        in_flight = old.get("event") == "trigger" and old.get("claim") is not None
        triggered = bool(old.get("triggered")) or in_flight
        if event == "resolve" and not triggered:
            deliveries.pop(name, None)  # its trigger never went out: nothing to resolve
            continue
        deliveries[name] = {
            "event": event,
            "issued_at": now,
            "sent_at": None,
            "claim": None,
            "claimed_at": None,
            "tries": 0,
            "next_try": now,
            "error": None,
            "triggered": triggered,
        }


def _prune(conds: dict[str, Any], now: float) -> None:
    def done(c: dict[str, Any]) -> bool:
        return c["state"] == "resolved" and all(d["sent_at"] is not None for d in c["deliveries"].values())

    for key in [k for k, c in conds.items() if done(c) and now - c["resolved_at"] >= KEEP_S]:
        del conds[key]
    extra = len(conds) - KEEP_MAX
    if extra > 0:
        old = sorted((c["resolved_at"], k) for k, c in conds.items() if done(c))
        for _, key in old[:extra]:
            del conds[key]


def claimed(record: dict[str, Any], token: str) -> list[Claimed]:
    """The deliveries of ``record`` that ``token`` holds."""
    out = []
    for key, cond in sorted(record.get("conditions", {}).items()):
        for name, d in sorted(cond["deliveries"].items()):
            if d["claim"] == token and d["sent_at"] is None:
                out.append(Claimed(key, name, d["event"], cond))
    return out


def mark(
    record: dict[str, Any] | None,
    outcomes: dict[tuple[str, str], str | None],
    *,
    token: str,
    now: float,
    backoff_s: float,
) -> dict[str, Any] | None:
    """The record with the outcome of each delivery ``token`` claimed: ``outcomes[(key,
    channel)]`` is None when it was sent, else the error. A delivery no longer claimed by
    ``token`` (taken over, or issued anew) is left alone. None if nothing changes. Pure."""
    if not record:
        return None
    rec = copy.deepcopy(record)
    changed = False
    for (key, name), error in outcomes.items():
        d = rec.get("conditions", {}).get(key, {}).get("deliveries", {}).get(name)
        if d is None or d["claim"] != token or d["sent_at"] is not None:
            continue
        changed = True
        d["claim"] = d["claimed_at"] = None
        if error is None:
            d["sent_at"], d["error"] = now, None
            d["triggered"] = d["event"] == "trigger"
        else:
            d["tries"] += 1
            d["error"] = error[:300]
            d["next_try"] = now + min(RETRY_CAP_S, max(backoff_s, 1.0) * 2 ** d["tries"])
    return rec if changed else None


def firing(record: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """(key, condition) of the conditions firing in ``record``."""
    return [(k, c) for k, c in sorted((record or {}).get("conditions", {}).items()) if c["state"] == "firing"]


def failed_deliveries(record: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(key, channel, error) of every delivery that failed and is not sent yet."""
    out = []
    for key, cond in sorted((record or {}).get("conditions", {}).items()):
        for name, d in sorted(cond["deliveries"].items()):
            if d["sent_at"] is None and d["error"]:
                out.append((key, name, d["error"]))
    return out
