"""Follow a job to its end: one scheduler poll per round, intervals that grow while nothing
changes, automatic resubmission of tasks that no live worker will run (within retry.max_attempts).

This is what ``slurmctl submit --wait`` and ``slurmctl status --watch`` run."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from slurmctl.executors.base import Executor
from slurmctl.status import JobProgress, progress


def watch(
    executor: Executor,
    on_progress: Callable[[JobProgress], None] = lambda p: None,
    *,
    min_s: float | None = None,
    max_s: float | None = None,
    resubmit: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> JobProgress:
    """Poll until the job is terminal; returns the final progress.

    Each round runs ``executor.poll()`` (at most one scheduler command for all tasks) and reads the
    task records. The interval starts at ``min_s`` and grows by half up to ``max_s`` while nothing
    changes; any change resets it."""
    ecfg = executor.job.config["executor"]
    lo = min_s if min_s is not None else float(ecfg.get("poll_min_s", 1.0))
    hi = max_s if max_s is not None else float(ecfg.get("poll_max_s", 30.0))
    delay = lo
    last: tuple[object, ...] | None = None
    job_id = executor.job.job_id
    # A task is resubmitted at most max_attempts times by one watcher, whatever its records say.
    budget = int(executor.job.config["retry"]["max_attempts"])
    resubmitted: Counter[str] = Counter()
    while True:
        states = executor.poll()
        if resubmit:
            again = [t for t in executor.resubmittable(states) if resubmitted[t] < budget]
            if again:
                resubmitted.update(again)
                executor.submit(again)
        p = progress(executor.backend, job_id)
        on_progress(p)
        if p.state in ("succeeded", "failed", "cancelled"):
            return p
        now = (p.state, p.items_done, p.items_failed, tuple(p.task_states.values()))
        delay = lo if now != last else min(delay * 1.5, hi)
        last = now
        sleep(delay)
