"""Follow a job to its end, politely.

Two clocks: the task records in the backend are read every ``progress_s`` (cheap: files or a
query), while the scheduler is asked at most once per ``sched`` interval — ONE command for all
tasks — and that interval grows by half, from ``executor.poll_min_s`` up to ``executor.poll_max_s``,
while the scheduler's answer does not change. Progress comes from the records, so a busy job does
not make us poll Slurm faster. Tasks that no live worker will run are resubmitted (at most
``retry.max_attempts`` times per task by one watcher).

This is what ``slurmctl submit --wait`` and ``slurmctl status --watch`` run."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from slurmctl.coordinator import record_retry
from slurmctl.executors.base import Executor
from slurmctl.status import JobProgress, progress


def watch(
    executor: Executor,
    on_progress: Callable[[JobProgress], None] = lambda p: None,
    *,
    min_s: float | None = None,
    max_s: float | None = None,
    progress_s: float = 0.5,
    resubmit: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JobProgress:
    """Poll until the job is terminal; returns the final progress."""
    ecfg = executor.job.config["executor"]
    lo = min_s if min_s is not None else float(ecfg.get("poll_min_s", 1.0))
    hi = max_s if max_s is not None else float(ecfg.get("poll_max_s", 30.0))
    sched_delay = lo
    next_sched = clock()
    last_states: dict[str, object] | None = None
    budget = int(executor.job.config["retry"]["max_attempts"])
    resubmitted: Counter[str] = Counter()
    while True:
        p = progress(executor.backend, executor.job.job_id)
        on_progress(p)
        if p.state in ("succeeded", "cancelled"):
            return p
        failed = p.state == "failed"  # final only if nothing is left to resubmit
        if failed or clock() >= next_sched:
            states = executor.poll()
            again = [t for t in executor.resubmittable(states) if resubmitted[t] < budget] if resubmit else []
            if again:
                resubmitted.update(again)
                record_retry(executor.backend, executor.job.job_id, again, "no live worker will run them")
                executor.submit(again)
                states = None  # something changed: look again soon
            elif failed:
                return p
            sched_delay = lo if states != last_states else min(sched_delay * 1.5, hi)
            last_states = states
            next_sched = clock() + sched_delay
        sleep(min(progress_s, max(0.0, next_sched - clock())) or progress_s)
