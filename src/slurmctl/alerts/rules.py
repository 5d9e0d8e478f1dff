"""The alert rules: a snapshot of a job (and what earlier looks remembered) in, the conditions that
hold out. Pure: no I/O, no clock (the snapshot carries ``now``).

    rule            holds when                                                      key
    stall           the job runs, is not paused, and nothing progressed (items       stall
                    done or failed, tasks finished or failed) for
                    max(factor x p95 task time, min_s)
    error_spike     over window_s, >= min_failures items failed and they are         error_spike
                    >= ratio of the items handled, or the same for task attempts
                    (failed attempts against failed attempts + tasks succeeded)
    rate_limit      a limit's bucket handed out >= ratio of its tokens (rate x       rate_limit/<name>
                    time) over the last for_s (and was looked at for_s ago)
    resources       a task's latest failed attempt ran out of memory or time         resources/memory,
                    (OOM, TIMEOUT); the backend root or the scratch file system       resources/time,
                    >= disk_ratio full                                                disk/<backend|scratch>
    infrastructure  a task's latest failed attempt failed for the node or the       infrastructure
                    storage (NODE_FAIL, BOOT_FAIL, exit 6 storage, exit 7 scheduler)
                    (the evaluator adds infrastructure/backend when it cannot read
                    the backend at all)

``memory`` is what the rules keep between looks (JSON): the progress count and when it last
changed, samples of the counts over the error window, and samples of each bucket's ``issued``
count over for_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from slurmctl.alerts.config import AlertsConfig


@dataclass(frozen=True)
class TaskFailure:
    """A task's latest failed attempt, as its record tells it (failures/classify.task_fact)."""

    task_id: str
    label: str  # slurm:out_of_memory, signal:SIGKILL, exit:6, ...
    verdict: str  # resources/memory, infrastructure, ...


@dataclass(frozen=True)
class Bucket:
    name: str
    rate: float
    issued: int | None  # None: a bucket record without the count


@dataclass(frozen=True)
class Disk:
    label: str  # backend, scratch
    path: str
    used_ratio: float


@dataclass(frozen=True)
class Snapshot:
    job_id: str
    state: str  # the state the job's tasks imply (status.progress)
    paused: bool
    now: float
    created_at: float
    items_done: int = 0
    items_failed: int = 0
    tasks_succeeded: int = 0
    failed_attempts: int = 0  # the sum of every task's failures
    last_activity: float | None = None  # the latest start or end of any task
    durations: tuple[float, ...] = ()  # run time of each succeeded task
    failures: tuple[TaskFailure, ...] = ()
    buckets: tuple[Bucket, ...] = ()
    disks: tuple[Disk, ...] = ()
    shared: frozenset[str] = field(default_factory=frozenset)  # limits shared between jobs


@dataclass(frozen=True)
class Condition:
    key: str
    rule: str
    severity: str  # critical | warning
    summary: str
    since: float
    command: str  # what to run next


TERMINAL = ("succeeded", "failed", "cancelled", "purging")


