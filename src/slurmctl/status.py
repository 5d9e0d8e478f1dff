"""Job progress: task counts per state, items done/failed, throughput and ETA — from the job's
progress records (one small record per group of tasks, :mod:`slurmctl.model.progress`), no
scheduler call (the lifecycle keeps them current). Reads only.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from slurmctl.errors import JobNotFoundError, StorageError
from slurmctl.model import progress as prog
from slurmctl.model.states import JobState, TaskState, derive_job_state
from slurmctl.storage import keys
from slurmctl.storage.base import Backend


@dataclass
class JobProgress:
    """A job's progress (``status``'s answer)."""

    job_id: str
    name: str
    state: str
    executor: str
    tasks: int  # every task: the job's own and its item retry tasks
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
    paused: bool = False  # `slurmctl pause`: no task is claimed until `slurmctl resume`
    retry_tasks: int = 0  # how many of ``tasks`` are item retry tasks (slurmctl.retry)

    def to_dict(self) -> dict[str, Any]:
        """Every field, in declaration order, as a new dict (its dicts and lists are copies)."""
        return asdict(self)


_STATES: dict[str | None, TaskState] = {s.value: s for s in TaskState} | {None: TaskState.PENDING}


def _task_state(key: str, value: Any) -> TaskState:
    try:
        return _STATES[value]
    except (KeyError, TypeError):
        raise StorageError(
            f"task {key} has an unknown state {value!r}",
            hint="the record was written by a newer slurmctl or edited by hand; `slurmctl inspect` shows it",
        ) from None


def _rows(backend: Backend, job_id: str, exact_scan: bool) -> list[tuple[str, list[Any]]]:
    """``(task id, entry without its version)`` of every task, by task id: from the progress
    records, or with ``exact_scan`` (or if the job has none: made before them) from every task
    record (what tests compare them with)."""
    entries: dict[str, list[Any]] = {}
    if not exact_scan:
        for r in backend.state.scan(keys.PROGRESS_TABLE, keys.progress_prefix(job_id)):
            group = r.value.get("entries") if isinstance(r.value, dict) else None
            if not isinstance(group, dict):
                raise StorageError(
                    f"progress record {r.key} has no entries",
                    hint="the record was written by another slurmctl or edited by hand; "
                    f"`slurmctl resubmit {job_id}` rewrites it",
                )
            entries.update(group)
    if exact_scan or not entries:
        records = backend.state.scan(keys.TASKS_TABLE, keys.task_states_prefix(job_id))
        entries = {r.key.rpartition("/")[2]: prog.entry(r.version, r.value) for r in records}
    return [(tid, entries[tid][1:]) for tid in sorted(entries)]


def progress(
    backend: Backend, job_id: str, *, now: float | None = None, exact_scan: bool = False
) -> JobProgress:
    """The job's progress from its progress records (``exact_scan``: from every task record),
    with the job state its tasks imply (all succeeded, all final, first task started). Reads
    only. Raises JobNotFoundError."""
    rec = backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id))
    if rec is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    job = rec.value
    rows = _rows(backend, job_id, exact_scan)
    try:
        states = [_STATES[v[0]] for _, v in rows]
    except (KeyError, TypeError):  # find the culprit for the message
        states = [_task_state(k, v[0]) for k, v in rows]
    job_state = JobState(job.get("state", JobState.CREATED))
    # The state the tasks imply, shown without storing it: readers never write (the lifecycle
    # stores the job's state when the watcher or the runner settles it).
    max_attempts = job.get("max_attempts") or 3
    effective = [
        TaskState.QUEUED if st == TaskState.FAILED and (v[8] or 0) < max_attempts else st
        for st, (_, v) in zip(states, rows, strict=True)
    ]
    new = derive_job_state(job_state, effective)
    # A job whose progress records miss tasks (a group not written yet: the lifecycle repairs it)
    # is not judged from the others (its item retry tasks do not stand in for them).
    originals = job.get("tasks") or len(rows)  # tasks after these are item retry tasks
    retry_tasks = sum(1 for key, _ in rows if int(key[1:]) >= originals)
    if new is not None and len(rows) - retry_tasks >= originals:
        job_state = new
    now = now or time.time()
    counts: dict[TaskState, int] = {}
    for st in states:
        counts[st] = counts.get(st, 0) + 1
    done = failed = 0
    started: float | None = None
    ended: float | None = None
    failed_tasks: list[dict[str, Any]] = []
    for (key, (_, attempt, i_done, i_failed, i_total, t_start, t_end, error, _failures)), st in zip(
        rows, states, strict=True
    ):
        if int(key[1:]) < originals:
            done += (i_total or 0) if st == TaskState.SUCCEEDED else (i_done or 0)
            failed += i_failed or 0
        elif st == TaskState.SUCCEEDED:  # an item retry task: its items were counted failed
            failed -= (i_total or 0) - (i_failed or 0)
        if t_start and (started is None or t_start < started):
            started = t_start
        if t_end and (ended is None or t_end > ended):
            ended = t_end
        if st == TaskState.FAILED and len(failed_tasks) < 20:
            failed_tasks.append({"task_id": key, "attempt": attempt or 0, "error": error or ""})
    total_items = job.get("total_items", 0)
    if started is None:
        elapsed = rate = eta = None
    else:
        end = ended if job_state.is_terminal and ended else now
        elapsed = max(end - started, 1e-6)
        rate = done / elapsed if done else None
        remaining = total_items - done
        eta = (
            remaining / rate
            if rate and remaining > 0 and not job_state.is_terminal
            else (0.0 if rate else None)
        )
    return JobProgress(
        job_id=job.get("job_id", job_id),
        name=job.get("name", ""),
        state=job_state.value,
        executor=job.get("executor", "local"),
        tasks=len(rows),
        task_states={s.value: counts.get(s, 0) for s in TaskState},
        items_total=total_items,
        items_done=done,
        items_failed=failed,
        started_at=started,
        elapsed_s=elapsed,
        items_per_s=rate,
        eta_s=eta,
        message=job.get("message"),
        failed_tasks=failed_tasks,
        paused=bool(job.get("paused")),
        retry_tasks=retry_tasks,
    )
