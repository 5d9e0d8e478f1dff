"""Follow a job to its end, politely.

Two clocks: the task records in the backend are read every ``progress_s`` (cheap: files or a
query), while the scheduler is asked at most once per ``sched`` interval — ONE command for all
tasks — and that interval grows by half, from ``executor.poll_min_s`` up to ``executor.poll_max_s``,
while the scheduler's answer does not change. Progress comes from the records, so a busy job does
not make us poll Slurm faster. After each scheduler poll the lifecycle settles the tasks from the
facts; tasks that no live worker will run are resubmitted (the lifecycle's attempt budget decides
which may run again), and the job's final state is stored. Unless the executor's own runner does it
(local), the loop also plans item retries (slurmctl.retry) as tasks finish and submits the retry
tasks when their not-before time has passed.

This is what ``slurmctl submit --wait`` and ``slurmctl status --watch`` run. Unless the executor's
own runner does it (local), the job's alerts are evaluated meanwhile in a thread
(slurmctl.alerts.evaluate.AlertLoop), with one last look when the loop ends; and with
``aggregate.when: auto`` a job that succeeded is merged into ``output.path`` before it returns."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurmctl.coordinator import record_retry
from slurmctl.executors.base import Executor
from slurmctl.lifecycle import Lifecycle, attempts_left
from slurmctl.model.states import TaskState
from slurmctl.status import JobProgress, progress
from slurmctl.storage.base import Backend

if TYPE_CHECKING:
    from slurmctl.retry.store import AutoRetry

log = logging.getLogger(__name__)

_DONE = ("succeeded", "cancelled")
_PLAN_LAST = ("succeeded", "failed")  # a job that ended so gets a last planning pass (not cancelled)


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
    """Poll until the job is terminal; returns the final progress (the job's state stored)."""
    ecfg = executor.job.config["executor"]
    lo = min_s if min_s is not None else float(ecfg.get("poll_min_s", 1.0))
    hi = max_s if max_s is not None else float(ecfg.get("poll_max_s", 30.0))
    auto = None
    if (executor.job.config.get("retry") or {}).get("items", True) and not executor.plans_item_retries:
        from slurmctl.retry.store import AutoRetry

        auto = AutoRetry(executor.backend, executor.job.job_id)
    alerts = None
    if not executor.plans_item_retries:  # a runner that plans retries (local) evaluates alerts too
        from slurmctl.alerts.evaluate import start as start_alerts

        alerts = start_alerts(executor.backend, executor.job.job_id, executor.job.config)
    try:
        final = _watch(executor, on_progress, lo, hi, progress_s, resubmit, sleep, clock, auto)
    finally:
        if alerts is not None:
            alerts.stop()  # one last look: a job that ended resolves its conditions
    config = executor.job.config
    if (
        final.state == "succeeded"
        and (config.get("aggregate") or {}).get("when") == "auto"
        and executor.kind != "local"  # the local runner merges itself
    ):
        auto_merge(executor.backend, executor.job.job_id, config)
    return final


def auto_merge(backend: Backend, job_id: str, config: dict[str, Any]) -> None:
    """``aggregate.when: auto``: merge the succeeded job into ``output.path`` (where the job file's
    ``aggregate.where`` says). Raises the merge's errors."""
    out = config.get("output") or {}
    if not out.get("path"):
        return
    from slurmctl.aggregate import aggregate

    m = aggregate(backend, job_id, Path(out["path"]), out.get("format"))
    log.info("merged %d rows into %s (%d nodes merged)", m.rows, m.output_path, m.nodes_run)


def _watch(
    executor: Executor,
    on_progress: Callable[[JobProgress], None],
    lo: float,
    hi: float,
    progress_s: float,
    resubmit: bool,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    auto: AutoRetry | None,
) -> JobProgress:
    lc = executor.lifecycle
    sched_delay = lo
    next_sched = clock()
    last_facts: object = None
    while True:
        p = progress(executor.backend, executor.job.job_id)
        on_progress(p)
        if auto is not None:  # item retries: plan what finished tasks failed, submit what is due
            due = [t for t in auto.step(force=p.state in _PLAN_LAST) if _runnable(lc, t)]
            if due:
                executor.submit(due)
                continue
            if auto.waiting and p.state in _PLAN_LAST:
                sleep(min(progress_s, auto.next_due() or 0.0) or progress_s)
                continue
        if (p.state in _DONE or (p.state == "failed" and not resubmit)) and not executor.deciding():
            lc.refresh_job()
            return progress(executor.backend, executor.job.job_id)
        if clock() >= next_sched:
            facts = executor.poll()
            again = lc.settle(facts)
            if auto is not None:  # retry tasks waiting for their not-before time are not due yet
                again = [t for t in again if t not in auto.waiting]
            if again and resubmit and not p.paused:  # a paused job gets no new workers
                record_retry(executor.backend, executor.job.job_id, again, "no live worker will run them")
                executor.submit(again)
                facts = None  # something changed: look again soon
            lc.refresh_job()
            if p.state == "failed" and not again:
                return progress(executor.backend, executor.job.job_id)
            fingerprint = None if facts is None else {k: e.state for k, e in facts.elements.items()}
            sched_delay = lo if fingerprint != last_facts else min(sched_delay * 1.5, hi)
            last_facts = fingerprint
            next_sched = clock() + sched_delay
        sleep(min(progress_s, max(0.0, next_sched - clock())) or progress_s)


def _runnable(lc: Lifecycle, tid: str) -> bool:
    """Whether a retry task may be submitted: not finished, and a failed one has attempts left."""
    st = lc.task(tid)
    if st is None or st.state in (TaskState.SUCCEEDED, TaskState.CANCELLED):
        return False
    return not (st.state == TaskState.FAILED and not attempts_left(st, lc.max_attempts))


def resubmit_once(
    executor: Executor, *, reason: str = "slurmctl resubmit", failed: bool = False
) -> tuple[list[str], str]:
    """Settle the job from the scheduler's facts, then submit again what no live worker will run.
    Returns (task ids resubmitted, a one-line description). When nothing is resubmitted the
    description says why: every task done or final, or which live elements will still run the
    rest. Asks the scheduler at most twice (squeue, then sacct when squeue no longer knows a
    submission). With ``failed``, tasks that used up their attempts get a fresh budget first.
    Retry tasks whose not-before time has not come are left for a later call or the watch loop
    (unless the executor's own runner waits for them: local), and the description says until
    when. Raises StateError (exit 5) for a paused job, before changing anything."""
    lc = executor.lifecycle
    job_id = executor.job.job_id
    from slurmctl.control import refuse_if_paused

    refuse_if_paused(lc.job(), "resubmitted")
    if failed:
        lc.fresh_budget()
    facts = executor.poll_settled()
    again = lc.settle(facts)
    later: dict[str, float] = {}
    if again and not executor.plans_item_retries:  # (the local runner waits for them itself)
        from slurmctl.retry.store import waiting

        now = time.time()
        later = {t: at for t, at in waiting(executor.backend, job_id).items() if at > now and t in again}
        again = [t for t in again if t not in later]
    wait = ""
    if later:
        at = min(later.values())
        wait = (
            f"{len(later)} retry task(s) wait for their backoff until "
            f"{time.strftime('%H:%M:%S', time.localtime(at))} (in {at - time.time():.0f} s): "
            "`slurmctl resubmit JOB` from then on, or `slurmctl status JOB --watch`, submits them"
        )
    if again:
        n = record_retry(executor.backend, job_id, again, reason)
        detail = executor.submit(again)
        lc.refresh_job()
        return again, f"resubmitted {len(again)} task(s) (retry manifest {n}): {detail}" + (
            f"; {wait}" if wait else ""
        )
    lc.refresh_job()
    if wait:
        return [], f"nothing to resubmit yet: {wait}"
    statuses = lc.tasks()
    open_tasks = [t for t in statuses if t.state.value not in ("succeeded", "cancelled", "failed")]
    exhausted = [t for t in statuses if t.state.value == "failed"]
    if not open_tasks:
        if exhausted:
            return [], (
                f"nothing to resubmit: {len(exhausted)} task(s) used up their attempts (see `slurmctl "
                "status JOB`); once the cause is fixed, `slurmctl resubmit JOB --failed` runs them again "
                "with a fresh budget"
            )
        return [], "nothing to resubmit: every task has succeeded"
    live = [e for e in facts.elements.values() if e.alive(time.time())]
    return [], (
        f"nothing to resubmit: {len(open_tasks)} unfinished task(s) will be run by "
        f"{len(live)} live element(s) ({facts.summary()}); `slurmctl status JOB --watch` follows them "
        "and resubmits whatever they leave"
    )