def p95(values: tuple[float, ...]) -> float:
    """The 95th percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def evaluate(
    snap: Snapshot, memory: dict[str, Any], cfg: AlertsConfig
) -> tuple[list[Condition], dict[str, Any]]:
    """The conditions that hold for ``snap`` and the memory to keep for the next look."""
    mem: dict[str, Any] = {}
    out: list[Condition] = []
    if snap.state in TERMINAL:
        return out, mem
    rules = cfg.rules
    job = snap.job_id
    # -- stall
    count = snap.items_done + snap.items_failed + snap.tasks_succeeded + snap.failed_attempts
    prev = memory.get("progress")
    if snap.paused:
        last = snap.now  # time paused is no stall
    elif not prev:
        last = max(snap.last_activity or 0.0, snap.created_at)
    elif prev[0] != count:
        last = snap.now
    else:
        last = float(prev[1])
    mem["progress"] = [count, last]
    if rules.stall.enabled and snap.state == "running" and not snap.paused:
        limit = max(rules.stall.factor * p95(snap.durations), rules.stall.min_s)
        if snap.now - last >= limit:
            out.append(
                Condition(
                    "stall",
                    "stall",
                    "critical",
                    f"job {job}: no progress for {snap.now - last:.0f} s (limit {limit:.0f} s: "
                    f"max({rules.stall.factor:g} x p95 task time, {rules.stall.min_s:g} s)); "
                    f"{snap.items_done:,} item(s) done, {snap.items_failed:,} failed",
                    last,
                    f"slurmctl status {job}; slurmctl inspect {job} (running tasks), then "
                    f"slurmctl cancel {job} or slurmctl resubmit {job}",
                )
            )
    # -- error spike: the counts now against the oldest sample inside the window
    spike = rules.error_spike
    now_sample = [snap.now, snap.items_done, snap.items_failed, snap.failed_attempts, snap.tasks_succeeded]
    # First look: the job started from nothing at its creation (a cron check sees a spike at once).
    start = [[snap.created_at, 0, 0, 0, 0]] if 0 < snap.now - snap.created_at <= spike.window_s else []
    samples = [s for s in memory.get("samples", start) if s[0] <= snap.now]
    base_i = 0
    while base_i + 1 < len(samples) and samples[base_i + 1][0] <= snap.now - spike.window_s:
        base_i += 1
    samples = samples[base_i:]
    if not samples or snap.now - samples[-1][0] >= spike.window_s / 60:
        samples.append(now_sample)  # at most ~60 samples a window
    mem["samples"] = samples
    if spike.enabled and samples[0] is not now_sample:
        _, done0, failed0, att0, ok0 = samples[0]
        d_failed, d_done = max(0, snap.items_failed - failed0), max(0, snap.items_done - done0)
        d_att, d_ok = max(0, snap.failed_attempts - att0), max(0, snap.tasks_succeeded - ok0)
        d_done = max(d_done, d_failed)  # items_done counts every item handled, failed ones too
        items_hit = d_failed >= spike.min_failures and d_failed >= spike.ratio * d_done
        tasks_hit = d_att >= spike.min_failures and d_att >= spike.ratio * (d_att + d_ok)
        if items_hit or tasks_hit:
            span = snap.now - samples[0][0]
            what = []
            if items_hit:
                what.append(f"{d_failed:,} of {d_done:,} item(s) handled failed")
            if tasks_hit:
                what.append(f"{d_att:,} task attempt(s) failed, {d_ok:,} task(s) succeeded")
            out.append(
                Condition(
                    "error_spike",
                    "error_spike",
                    "critical",
                    f"job {job}: error spike: {'; '.join(what)} in the last {span:.0f} s",
                    samples[0][0],
                    f"slurmctl analyze-errors {job}",
                )
            )
    # -- rate limits: tokens handed out over the last for_s against rate x for_s (samples of the
    # bucket's ``issued`` count at least for_s/10 apart, the oldest at least for_s old)
    rl = rules.rate_limit
    bmem: dict[str, Any] = {}
    for b in snap.buckets:
        if b.issued is None:
            continue
        old = [s for s in (memory.get("buckets") or {}).get(b.name, []) if s[0] <= snap.now]
        while len(old) > 1 and old[1][0] <= snap.now - rl.for_s:
            old.pop(0)
        if not old or snap.now - old[-1][0] >= rl.for_s / 10:
            old.append([snap.now, b.issued])
        bmem[b.name] = old
        at0, issued0 = old[0]
        span = snap.now - at0
        used = (b.issued - issued0) / (b.rate * span) if span > 0 else 0.0
        if rl.enabled and span >= rl.for_s and used >= rl.ratio:
            where = "" if b.name in snap.shared else f" --job {job}"
            out.append(
                Condition(
                    f"rate_limit/{b.name}",
                    "rate_limit",
                    "warning",
                    f"job {job}: rate limit {b.name} ({b.rate:g}/s) saturated: {used:.0%} of its tokens "
                    f"taken over the last {span:.0f} s",
                    at0,
                    f"slurmctl limits set {b.name}{where} --rate <higher> (if the API allows it)",
                )
            )
    mem["buckets"] = bmem
    # -- resources and infrastructure: the tasks' latest failed attempts
    by_verdict: dict[str, list[TaskFailure]] = {}
    for f in snap.failures:
        by_verdict.setdefault(f.verdict, []).append(f)
    if rules.resources.enabled:
        for kind, word in (("memory", "ran out of memory"), ("time", "ran out of time")):
            hit = by_verdict.get(f"resources/{kind}", [])
            if hit:
                out.append(
                    Condition(
                        f"resources/{kind}",
                        "resources",
                        "warning",
                        f"job {job}: {len(hit):,} task(s) {word} ({_labels(hit)}): {_tasks(hit)}",
                        snap.now,
                        f"slurmctl analyze-errors {job} --category resources",
                    )
                )
        for d in snap.disks:
            if d.used_ratio >= rules.resources.disk_ratio:
                out.append(
                    Condition(
                        f"disk/{d.label}",
                        "resources",
                        "critical",
                        f"job {job}: the {d.label} file system {d.path} is {d.used_ratio:.0%} full",
                        snap.now,
                        f"df -h {d.path}; free space, then slurmctl resubmit {job} --failed",
                    )
                )
    hit = by_verdict.get("infrastructure", [])
    if rules.infrastructure.enabled and hit:
        out.append(
            Condition(
                "infrastructure",
                "infrastructure",
                "critical",
                f"job {job}: {len(hit):,} task(s) failed for the node or the storage ({_labels(hit)}): "
                f"{_tasks(hit)}",
                snap.now,
                f"slurmctl analyze-errors {job} --category infrastructure; slurmctl doctor",
            )
        )
    return out, mem


def backend_failure(job_id: str, error: str, now: float) -> Condition:
    """The condition the evaluator raises when it cannot read the backend."""
    return Condition(
        "infrastructure/backend",
        "infrastructure",
        "critical",
        f"job {job_id}: the backend cannot be read: {error}",
        now,
        "slurmctl doctor; check the backend root's file system (or the AWS endpoint)",
    )


def _labels(fs: list[TaskFailure]) -> str:
    counts: dict[str, int] = {}
    for f in fs:
        counts[f.label] = counts.get(f.label, 0) + 1
    return ", ".join(f"{label} x{n}" for label, n in sorted(counts.items()))


def _tasks(fs: list[TaskFailure]) -> str:
    ids = sorted(f.task_id for f in fs)
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5:,} more" if len(ids) > 5 else "")
