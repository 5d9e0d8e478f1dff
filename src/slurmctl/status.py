"""Job progress: task counts per state, items done/failed, throughput and ETA — one scan of the
task records, no scheduler call (the executor's watcher keeps the records current)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from slurmctl.coordinator import job_status, refresh_job_state, task_statuses
from slurmctl.model.core import JobStatus
from slurmctl.model.states import TaskState
from slurmctl.storage.base import Backend


@dataclass
class JobProgress:
    job_id: str
    name: str
    state: str
    executor: str
    tasks: int
    task_states: dict[str, int]
    items_total: int
    items_done: int
    items_failed: int
    started_at: float | None
    elapsed_s: float | None
    items_per_s: float | None
    eta_s: float | None
    message: str | None = None
    failed_tasks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def progress(backend: Backend, job_id: str, *, now: float | None = None) -> JobProgress:
    job: JobStatus = job_status(backend, job_id)
    statuses = task_statuses(backend, job_id)
    job = refresh_job_state(backend, job_id, statuses)
    now = now or time.time()
    counts = Counter(s.state.value for s in statuses)
    done = sum(s.items_done if s.state != TaskState.SUCCEEDED else s.items_total for s in statuses)
    failed = sum(s.items_failed for s in statuses)
    starts = [s.started_at for s in statuses if s.started_at]
    ends = [s.finished_at for s in statuses if s.finished_at]
    started = min(starts) if starts else None
    if started is None:
        elapsed = rate = eta = None
    else:
        end = max(ends) if job.state.is_terminal and ends else now
        elapsed = max(end - started, 1e-6)
        rate = done / elapsed if done else None
        remaining = job.total_items - done
        eta = (
            remaining / rate
            if rate and remaining > 0 and not job.state.is_terminal
            else (0.0 if rate else None)
        )
    failed_tasks = [
        {"task_id": s.task_id, "attempt": s.attempt, "error": (s.error or "")[:300]}
        for s in statuses
        if s.state == TaskState.FAILED
    ][:20]
    return JobProgress(
        job_id=job.job_id,
        name=job.name,
        state=job.state.value,
        executor=job.executor,
        tasks=len(statuses),
        task_states={s.value: counts.get(s.value, 0) for s in TaskState},
        items_total=job.total_items,
        items_done=done,
        items_failed=failed,
        started_at=started,
        elapsed_s=elapsed,
        items_per_s=rate,
        eta_s=eta,
        message=job.message,
        failed_tasks=failed_tasks,
    )
