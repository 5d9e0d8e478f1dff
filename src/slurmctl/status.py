"""Job progress: task counts per state, items done/failed, throughput and ETA — one scan of the
task records, no scheduler call (the executor's watcher keeps the records current).

Kept light on purpose: ``slurmctl status`` must answer in well under a second on a job of 10k tasks,
so this module reads the records as plain values through ``StateStore.scan_fields`` (the local
store serves that from a stat-validated cache) and imports neither pydantic nor the coordinator
unless the job's state has to be written back.
"""

from __future__ import annotations

import time

from slurmctl.errors import JobNotFoundError, StorageError
from slurmctl.model.states import JobState, TaskState, derive_job_state
from slurmctl.storage import keys

# Annotations only (typing, and the storage contract's module, cost start-up time `status` keeps).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

    from slurmctl.storage.base import Backend

# The task-record fields progress needs (model.core.TaskStatus), in this order.
TASK_FIELDS = (
    "state",
    "attempt",
    "items_done",
    "items_failed",
    "items_total",
    "started_at",
    "finished_at",
    "error",
    "failures",
)


class JobProgress:
    """A job's progress (``status``'s answer). A plain class with the behaviour of the dataclass it
    was (keyword construction, equality and repr by field, ``to_dict``): importing dataclasses
    costs ~20 ms of every ``status`` call."""

    _FIELDS = (
        "job_id",
        "name",
        "state",
        "executor",
        "tasks",
        "task_states",
        "items_total",
        "items_done",
        "items_failed",
        "started_at",
        "elapsed_s",
        "items_per_s",
        "eta_s",
        "message",
        "failed_tasks",
    )
    __slots__ = _FIELDS

    def __init__(
        self,
        job_id: str,
        name: str,
        state: str,
        executor: str,
        tasks: int,
        task_states: dict[str, int],
        items_total: int,
        items_done: int,
        items_failed: int,
        started_at: float | None,
        elapsed_s: float | None,
        items_per_s: float | None,
        eta_s: float | None,
        message: str | None = None,
        failed_tasks: list[dict[str, Any]] | None = None,
    ) -> None:
        self.job_id = job_id
        self.name = name
        self.state = state
        self.executor = executor
        self.tasks = tasks
        self.task_states = task_states
        self.items_total = items_total
        self.items_done = items_done
        self.items_failed = items_failed
        self.started_at = started_at
        self.elapsed_s = elapsed_s
        self.items_per_s = items_per_s
        self.eta_s = eta_s
        self.message = message
        self.failed_tasks: list[dict[str, Any]] = [] if failed_tasks is None else failed_tasks

    def to_dict(self) -> dict[str, Any]:
        """Every field, in declaration order, as a new dict (its dicts and lists are copies)."""
        out = {f: getattr(self, f) for f in self._FIELDS}
        out["task_states"] = dict(self.task_states)
        out["failed_tasks"] = [dict(t) for t in self.failed_tasks]
        return out

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "JobProgress(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS) + ")"


_STATES: dict[str | None, TaskState] = {s.value: s for s in TaskState} | {None: TaskState.PENDING}


def _task_state(key: str, value: Any) -> TaskState:
    try:
        return _STATES[value]
    except (KeyError, TypeError):
        raise StorageError(
            f"task record {key} has an unknown state {value!r}",
            hint="the record was written by a newer slurmctl or edited by hand; `slurmctl inspect` shows it",
        ) from None


def progress(backend: Backend, job_id: str, *, now: float | None = None) -> JobProgress:
    """The job's progress from one scan of its task records, with the job state its tasks imply
    (all succeeded, all final, first task started). Reads only. Raises JobNotFoundError."""
    rec = backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id))
    if rec is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    job = rec.value
    rows = backend.state.scan_fields(keys.TASKS_TABLE, keys.task_states_prefix(job_id), TASK_FIELDS)
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
    if new is not None:
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
        done += (i_total or 0) if st == TaskState.SUCCEEDED else (i_done or 0)
        failed += i_failed or 0
        if t_start and (started is None or t_start < started):
            started = t_start
        if t_end and (ended is None or t_end > ended):
            ended = t_end
        if st == TaskState.FAILED and len(failed_tasks) < 20:
            task_id = key.rpartition("/")[2]
            failed_tasks.append({"task_id": task_id, "attempt": attempt or 0, "error": (error or "")[:300]})
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
    )
