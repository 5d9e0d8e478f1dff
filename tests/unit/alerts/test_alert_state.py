"""The alert record (pure step/mark): a condition fires once per channel, repeats after the
suppression window, resolves once; claims make racing evaluators send once; failed deliveries
are tried again after a backoff."""

from __future__ import annotations

from slurmctl.alerts import state as S
from slurmctl.alerts.rules import Condition

STALL = Condition("stall", "stall", "critical", "no progress", 100.0, "slurmctl status j")
CH = ["email", "hook"]


def step(rec, active, now, token="A", ended=False):
    return S.step(rec, active, {}, CH, now=now, token=token, repeat_s=3600, resolve_after_s=60, ended=ended)


def sent_all(rec, token, now):
    return S.mark(
        rec, {(c.key, c.channel): None for c in S.claimed(rec, token)}, token=token, now=now, backoff_s=1
    )


def events(claims):
    return sorted((c.key, c.channel, c.event) for c in claims)


def test_fires_once_repeats_after_the_window_then_resolves_once() -> None:
    rec = step(None, [STALL], 1000)
    assert events(S.claimed(rec, "A")) == [("stall", "email", "trigger"), ("stall", "hook", "trigger")]
    rec = sent_all(rec, "A", 1001)
    for t in (1030, 2000, 4500):  # still firing, inside the suppression window
        rec = step(rec, [STALL], t)
        assert S.claimed(rec, "A") == []
    rec = step(rec, [STALL], 4601)  # 3,600 s after the trigger: sent again
    assert events(S.claimed(rec, "A")) == [("stall", "email", "trigger"), ("stall", "hook", "trigger")]
    rec = sent_all(rec, "A", 4602)
    rec = step(rec, [], 4630)  # not held for 29 s: not resolved yet
    assert S.claimed(rec, "A") == [] and S.firing(rec)
    rec = step(rec, [], 4662)
    assert events(S.claimed(rec, "A")) == [("stall", "email", "resolve"), ("stall", "hook", "resolve")]
    rec = sent_all(rec, "A", 4663)
    assert S.firing(rec) == [] and step(rec, [], 5000)["conditions"]["stall"]["state"] == "resolved"
    assert S.claimed(step(rec, [], 5000), "A") == []
    rec = step(rec, [STALL], 6000)  # it holds again: a new trigger
    assert events(S.claimed(rec, "A")) == [("stall", "email", "trigger"), ("stall", "hook", "trigger")]


def test_a_job_that_ended_resolves_at_once() -> None:
    rec = sent_all(step(None, [STALL], 1000), "A", 1000)
    rec = step(rec, [], 1001, ended=True)
    assert events(S.claimed(rec, "A")) == [("stall", "email", "resolve"), ("stall", "hook", "resolve")]


def test_a_trigger_never_sent_is_dropped_not_resolved() -> None:
    rec = step(None, [STALL], 1000)
    rec = S.mark(
        rec, {("stall", "email"): None, ("stall", "hook"): "HTTP 500"}, token="A", now=1000, backoff_s=1
    )
    rec = step(rec, [], 1100)
    assert events(S.claimed(rec, "A")) == [("stall", "email", "resolve")]


def test_the_loser_of_a_race_claims_nothing() -> None:
    rec = step(None, [STALL], 1000, token="A")
    again = step(rec, [STALL], 1000.5, token="B")  # B read A's record after losing the CAS
    assert S.claimed(again, "B") == []
    assert len(S.claimed(again, "A")) == 2


def test_a_stale_claim_is_taken_over_and_a_late_mark_ignored() -> None:
    rec = step(None, [STALL], 1000, token="A")  # A dies before sending
    rec = step(rec, [STALL], 1000 + S.CLAIM_S, token="B")
    assert len(S.claimed(rec, "B")) == 2 and S.claimed(rec, "A") == []
    assert S.mark(rec, {("stall", "email"): None}, token="A", now=1200, backoff_s=1) is None


def test_failed_deliveries_back_off_and_are_tried_again() -> None:
    rec = step(None, [STALL], 1000)
    rec = S.mark(
        rec, {("stall", "email"): "SMTP down", ("stall", "hook"): None}, token="A", now=1000, backoff_s=1
    )
    assert S.failed_deliveries(rec) == [("stall", "email", "SMTP down")]
    rec = step(rec, [STALL], 1001)
    assert S.claimed(rec, "A") == []  # next try at 1002
    rec = step(rec, [STALL], 1002)
    assert events(S.claimed(rec, "A")) == [("stall", "email", "trigger")]
    rec = sent_all(rec, "A", 1002)
    assert S.failed_deliveries(rec) == []


def test_old_resolved_conditions_are_dropped() -> None:
    rec = sent_all(step(None, [STALL], 1000), "A", 1000)
    rec = sent_all(step(rec, [], 2000), "A", 2000)
    assert "stall" in step(rec, [], 2000 + S.KEEP_S - 1)["conditions"]
    assert "stall" not in step(rec, [], 2000 + S.KEEP_S)["conditions"]


def test_a_resolve_while_the_trigger_is_being_sent_is_not_lost() -> None:
    """A (the runner) claimed the trigger and is still sending it when B (cron's `alerts check`)
    sees the job ended: B issues the resolve; A's late mark leaves B's resolve alone."""
    rec = step(None, [STALL], 1000, token="A")
    rec = step(rec, [], 1001, token="B", ended=True)
    assert events(S.claimed(rec, "B")) == [("stall", "email", "resolve"), ("stall", "hook", "resolve")]
    late = S.mark(rec, {("stall", "email"): None, ("stall", "hook"): None}, token="A", now=1002, backoff_s=1)
    assert late is None or events(S.claimed(late, "B")) == events(S.claimed(rec, "B"))
