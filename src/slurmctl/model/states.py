"""Job and task state machines. Every state change goes through ``advance``; an illegal one raises.

Task::

    pending ──▶ queued ──▶ running ──▶ succeeded
       │          │   ▲       │  │
       │          │   └───────┘  └──▶ failed ──▶ queued   (retry)
       └──────────┴──────────────────▶ cancelled ──▶ queued (resubmit)

    running ──▶ queued: preempted, requeued, or its lease expired (another worker may claim it)

Job::

    created ──▶ partitioned ──▶ submitted ──▶ running ──▶ succeeded
                                   │            │  ▲   └──▶ failed ──▶ submitted (retry), succeeded (late)
                                   └────────────┴──┴──────▶ cancelled ──▶ submitted (resubmit)

    any state ──▶ purging   (``slurmctl purge``: its artifacts are being deleted; nothing leaves it)
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from slurmctl.errors import StateError


class TaskState(StrEnum):
    PENDING = "pending"
    """Created; not yet handed to an executor."""
    QUEUED = "queued"
    """Handed to an executor (Slurm array element pending, or waiting for a pilot worker)."""
    RUNNING = "running"
    """A worker holds it (with a lease in pilot mode)."""
    SUCCEEDED = "succeeded"
    """Result published: data, manifest and ``.done`` marker. Item failures are counted inside."""
    FAILED = "failed"
    """The worker could not finish (handler import error, crash, timeout without checkpoint)."""
    CANCELLED = "cancelled"
    """Cancelled by the user."""

    @property
    def is_terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class JobState(StrEnum):
    CREATED = "created"
    """Job record exists; the input is being partitioned."""
    PARTITIONED = "partitioned"
    """Batches and task manifests are stored; nothing submitted yet."""
    SUBMITTED = "submitted"
    """Tasks handed to the executor."""
    RUNNING = "running"
    """At least one task has started."""
    SUCCEEDED = "succeeded"
    """Every task succeeded."""
    FAILED = "failed"
    """Every task is terminal and at least one failed."""
    CANCELLED = "cancelled"
    """Cancelled by the user."""
    PURGING = "purging"
    """``slurmctl purge`` is deleting the job's artifacts (a re-run of ``purge`` finishes it)."""

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PURGING)


_TASK_MOVES: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.QUEUED, TaskState.RUNNING, TaskState.CANCELLED}),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.CANCELLED, TaskState.FAILED, TaskState.QUEUED}),
    TaskState.RUNNING: frozenset(
        {TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED, TaskState.QUEUED, TaskState.CANCELLED}
    ),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset({TaskState.QUEUED}),
    TaskState.CANCELLED: frozenset({TaskState.QUEUED}),
}

_JOB_MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.CREATED: frozenset({JobState.PARTITIONED, JobState.FAILED, JobState.CANCELLED}),
    JobState.PARTITIONED: frozenset({JobState.SUBMITTED, JobState.CANCELLED, JobState.FAILED}),
    JobState.SUBMITTED: frozenset(
        {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.SUBMITTED}
    ),
    JobState.SUCCEEDED: frozenset({JobState.SUBMITTED}),  # an item retry plan adds tasks
    # A task published late (by a worker thought lost) can complete a job already stored failed.
    JobState.FAILED: frozenset({JobState.SUBMITTED, JobState.SUCCEEDED}),
    JobState.CANCELLED: frozenset({JobState.SUBMITTED}),
    JobState.PURGING: frozenset(),
}
# Any job may be purged (a live one only with ``purge --force``, which cancels it first).
_JOB_MOVES = {s: m | {JobState.PURGING} if s != JobState.PURGING else m for s, m in _JOB_MOVES.items()}


def can_advance_task(current: TaskState, new: TaskState) -> bool:
    return new in _TASK_MOVES[current]


def advance_task(current: TaskState, new: TaskState) -> TaskState:
    """Return ``new`` if the move is legal, else raise StateError."""
    if new not in _TASK_MOVES[current]:
        raise StateError(f"illegal task transition {current.value} -> {new.value}")
    return new


def advance_job(current: JobState, new: JobState) -> JobState:
    """Return ``new`` if the move is legal (or a no-op), else raise StateError."""
    if new != current and new not in _JOB_MOVES[current]:
        raise StateError(f"illegal job transition {current.value} -> {new.value}")
    return new


def derive_job_state(current: JobState, task_states: Iterable[TaskState]) -> JobState | None:
    """The job state that its tasks' states imply, or None when they imply no change.

    A job that was never submitted, or was cancelled, or has succeeded keeps its state; all tasks
    succeeded → succeeded; all terminal with some failed/cancelled → failed; any task started →
    running (a failed job whose tasks run again is a retry under way: submitted). Pure; used by
    the coordinator (which stores the result) and by ``status`` (which reads without pydantic)."""
    if current in (
        JobState.CREATED,
        JobState.PARTITIONED,
        JobState.CANCELLED,
        JobState.SUCCEEDED,
        JobState.PURGING,
    ):
        return None
    seen = set(task_states)
    if not seen:
        return None
    if seen == {TaskState.SUCCEEDED}:
        new = JobState.SUCCEEDED
    elif all(s.is_terminal for s in seen):
        new = JobState.FAILED
    elif seen & {TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED}:
        new = JobState.RUNNING
    else:
        return None
    if new == current:
        return None
    if current == JobState.FAILED and new == JobState.RUNNING:
        return JobState.SUBMITTED
    return new
