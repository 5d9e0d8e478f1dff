"""Watch a set of Slurm jobs (usually array parents) with one Slurm command per poll.

Polling discipline (see docs/slurm.md):

* One poll = ONE command for all jobs and all their tasks: ``squeue -t all -j A,B,C`` while the
  controller still holds them, ``sacct -X -j A,B,C -S <window>`` otherwise. Never one call per task:
  a million-task map would otherwise hammer slurmctld.
* squeue first: it answers from slurmctld's memory and, with ``-t all``, still lists tasks that ended
  less than MinJobAge (300 s on the dev cluster) ago with their final state. Tasks or jobs that squeue
  no longer lists before we saw them end (the watcher started late, the controller purged them) make
  the next poll a sacct poll, which reads slurmdbd and knows every finished task.
* sacct always gets an explicit window (-S submission minus a margin, -E now) so slurmdbd does not scan
  its whole history.
* Intervals grow while nothing changes (1 s, x1.5, capped at 30 s) and reset on any change. The cap
  stays far below MinJobAge so a finished task is normally seen by squeue before it is purged.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from slurmctl.errors import SchedulerError
from slurmctl.slurm.client import SlurmClient
from slurmctl.slurm.jobids import JobRef, TaskRanges
from slurmctl.slurm.states import JobState

Source = Literal["squeue", "sacct"]

WATCH_SACCT_FIELDS: tuple[str, ...] = ("JobID", "JobIDRaw", "State", "ExitCode")


class WatchTimeoutError(SchedulerError):
    """The watched jobs did not all reach a terminal state in time."""


@dataclass(frozen=True)
class BackoffSchedule:
    """Poll intervals: ``initial``, then x``factor`` per unchanged poll up to ``cap``; reset on change."""

    initial: float = 1.0
    factor: float = 1.5
    cap: float = 30.0

    def next(self, current: float | None, changed: bool) -> float:
        """Return the interval after a poll that saw (``changed``) or did not see a change. Pure."""
        if current is None or changed:
            return self.initial
        return min(current * self.factor, self.cap)


@dataclass
class JobStatus:
    """What is known about one watched job: a plain job's state, or its array tasks' states."""

    job_id: str
    state: JobState | None = None
    """For a plain job (no array): its state. None until seen."""
    tasks: dict[int, JobState] = field(default_factory=dict)
    """Array tasks seen individually (started, or reported by sacct), by task id."""
    pending: TaskRanges | None = None
    """Array tasks not yet started, as squeue/sacct print them compactly (``123_[5-100%10]``)."""
    expected: TaskRanges | None = None
    """Array tasks the caller submitted; tasks never seen are reported as UNKNOWN."""
    seen: bool = False

    @property
    def is_array(self) -> bool:
        return bool(self.tasks) or self.pending is not None or self.expected is not None

    def task_state(self, task: int) -> JobState:
        """Return the state of one array task (PENDING for one in the pending range, UNKNOWN if unseen)."""
        if task in self.tasks:
            return self.tasks[task]
        if self.pending is not None and task in self.pending:
            return JobState.PENDING
        return JobState.UNKNOWN

    def task_states(self) -> Iterator[tuple[int, JobState]]:
        """Yield (task id, state) for every known or expected task, pending ranges expanded lazily."""
        emitted: set[int] = set()
        for task, state in sorted(self.tasks.items()):
            emitted.add(task)
            yield task, state
        for ranges, state in ((self.pending, JobState.PENDING), (self.expected, JobState.UNKNOWN)):
            if ranges is None:
                continue
            for task in ranges:
                if task not in emitted:
                    emitted.add(task)
                    yield task, state

    def counts(self) -> Counter[JobState]:
        """Return how many tasks (or 1 for a plain job) are in each state."""
        if not self.is_array:
            return Counter({self.state or JobState.UNKNOWN: 1})
        return Counter(state for _, state in self.task_states())

    @property
    def finished(self) -> bool:
        """True when every task (or the plain job) is in a terminal state."""
        if not self.is_array:
            return self.state is not None and self.state.is_terminal
        if self.pending is not None and len(self.pending):
            return False
        if any(not s.is_terminal for s in self.tasks.values()):
            return False
        return self.expected is None or all(t in self.tasks for t in self.expected)

    def fingerprint(self) -> tuple[object, ...]:
        return (self.state, tuple(sorted(self.tasks.items())), str(self.pending) if self.pending else None)


@dataclass(frozen=True)
class Snapshot:
    """The result of one poll."""

    jobs: Mapping[str, JobStatus]
    source: Source
    changed: bool
    polls: int

    @property
    def finished(self) -> bool:
        return all(j.finished for j in self.jobs.values())

    def counts(self) -> Counter[JobState]:
        total: Counter[JobState] = Counter()
        for job in self.jobs.values():
            total.update(job.counts())
        return total


class StatusWatcher:
    """Polls the states of ``job_ids`` with exactly one Slurm command per poll.

    ``submitted_at`` bounds the sacct window (minus ``window_margin``). ``expected_tasks`` maps a job
    id to the array task ids submitted (an int N means 0..N-1), so tasks that finished and were
    purged before we ever saw them are still waited for. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        client: SlurmClient,
        job_ids: Iterable[str | int],
        *,
        submitted_at: datetime,
        expected_tasks: Mapping[str, int | TaskRanges | Iterable[int]] | None = None,
        schedule: BackoffSchedule | None = None,
        window_margin: timedelta = timedelta(minutes=5),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.job_ids = [str(j) for j in job_ids]
        if not self.job_ids:
            raise ValueError("no job ids to watch")
        for j in self.job_ids:
            if not j.isdigit():
                raise ValueError(f"watch job ids must be plain numeric ids (array parents), got {j!r}")
        self.submitted_at = submitted_at
        self.schedule = schedule or BackoffSchedule()
        self.window_margin = window_margin
        self.clock = clock
        self.sleep = sleep
        self.jobs: dict[str, JobStatus] = {j: JobStatus(j) for j in self.job_ids}
        for job_id, spec in (expected_tasks or {}).items():
            if str(job_id) not in self.jobs:
                raise ValueError(f"expected_tasks names job {job_id} which is not watched")
            self.jobs[str(job_id)].expected = _as_ranges(spec)
        self.interval: float | None = None
        self.polls = 0
        self.next_source: Source = "squeue"
        self.sources: Counter[str] = Counter()
        self._squeue_listed: set[str] = set()

    # -------------------------------------------------------------- one poll

    def poll(self) -> Snapshot:
        """Run ONE Slurm command (squeue or sacct), update the task states, and return a Snapshot.

        Also sets ``interval`` (the time to wait before the next poll) and ``next_source``. Raises
        SchedulerQueryError when the command fails after retries. Not idempotent (advances backoff).
        """
        before = {j: s.fingerprint() for j, s in self.jobs.items()}
        source = self.next_source
        gaps = self._poll_squeue() if source == "squeue" else self._poll_sacct()
        self.polls += 1
        self.sources[source] += 1
        changed = before != {j: s.fingerprint() for j, s in self.jobs.items()}
        self.interval = self.schedule.next(self.interval, changed)
        if gaps:
            # squeue lost track of something we have not seen finish: ask slurmdbd next time.
            # After a sacct poll that still has gaps (slurmdbd lags slurmctld by a few seconds)
            # we stay on sacct.
            self.next_source = "sacct"
        else:
            self.next_source = "squeue"
        return Snapshot(jobs=self.jobs, source=source, changed=changed, polls=self.polls)

    def _poll_squeue(self) -> bool:
        unfinished = [j for j, s in self.jobs.items() if not s.finished]
        rows = self.client.squeue(unfinished or self.job_ids, all_states=True)
        listed: dict[str, set[int | None]] = {j: set() for j in self.jobs}
        pending_seen: set[str] = set()
        for row in rows:
            key = str(row.ref.job)
            if key not in self.jobs:
                continue
            status = self.jobs[key]
            status.seen = True
            self._apply(status, row.ref, row.state)
            if row.ref.is_pending_range and not row.state.is_terminal:
                pending_seen.add(key)
            listed[key].add(row.ref.task if row.ref.task is not None else row.ref.het_offset)
        self._squeue_listed = {k for k, v in listed.items() if v} | pending_seen
        gaps = False
        for key in unfinished:
            status = self.jobs[key]
            if key not in pending_seen and status.pending is not None:
                # The range is gone: its tasks started (and are listed individually) or were purged.
                status.pending = None
            if not listed[key] and key not in pending_seen:
                gaps = gaps or not status.finished
                continue
            if any(not s.is_terminal and t not in listed[key] for t, s in status.tasks.items()):
                gaps = True
            if status.expected is not None and any(
                t not in status.tasks and (status.pending is None or t not in status.pending)
                for t in status.expected
            ):
                gaps = True
        return gaps

    def _poll_sacct(self) -> bool:
        unfinished = [j for j, s in self.jobs.items() if not s.finished]
        start = self.submitted_at - self.window_margin
        rows = self.client.sacct(
            unfinished or self.job_ids,
            start=start,
            end="now",
            fields=WATCH_SACCT_FIELDS,
            allocations_only=True,
        )
        pending_seen: set[str] = set()
        for row in rows:
            key = str(row.ref.job)
            if key not in self.jobs:
                continue
            status = self.jobs[key]
            status.seen = True
            self._apply(status, row.ref, row.state)
            if row.ref.is_pending_range and not row.state.is_terminal:
                pending_seen.add(key)
        for key in unfinished:
            status = self.jobs[key]
            if key not in pending_seen and status.pending is not None:
                status.pending = None
        # Go back to squeue (cheaper) when it still listed some unfinished job last time; stay on sacct
        # when squeue knows none of them (slurmdbd may lag by a few seconds behind the controller).
        still = [j for j in unfinished if not self.jobs[j].finished]
        return bool(still) and not any(j in self._squeue_listed for j in still)

    @staticmethod
    def _apply(status: JobStatus, ref: JobRef, state: JobState) -> None:
        if ref.is_pending_range and state.is_terminal:
            # Elements that ended before they started (scancel of a pending array, --deadline):
            # Slurm still prints them as one bracketed row, now with their final state.
            for task in ref.pending_tasks or ():
                status.tasks[task] = state
        elif ref.is_pending_range:
            status.pending = ref.pending_tasks
        elif ref.task is not None:
            status.tasks[ref.task] = state
        elif ref.het_offset is not None:
            # Het components are tracked like tasks, keyed by offset.
            status.tasks[ref.het_offset] = state
        elif status.expected is not None or status.tasks:
            # An array parent printed without a task id: sacct does this for an array whose tasks
            # have not been split out yet. Nothing to record per task.
            pass
        else:
            status.state = state

    # -------------------------------------------------------------- waiting

    def wait(
        self,
        *,
        timeout: float | None = None,
        on_poll: Callable[[Snapshot], None] | None = None,
    ) -> Snapshot:
        """Poll until every watched job is finished; return the last Snapshot.

        Sleeps ``interval`` between polls. Raises WatchTimeoutError after ``timeout`` seconds (the
        error carries the last snapshot's counts), SchedulerQueryError if Slurm stays unreachable.
        """
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            snapshot = self.poll()
            if on_poll is not None:
                on_poll(snapshot)
            if snapshot.finished:
                return snapshot
            assert self.interval is not None
            delay = self.interval
            if deadline is not None:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    counts = ", ".join(f"{s.value}={n}" for s, n in sorted(snapshot.counts().items()))
                    raise WatchTimeoutError(
                        f"jobs {','.join(self.job_ids)} not finished after {timeout:g} s ({counts})",
                        hint="check `squeue -j <id>` for the pending reason",
                    )
                delay = min(delay, remaining)
            self.sleep(delay)


def _as_ranges(spec: int | TaskRanges | Iterable[int]) -> TaskRanges:
    if isinstance(spec, TaskRanges):
        return spec
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError("expected task count must be >= 1")
        return TaskRanges(((0, spec - 1, 1),))
    ids = sorted(set(spec))
    if not ids:
        raise ValueError("expected task ids are empty")
    spans: list[tuple[int, int, int]] = []
    first = prev = ids[0]
    for t in ids[1:]:
        if t == prev + 1:
            prev = t
            continue
        spans.append((first, prev, 1))
        first = prev = t
    spans.append((first, prev, 1))
    return TaskRanges(tuple(spans))
