"""The alert rules (pure): each rule holds exactly when its docstring says, from a snapshot and the
memory of earlier looks."""

from __future__ import annotations

from dataclasses import replace

from slurmctl.alerts.config import AlertsConfig
from slurmctl.alerts.rules import Bucket, Disk, Snapshot, TaskFailure, evaluate, p95

CFG = AlertsConfig.model_validate(
    {
        "rules": {
            "stall": {"min_s": 300},
            "error_spike": {"window_s": 60, "ratio": 0.5, "min_failures": 10},
            "rate_limit": {"ratio": 0.9, "for_s": 100},
        }
    }
)


def snap(**kw: object) -> Snapshot:
    base = Snapshot(job_id="j", state="running", paused=False, now=1000.0, created_at=0.0)
    return replace(base, **kw)


def keys(conds: list) -> list[str]:
    return sorted(c.key for c in conds)


def test_p95_is_the_nearest_rank() -> None:
    assert p95(()) == 0.0
    assert p95(tuple(float(i) for i in range(1, 101))) == 95.0
    assert p95((3.0,)) == 3.0


def test_stall_after_the_floor_or_twice_the_p95_task_time() -> None:
    # first look: the latest task start/end is the last progress
    conds, _ = evaluate(snap(last_activity=650.0, items_done=5), {}, CFG)
    assert keys(conds) == ["stall"] and conds[0].since == 650.0
    conds, _ = evaluate(snap(last_activity=750.0, items_done=5), {}, CFG)
    assert conds == []  # 250 s < 300 s
    # p95 of 400 s: the limit is 800 s
    conds, _ = evaluate(snap(last_activity=650.0, durations=(400.0,) * 20), {}, CFG)
    assert conds == []
    conds, _ = evaluate(snap(now=1500.0, last_activity=650.0, durations=(400.0,) * 20), {}, CFG)
    assert keys(conds) == ["stall"]


def test_progress_between_looks_resets_the_stall_and_pauses_do_not_count() -> None:
    _, mem = evaluate(snap(now=100.0, items_done=1), {}, CFG)
    conds, mem = evaluate(snap(now=350.0, items_done=2), mem, CFG)  # progressed at 350
    assert conds == []
    conds, mem = evaluate(snap(now=640.0, items_done=2), mem, CFG)
    assert conds == []
    conds, _ = evaluate(snap(now=660.0, items_done=2), mem, CFG)
    assert keys(conds) == ["stall"] and conds[0].since == 350.0
    conds, mem = evaluate(snap(now=660.0, items_done=2, paused=True), mem, CFG)
    assert conds == []
    conds, _ = evaluate(snap(now=900.0, items_done=2), mem, CFG)
    assert conds == []  # paused until 660: 240 s since


def test_no_stall_before_the_job_runs_nor_after_it_ended() -> None:
    for state in ("submitted", "succeeded", "failed", "cancelled"):
        conds, _ = evaluate(snap(state=state, last_activity=0.0), {}, CFG)
        assert conds == [], state


def test_error_spike_over_the_window() -> None:
    _, mem = evaluate(snap(now=0.0, items_done=100), {}, CFG)
    # items_done counts every item handled, the failed ones too (status.progress)
    conds, mem = evaluate(snap(now=10.0, items_done=114, items_failed=9), mem, CFG)
    assert conds == []  # 9 < min_failures
    conds, mem = evaluate(snap(now=20.0, items_done=117, items_failed=12), mem, CFG)
    assert keys(conds) == ["error_spike"]
    assert "12 of 17 item(s) handled failed" in conds[0].summary
    # the failures leave the window: no spike
    conds, mem = evaluate(snap(now=85.0, items_done=117, items_failed=12), mem, CFG)
    assert conds == []
    # more successes than failures: no spike
    conds, mem = evaluate(snap(now=95.0, items_done=200, items_failed=30), mem, CFG)
    assert conds == []


def test_failed_task_attempts_spike_too() -> None:
    _, mem = evaluate(snap(now=0.0), {}, CFG)
    conds, _ = evaluate(snap(now=5.0, failed_attempts=1000, tasks_succeeded=0), mem, CFG)
    assert keys(conds) == ["error_spike"]
    assert "1,000 task attempt(s) failed" in conds[0].summary


def test_rate_limit_saturated_for_long_enough() -> None:
    mem: dict = {}
    fired = []
    for t in range(0, 130, 10):  # 95 % of 10 tokens/s
        conds, mem = evaluate(snap(now=float(t), buckets=(Bucket("api", 10.0, int(t * 9.5)),)), mem, CFG)
        fired.append(keys(conds))
    assert fired[:10] == [[]] * 10 and fired[10:] == [["rate_limit/api"]] * 3
    assert "95% of its tokens taken over the last 100 s" in conds[0].summary
    for t in range(130, 200, 10):  # 1 token/s from 120 on: the average over 100 s falls below 90 %
        conds, mem = evaluate(snap(now=float(t), buckets=(Bucket("api", 10.0, 1140 + (t - 120)),)), mem, CFG)
    assert conds == []
    mem = {}
    for t in range(0, 300, 10):  # 50 %
        conds, mem = evaluate(snap(now=float(t), buckets=(Bucket("api", 10.0, t * 5),)), mem, CFG)
        assert conds == []
    assert len(mem["buckets"]["api"]) <= 12  # samples for_s/10 apart over for_s


def test_resources_disks_and_infrastructure() -> None:
    failures = (
        TaskFailure("t0000001", "slurm:out_of_memory", "resources/memory"),
        TaskFailure("t0000002", "signal:SIGKILL", "resources/memory"),
        TaskFailure("t0000003", "slurm:timeout", "resources/time"),
        TaskFailure("t0000004", "slurm:node_fail", "infrastructure"),
        TaskFailure("t0000005", "exit:6", "infrastructure"),
        TaskFailure("t0000006", "exit:1", "unknown"),
    )
    disks = (Disk("backend", "/r", 0.95), Disk("scratch", "/tmp", 0.5))
    conds, _ = evaluate(snap(failures=failures, disks=disks), {}, CFG)
    assert keys(conds) == ["disk/backend", "infrastructure", "resources/memory", "resources/time", "stall"]
    by = {c.key: c for c in conds}
    assert (
        "2 task(s) ran out of memory (signal:SIGKILL x1, slurm:out_of_memory x1)"
        in by["resources/memory"].summary
    )
    assert "exit:6 x1, slurm:node_fail x1" in by["infrastructure"].summary
    assert by["disk/backend"].command.startswith("df -h /r")


def test_disabled_rules_hold_nothing() -> None:
    off = AlertsConfig.model_validate(
        {"rules": {r: {"enabled": False} for r in type(CFG.rules).model_fields}}
    )
    failures = (TaskFailure("t0000001", "slurm:node_fail", "infrastructure"),)
    conds, _ = evaluate(snap(failures=failures, disks=(Disk("backend", "/r", 1.0),)), {}, off)
    assert conds == []


def test_a_first_look_counts_from_the_job_creation() -> None:
    conds, _ = evaluate(snap(now=30.0, created_at=0.0, items_failed=20), {}, CFG)
    assert keys(conds) == ["error_spike"]
    conds, _ = evaluate(snap(now=300.0, created_at=0.0, items_failed=20), {}, CFG)
    assert "error_spike" not in keys(conds)  # created before the window: no base to compare with yet
