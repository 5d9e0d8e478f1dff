"""The one owner of task and job state: every transition of a task or job record happens here.

Workers, executors, the watcher and the CLI call this module; none of them writes a record
itself, and readers (``status``, ``inspect``, ``jobs``) never write. Every change is a
compare-and-set on the record (``StateStore.update`` re-runs the change function against the
fresh record after a conflict), so a decision taken from stale facts cannot overwrite a claim
that won in between: each change function re-checks the condition it was decided on.

Task state machine (``model/states.py`` holds the legal moves)::

    pending ──queue──▶ queued ──claim──▶ running ──publish──▶ succeeded
                         ▲  ▲               │  │
                         │  └─interrupted───┘  └─failed / holder died──▶ failed ──queue──▶ queued
                         └──────────── cancel / queue (resubmit) ◀──── cancelled

The attempt budget: ``failures`` counts attempts that ended in a failure (the worker failed, or
died — SIGKILL, OOM, node failure — as the scheduler or a dead pid says). Interruptions that
leave a clean checkpoint (SIGTERM, scancel, preemption, the time-limit signal) do not count. A
task with ``failures >= retry.max_attempts`` is final.

Settling from scheduler facts (``settle``), the rules:

* only the latest submission of a task speaks for it (array mode); in pilot mode any live pilot
  of the job may run any task;
* a submission the scheduler does not list yet is alive for ``LOST_AFTER_S`` from its own submit
  time (slurmctld lists a new array at once, slurmdbd seconds later);
* a task claimed under a live lease is never settled, unless the facts are about the lease's
  holder itself (its Slurm element ended, or its pid is gone on this host);
* a published ``.done`` marker wins over every record;
* a worker whose pid is gone while its Slurm element is still listed running is judged at the
  next poll, by the element's end (and its sacct facts).

Resource escalation (``retry.escalate``): when a holder's element ends, the task record keeps the
Slurm state, sacct's ExitCode and the verdict (``cause``, failures/classify.py). A failed task
whose cause is ``resources/memory`` or ``resources/time`` and that was not escalated for this
attempt ``needs_escalation``: the Slurm executor computes its next resources (retry/escalate.py)
and stores them here (``escalate``). Such a task runs only as an array element of its own: a pilot
never claims it, and pilots' elements do not cover it.

Progress records (:mod:`slurmctl.model.progress`): after every task-record write the lifecycle
applies the task's entry to its group's record (the version decides, so the order of writers does
not matter); bulk operations (``create_tasks``, ``queue``, ``cancel``) write each group once. A
crash between the two writes leaves a group behind its tasks: whatever reads every task record here
(``settle``, ``refresh_job``) rewrites the groups that are behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from slurmctl.errors import ConflictError, JobNotFoundError, StateError, StorageError
from slurmctl.model import progress as prog
from slurmctl.model.core import JobStatus, TaskStatus
from slurmctl.model.manifests import RetryManifest
from slurmctl.model.states import JobState, TaskState, can_advance_task, derive_job_state
from slurmctl.slurm.states import JobState as SlurmState
from slurmctl.storage import keys
from slurmctl.storage.base import Backend, Record

log = logging.getLogger(__name__)

# A submission that the scheduler has never listed for this long is presumed lost (e.g. purged
# from slurmctld before we looked, and absent from the accounting window).
LOST_AFTER_S = 600.0

# States a task may be queued from by a (re)submission: never from running — a worker that has
# already claimed it would otherwise see its lease vanish.
SUBMITTABLE = frozenset({TaskState.PENDING, TaskState.FAILED, TaskState.CANCELLED, TaskState.QUEUED})

# How an element's end speaks for the task its worker held: these ends are not the task's fault
# (the worker is normally interrupted cleanly first and re-queues the task itself).
_INTERRUPTED_ENDS = frozenset({SlurmState.CANCELLED, SlurmState.PREEMPTED, SlurmState.REQUEUED})
# Ends of a whole pilot submission that count a failure for the tasks it was meant to run.
_FAILED_ENDS = frozenset(
    {SlurmState.FAILED, SlurmState.NODE_FAIL, SlurmState.BOOT_FAIL, SlurmState.OUT_OF_MEMORY}
)


class Busy(Exception):
    """The task is held by another live worker, or cannot be claimed (final, cancelled)."""


class OwnArray(Busy):
    """A pilot may not run the task: it runs with escalated resources, as an array element of its
    own (``needs_escalation``, ``TaskStatus.resources``)."""


class LeaseLost(Exception):
    """Another worker took the task over; this attempt must not publish."""


class Paused(Exception):
    """The job is paused (``slurmctl pause``): no task is claimed until it is resumed."""


class JobClosed(StateError):
    """The job is being purged: no worker may claim its tasks."""


def attempts_left(st: TaskStatus, max_attempts: int) -> bool:
    """Whether a task may run again: fewer than ``max_attempts`` of its attempts failed. The one
    rule for the attempt budget."""
    return st.failures < max_attempts


def needs_escalation(st: TaskStatus, max_attempts: int) -> str | None:
    """The kind ("memory", "time") of a failed task whose latest attempt Slurm ended for resources
    and that may run again, unless its resources were decided for that attempt already; else None."""
    if st.state != TaskState.FAILED or not attempts_left(st, max_attempts):
        return None
    if not (st.cause or "").startswith("resources/"):
        return None
    if (st.resources or {}).get("attempt") == st.attempt:
        return None
    return st.cause.partition("/")[2] or None  # type: ignore[union-attr]


def own_array(st: TaskStatus, max_attempts: int) -> bool:
    """Whether the task runs only as an array element of its own (escalated resources)."""
    return st.resources is not None or needs_escalation(st, max_attempts) is not None


# -- facts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Element:
    """One thing the scheduler runs for the job: a Slurm array element (``submission`` is the
    array job id, ``index`` the element), or the local runner (``submission`` "local")."""

    submission: str
    index: int
    submitted_at: float
    state: SlurmState | None
    """None: the scheduler does not list it (yet)."""
    exit_code: tuple[int, int] | None = None
    """sacct's ExitCode (code, signal) of an element that ended FAILED, when known."""
    max_rss: int | None = None
    """sacct's MaxRSS of the element's batch step, bytes."""
    req_mem: int | None = None
    """sacct's ReqMem of the element, bytes."""

    @property
    def name(self) -> str:
        return f"{self.submission}_{self.index}"

    def alive(self, now: float) -> bool:
        """Whether it may still run a task: listed and not ended, or not listed yet within
        ``LOST_AFTER_S`` of its submission."""
        if self.state is None or self.state is SlurmState.UNKNOWN:
            return now - self.submitted_at < LOST_AFTER_S
        return not self.state.is_terminal

    @property
    def ended(self) -> bool:
        return self.state is not None and self.state.is_terminal


@dataclass
class Facts:
    """What an executor's poll learnt, as the lifecycle needs it.

    ``by_task`` maps a task to the elements that may run it (array mode: its latest submission's
    element); ``pool`` holds elements that may run any task (pilots of every submission, or the
    local runner). ``elements`` is every element by name (``<array job>_<index>``)."""

    elements: dict[str, Element] = field(default_factory=dict)
    by_task: dict[str, list[Element]] = field(default_factory=dict)
    pool: list[Element] = field(default_factory=list)

    def covering(self, task_id: str, pool: bool = True) -> list[Element]:
        """The elements that may run the task (``pool`` False: not the pilots)."""
        return self.by_task.get(task_id, []) + (self.pool if pool else [])

    def live_cover(self, task_id: str, now: float, pool: bool = True) -> bool:
        return any(e.alive(now) for e in self.covering(task_id, pool))

    def summary(self) -> str:
        """A short description for messages: element states counted."""
        counts: dict[str, int] = {}
        for e in self.elements.values():
            label = "not listed yet" if e.state is None else e.state.value
            counts[label] = counts.get(label, 0) + 1
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"


# -- the holder of a lease --------------------------------------------------------------------

_HOST: str | None = None


def this_host() -> str:
    global _HOST
    if _HOST is None:
        _HOST = socket.gethostname()
    return _HOST


def owner_alive(owner: str | None) -> bool | None:
    """Whether the worker ``owner`` (``host:pid[:slurm<id>]``) is alive: True/False when it ran on
    this host (its pid is checked at once), None when this host cannot tell."""
    if not owner:
        return None
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != this_host() or not parts[1].isdigit():
        return None
    pid = int(parts[1])
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return None
    # A zombie has exited. (A pid reused by another process reads as alive: callers combine this
    # with the lease, which such a process never renews.)
    return stat.rsplit(b")", 1)[-1].split()[:1] != [b"Z"]


# -- the owner ----------------------------------------------------------------------------------


class Lifecycle:
    """Every task and job transition of one job. Methods that change state say so; each is one
    compare-and-set per record (idempotent where noted)."""

    def __init__(self, backend: Backend, job_id: str, *, max_attempts: int = 3) -> None:
        self.backend = backend
        self.job_id = job_id
        self.max_attempts = max_attempts
        # Progress entries of a bulk operation, written per group when it ends (``_batched``).
        self._pending: dict[str, list[Any]] | None = None

    @classmethod
    def of(cls, backend: Backend, job_id: str, config: Mapping[str, Any]) -> Lifecycle:
        """The lifecycle of a job whose resolved config is ``config``."""
        return cls(backend, job_id, max_attempts=int(config["retry"]["max_attempts"]))

    # -- reads ----------------------------------------------------------------------------------
    def task(self, task_id: str) -> TaskStatus | None:
        rec = self.backend.state.get(keys.TASKS_TABLE, keys.task_state(self.job_id, task_id))
        return None if rec is None else TaskStatus.model_validate(rec.value)

    def tasks(self) -> list[TaskStatus]:
        """Every task record of the job; progress groups that are behind them are rewritten."""
        records = self.backend.state.scan(keys.TASKS_TABLE, keys.task_states_prefix(self.job_id))
        self.repair_progress(records)
        return [TaskStatus.model_validate(r.value) for r in records]

    def job(self) -> JobStatus:
        return job_status(self.backend, self.job_id)

    def _update(self, task_id: str, change: Callable[[TaskStatus], TaskStatus | None]) -> TaskStatus | None:
        """Apply ``change`` to the task's record by compare-and-set (re-run on conflict against the
        fresh record). Returns the stored status, or None if ``change`` changed nothing."""
        changed: list[bool] = []

        def fn(value: dict[str, Any] | None) -> dict[str, Any] | None:
            changed.clear()
            current = TaskStatus(task_id=task_id) if value is None else TaskStatus.model_validate(value)
            new = change(current)
            if new is None:
                return None
            changed.append(True)
            return new.model_dump(mode="json")

        rec = self.backend.state.update(keys.TASKS_TABLE, keys.task_state(self.job_id, task_id), fn)
        if rec is None:
            return None
        # Also when nothing changed: a write whose answer was lost (DynamoDB, retried by botocore)
        # reads as "no change" on the retry, and its entry must still reach the group.
        self._progress({task_id: prog.entry(rec.version, rec.value)})
        return TaskStatus.model_validate(rec.value) if changed else None

    # -- progress records -------------------------------------------------------------------------
    def _progress(self, entries: dict[str, list[Any]]) -> None:
        """Apply task entries to their groups' progress records (at the end of a bulk operation
        if one is under way). A failure to write is logged, not raised: the task record is
        written, and the next ``settle`` or ``refresh_job`` repairs the group."""
        if self._pending is not None:
            self._pending.update(entries)
            return
        groups: dict[int, dict[str, list[Any]]] = {}
        for tid, e in entries.items():
            groups.setdefault(prog.group_of(tid), {})[tid] = e
        for group, part in sorted(groups.items()):
            key = keys.progress_group(self.job_id, group)
            try:
                self.backend.state.update(keys.PROGRESS_TABLE, key, lambda v, part=part: prog.merge(v, part))
            except StorageError as exc:
                log.warning("progress record %s not written (the next settle repairs it): %s", key, exc)

    @contextlib.contextmanager
    def _batched(self) -> Iterator[None]:
        """Collect the progress entries of the task writes in the block; write each group once
        at its end (also when the block raises: its task writes happened)."""
        if self._pending is not None:
            yield
            return
        self._pending = {}
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending:
                self._progress(pending)

    def repair_progress(self, records: list[Record]) -> int:
        """Rewrite the progress groups that are behind the task ``records`` (all of the job's, as
        just read): a crash between a task write and its group's left them so. Returns how many
        groups were rewritten. Idempotent."""
        stored: dict[str, list[Any]] = {}
        for rec in self.backend.state.scan(keys.PROGRESS_TABLE, keys.progress_prefix(self.job_id)):
            stored.update(rec.value.get("entries") or {})
        behind: dict[str, list[Any]] = {}
        for rec in records:
            tid = rec.key.rpartition("/")[2]
            old = stored.get(tid)
            if old is None or old[0] < rec.version:
                behind[tid] = prog.entry(rec.version, rec.value)
        if behind:
            log.info("progress of %d task(s) was behind their records: rewritten", len(behind))
            self._progress(behind)
        return len({prog.group_of(t) for t in behind})

    # -- worker transitions -------------------------------------------------------------------
    def claim(
        self,
        task_id: str,
        *,
        owner: str,
        items: int,
        lease_s: float,
        honour_leases: bool,
        takeover: bool = True,
        submission: str | None = None,
        slurm_job_id: str | None = None,
    ) -> TaskStatus | None:
        """Take the task for ``owner``: returns its new status (attempt + 1), or None if it is
        already succeeded. Raises Busy if another live worker holds it (a pilot honours every live
        lease; a one-task worker takes over a lease unless ``takeover`` is False or the holder is
        seen alive on this host), if its attempts are used up, or (pilot) if it was cancelled.
        A holder that is seen dead, or whose lease ran out, counts as a failed attempt. Raises
        Paused while the job is paused, JobClosed while it is being purged (``check_open``)."""
        now = time.time()
        self.check_open()

        def change(st: TaskStatus) -> TaskStatus | None:
            if st.state == TaskState.SUCCEEDED:
                return None
            failures = st.failures
            if st.state == TaskState.RUNNING and st.owner != owner:
                alive = owner_alive(st.owner)
                live = alive is not False and st.lease_expires is not None and st.lease_expires > now
                if live and (honour_leases or not takeover or alive is True):
                    raise Busy(task_id)
                failures += 1  # its holder died (or is presumed dead) without a word
            if st.state == TaskState.FAILED and not attempts_left(st, self.max_attempts):
                raise Busy(task_id)
            if failures >= self.max_attempts and st.state == TaskState.RUNNING:
                return st.advance(
                    TaskState.FAILED,
                    failures=failures,
                    lease_expires=None,
                    finished_at=now,
                    error=f"worker {st.owner} died; attempts exhausted",
                )
            if st.state == TaskState.CANCELLED:
                raise Busy(task_id)  # cancelled: only a resubmission (queue) makes it runnable again
            if honour_leases and own_array(st, self.max_attempts):
                raise OwnArray(task_id)  # a pilot: its memory and time are not the task's
            base = TaskState.QUEUED if st.state in (TaskState.FAILED, TaskState.CANCELLED) else st.state
            st = st.model_copy(update={"state": base})
            return st.advance(
                TaskState.RUNNING,
                attempt=st.attempt + 1,
                failures=failures,
                owner=owner,
                lease_expires=now + lease_s,
                started_at=now,
                finished_at=None,
                items_total=items,
                exit_code=None,
                error=None,
                submission=submission,
                slurm_job_id=slurm_job_id,
                slurm_state=None,
                slurm_exit=None,
                cause=None,
            )

        status = self._update(task_id, change)
        if status is not None and status.state == TaskState.FAILED:
            raise Busy(task_id)
        return status

    def check_open(self) -> None:
        """Whether the job hands out work: raises Paused if it is paused, JobClosed if it is being
        purged. One read of the job record (a job without one is not checked)."""
        rec = self.backend.state.get(keys.JOBS_TABLE, keys.job_state(self.job_id))
        if rec is None:
            return
        if rec.value.get("state") == JobState.PURGING:
            raise JobClosed(f"job {self.job_id} is being purged: its tasks are not run any more")
        if rec.value.get("paused"):
            raise Paused(self.job_id)

    def renew(self, task_id: str, *, owner: str, lease_s: float, done: int, failed: int) -> None:
        """Extend ``owner``'s lease and store its progress. Raises LeaseLost if it no longer holds
        the task."""

        def change(st: TaskStatus) -> TaskStatus | None:
            if st.owner != owner or st.state != TaskState.RUNNING:
                raise LeaseLost(task_id)
            return st.advance(
                TaskState.RUNNING,
                lease_expires=time.time() + lease_s,
                items_done=done,
                items_failed=failed,
            )

        self._update(task_id, change)

    def _finish(self, task_id: str, owner: str | None, new: TaskState, **changes: Any) -> TaskStatus | None:
        def change(st: TaskStatus) -> TaskStatus | None:
            if st.state == TaskState.RUNNING and owner is not None and st.owner != owner:
                return None  # someone took over; leave their record alone
            if st.state == new == TaskState.SUCCEEDED:
                return None
            if new == TaskState.FAILED:
                changes["failures"] = st.failures + 1
            try:
                return st.advance(new, finished_at=time.time(), lease_expires=None, **changes)
            except StateError:
                return None

        return self._update(task_id, change)

    def succeeded(self, task_id: str, *, owner: str | None, items_done: int, items_failed: int) -> None:
        """The task's result is published (its ``.done`` marker exists): succeeded, whatever the
        record says by now (settled failed while this worker was slow, say). Idempotent."""

        def change(st: TaskStatus) -> TaskStatus | None:
            if st.state == TaskState.SUCCEEDED:
                return None
            return st.model_copy(
                update={
                    "state": TaskState.SUCCEEDED,
                    "items_done": items_done,
                    "items_failed": items_failed,
                    "exit_code": 0,
                    "lease_expires": None,
                    "finished_at": time.time(),
                    "updated_at": time.time(),
                }
            )

        self._update(task_id, change)

    def published(self, task_id: str) -> None:
        """A ``.done`` marker exists for the task: its record follows, whatever it says. Idempotent."""

        def change(st: TaskStatus) -> TaskStatus | None:
            if st.state == TaskState.SUCCEEDED:
                return None
            return st.model_copy(
                update={"state": TaskState.SUCCEEDED, "lease_expires": None, "updated_at": time.time()}
            )

        self._update(task_id, change)

    def failed(self, task_id: str, *, owner: str | None, error: str, exit_code: int) -> None:
        """The worker ``owner`` could not finish the task: one failed attempt."""
        self._finish(task_id, owner, TaskState.FAILED, error=error, exit_code=exit_code)

    def interrupted(self, task_id: str, *, owner: str, exit_code: int) -> None:
        """The worker stopped on a signal after saving its checkpoint: the task waits for the next
        worker (no failed attempt)."""
        self._finish(task_id, owner, TaskState.QUEUED, exit_code=exit_code, error="interrupted by signal")

    # -- submission side ------------------------------------------------------------------------
    def queue(self, task_ids: Iterable[str]) -> None:
        """Hand tasks to an executor: pending/failed/cancelled/queued → queued; a running task is
        left alone (its worker holds it). Idempotent; one durability point for the batch."""
        with self.backend.deferred_sync(), self._batched():
            for tid in task_ids:

                def change(st: TaskStatus) -> TaskStatus | None:
                    if st.state not in SUBMITTABLE or st.state == TaskState.QUEUED:
                        return None
                    if st.state == TaskState.FAILED and not attempts_left(st, self.max_attempts):
                        return None  # final (``resubmit --failed`` gives a fresh budget first)
                    return st.advance(TaskState.QUEUED)

                self._update(tid, change)

    def fresh_budget(self, only: Callable[[TaskStatus], bool] | None = None) -> list[str]:
        """Give every task that used up its attempts (and that ``only`` accepts) a fresh budget
        (``failures`` back to 0; it stays failed until it is queued): what ``slurmctl resubmit
        --failed`` and ``slurmctl retry --tasks`` do once the cause (a full disk, a bad node, a bug
        in the handler) is fixed. Returns those task ids. Idempotent."""
        out: list[str] = []
        with self._batched():
            for st in self.tasks():
                if st.state != TaskState.FAILED or attempts_left(st, self.max_attempts):
                    continue
                if only is not None and not only(st):
                    continue

                def change(cur: TaskStatus) -> TaskStatus | None:
                    if cur.state != TaskState.FAILED or attempts_left(cur, self.max_attempts):
                        return None
                    return cur.model_copy(update={"failures": 0, "updated_at": time.time()})

                if self._update(st.task_id, change) is not None:
                    out.append(st.task_id)
        return out

    def holder_died(
        self, task_id: str, owner: str, why: str, *, interrupted: bool = False, end: Element | None = None
    ) -> bool:
        """The worker ``owner`` holding the task is gone without a word: the task fails one attempt
        (or, for an end that is not the task's fault, goes back to queued). ``end``: the holder's
        Slurm element, whose state, exit code and verdict the failed record keeps. Nothing happens
        if someone else holds it by now. Returns whether the record changed."""
        facts: dict[str, Any] = {}
        if end is not None and end.state is not None:
            from slurmctl.failures.classify import classify_slurm

            verdict = classify_slurm(end.state, end.exit_code, max_rss=end.max_rss, req_mem=end.req_mem)
            facts = {
                "slurm_state": end.state.value,
                "slurm_exit": None if end.exit_code is None else "{}:{}".format(*end.exit_code),
                "cause": verdict.label,
            }

        def change(st: TaskStatus) -> TaskStatus | None:
            if st.state != TaskState.RUNNING or st.owner != owner:
                return None
            if interrupted:
                return st.advance(TaskState.QUEUED, lease_expires=None, error=why)
            return st.advance(
                TaskState.FAILED,
                failures=st.failures + 1,
                lease_expires=None,
                finished_at=time.time(),
                error=why,
                **facts,
            )

        return self._update(task_id, change) is not None

    def settle(self, facts: Facts, statuses: list[TaskStatus] | None = None) -> list[str]:
        """Bring task records in line with the scheduler's facts (see the module docstring).
        Returns the ids of tasks that no live element will run and that may run again (what
        ``resubmit`` submits). Idempotent."""
        now = time.time()
        statuses = statuses if statuses is not None else self.tasks()
        objects = self.backend.objects
        # The elements that ever claimed a task of the job (pilots run any task).
        claimed = {t.submission for t in statuses if t.submission} if facts.pool else set()
        out: list[str] = []
        for st in statuses:
            if st.state == TaskState.SUCCEEDED:
                continue
            tid = st.task_id
            if st.state == TaskState.RUNNING:
                holder = facts.elements.get(st.submission) if st.submission else None
                alive = owner_alive(st.owner)
                lease_live = st.lease_expires is not None and st.lease_expires > now
                if holder is not None and holder.ended:
                    end = holder.state  # the scheduler says the holder's own element ended
                elif alive is False and holder is not None and holder.state is not None:
                    continue  # its pid is gone, its element is listed: the end (and sacct's facts) comes next
                elif alive is False or (alive is None and not lease_live and not facts.live_cover(tid, now)):
                    end = None  # its pid is gone on this host, or its lease lapsed with no one to take it
                else:
                    continue  # a live holder, or a lease that a live pilot will take over
                if objects.exists(keys.done_marker(self.job_id, tid)):
                    self.published(tid)
                    continue
                why = f"worker {st.owner} ended" + (f" ({end.value} in Slurm)" if end else " without a word")
                self.holder_died(
                    tid,
                    st.owner or "",
                    why,
                    interrupted=end in _INTERRUPTED_ENDS,
                    end=holder if end else None,
                )
                st = self.task(tid) or st
            pool = not own_array(st, self.max_attempts)  # escalated: the pilots do not run it
            if st.state in (TaskState.QUEUED, TaskState.PENDING):
                if facts.live_cover(tid, now, pool):
                    continue
                if objects.exists(keys.done_marker(self.job_id, tid)):
                    self.published(tid)
                    continue
                # Every element of the latest submission meant to run it failed. If one of them ever
                # claimed a task (this one, or in pilot mode any), it ran and the task was put back
                # cleanly (exit 75 makes the element FAILED too): no one's fault. If none did, they
                # died before any work (a broken environment): one failed attempt, so that
                # resubmission cannot loop for ever.
                cover = facts.covering(tid, pool)
                if cover:
                    newest = max(cover, key=lambda e: e.submitted_at).submission
                    judged = [e for e in cover if e.submission == newest]
                    names = {e.name for e in judged}
                    if (
                        all(e.ended and e.state in _FAILED_ENDS for e in judged)
                        and st.submission not in names
                        and not (names & claimed)
                    ):
                        why = f"Slurm array {newest} ended {judged[0].state} before running it"
                        self._orphan_failed(tid, st, why)
                        st = self.task(tid) or st
            if st.state in (TaskState.FAILED, TaskState.CANCELLED) and objects.exists(
                keys.done_marker(self.job_id, tid)
            ):
                self.published(tid)  # published by a worker thought lost: the marker is the truth
                continue
            if st.state == TaskState.FAILED and not attempts_left(st, self.max_attempts):
                continue
            waiting = (TaskState.QUEUED, TaskState.PENDING, TaskState.FAILED, TaskState.CANCELLED)
            if st.state in waiting and not facts.live_cover(tid, now, pool):
                out.append(tid)
        return out

    def escalate(self, task_id: str, seen: TaskStatus, resources: Mapping[str, Any]) -> TaskStatus | None:
        """Store the resources the task's next run gets (``needs_escalation`` of ``seen``), marked
        with the attempt they answer. Nothing happens if the task changed since ``seen`` or was
        escalated for that attempt already. Returns the new status, or None. Idempotent."""

        def change(st: TaskStatus) -> TaskStatus | None:
            if st.state != TaskState.FAILED or st.attempt != seen.attempt:
                return None
            if (st.resources or {}).get("attempt") == st.attempt:
                return None
            return st.model_copy(
                update={"resources": {**resources, "attempt": st.attempt}, "updated_at": time.time()}
            )

        return self._update(task_id, change)

    def start_failed(self, task_id: str, seen: TaskStatus, why: str) -> None:
        """What was started to run the task (a worker process, every element meant for it) ended
        before claiming it: one failed attempt, unless the task changed since ``seen``."""
        self._orphan_failed(task_id, seen, why)

    def _orphan_failed(self, task_id: str, seen: TaskStatus, why: str) -> None:
        """Every element meant to run the queued task failed before claiming it: one failed attempt."""

        def change(st: TaskStatus) -> TaskStatus | None:
            if st.state != seen.state or st.attempt != seen.attempt:
                return None  # claimed (or changed) since the decision
            if st.state == TaskState.FAILED:  # a retry that never started
                return st.model_copy(
                    update={"failures": st.failures + 1, "error": why, "updated_at": time.time()}
                )
            if st.state != TaskState.QUEUED:
                return None
            return st.advance(TaskState.FAILED, failures=st.failures + 1, finished_at=time.time(), error=why)

        self._update(task_id, change)

    def cancel(self, message: str = "cancelled by user") -> None:
        """Every unfinished task → cancelled, then the job. Idempotent."""
        with self.backend.deferred_sync(), self._batched():
            for st in self.tasks():
                if st.state.is_terminal:
                    continue

                def change(cur: TaskStatus) -> TaskStatus | None:
                    if cur.state.is_terminal or not can_advance_task(cur.state, TaskState.CANCELLED):
                        return None
                    return cur.advance(TaskState.CANCELLED, lease_expires=None)

                self._update(st.task_id, change)
        set_job_state(self.backend, self.job_id, JobState.CANCELLED, message=message)

    # -- item retries -----------------------------------------------------------------------------
    def create_retry_tasks(self, plan: RetryManifest) -> None:
        """Create the task records (pending) of an item retry plan whose task manifests are written
        (slurmctl.retry.store), and bring a job that ended back to submitted: its retry tasks are
        work to do. Idempotent."""
        create_tasks(
            self.backend,
            self.job_id,
            (TaskStatus(task_id=tid, items_total=len(plan.items[tid])) for tid in plan.task_ids),
        )
        st = self.job()
        if st.state in (JobState.RUNNING, JobState.FAILED, JobState.SUCCEEDED):
            self.set_job(JobState.SUBMITTED)

    # -- the job --------------------------------------------------------------------------------
    def set_job(self, new: JobState, **changes: Any) -> JobStatus:
        return set_job_state(self.backend, self.job_id, new, **changes)

    def refresh_job(self, statuses: list[TaskStatus] | None = None) -> JobStatus:
        """Derive the job's state from its tasks and store it if it changed. A job with a failed
        task that may still run again is not failed."""
        st = self.job()
        if st.state in (JobState.CREATED, JobState.PARTITIONED, JobState.CANCELLED, JobState.SUCCEEDED):
            return st
        statuses = statuses if statuses is not None else self.tasks()
        new = derive_job_state(st.state, (effective_state(t, self.max_attempts) for t in statuses))
        return st if new is None else set_job_state(self.backend, self.job_id, new)


def effective_state(st: TaskStatus, max_attempts: int) -> TaskState:
    """The state that counts for the job: a failed task with attempts left is waiting to run."""
    if st.state == TaskState.FAILED and attempts_left(st, max_attempts):
        return TaskState.QUEUED
    return st.state


# -- job records (the job's state is changed here and in no other module) ----------------------


def job_status(backend: Backend, job_id: str) -> JobStatus:
    rec = backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id))
    if rec is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    return JobStatus.model_validate(rec.value)


def create_job(backend: Backend, status: JobStatus) -> None:
    """Create the job record. Raises ConflictError if it exists."""
    backend.state.create(keys.JOBS_TABLE, keys.job_state(status.job_id), status.model_dump(mode="json"))


def create_tasks(backend: Backend, job_id: str, statuses: Iterable[TaskStatus]) -> None:
    """Create the task records (pending) that do not exist yet, then every progress group once
    (a record that exists already is entered as it is). Idempotent: a submission resumed after a
    crash runs it again. Raises StorageError (unlike a transition, whose group a later settle
    repairs: the submission stops before the job is partitioned, and ``--resume`` redoes this)."""
    entries: dict[str, list[Any]] = {}
    with backend.deferred_sync():
        for status in statuses:
            key = keys.task_state(job_id, status.task_id)
            value = status.model_dump(mode="json")
            try:
                rec = backend.state.create(keys.TASKS_TABLE, key, value)
            except ConflictError:
                found = backend.state.get(keys.TASKS_TABLE, key)
                if found is None:
                    raise
                rec = found
            entries[status.task_id] = prog.entry(rec.version, rec.value)
        groups: dict[int, dict[str, list[Any]]] = {}
        for tid, e in entries.items():
            groups.setdefault(prog.group_of(tid), {})[tid] = e
        for group, part in sorted(groups.items()):  # a failure here fails the submission
            key = keys.progress_group(job_id, group)
            backend.state.update(keys.PROGRESS_TABLE, key, lambda v, part=part: prog.merge(v, part))


def set_job_state(backend: Backend, job_id: str, new: JobState, **changes: Any) -> JobStatus:
    """Move the job to ``new`` (with ``changes``) by compare-and-set. Raises StateError if illegal,
    JobNotFoundError if there is no such job."""

    def change(value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        st = JobStatus.model_validate(value)
        if st.state == new and not changes:
            return None
        return st.advance(new, **changes).model_dump(mode="json")

    rec = backend.state.update(keys.JOBS_TABLE, keys.job_state(job_id), change)
    if rec is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    return JobStatus.model_validate(rec.value)


def task_statuses(backend: Backend, job_id: str) -> list[TaskStatus]:
    """Every task record of the job (reads only)."""
    return [
        TaskStatus.model_validate(r.value)
        for r in backend.state.scan(keys.TASKS_TABLE, keys.task_states_prefix(job_id))
    ]


def worker_submission() -> str | None:
    """The Slurm element this process runs in (``<array job>_<index>``), if any."""
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and index:
        return f"{array}_{index}"
    return None


# -- job control: pause, resume, the event history, purge (the job record's side) --------------

EVENTS_KEPT = 100  # the job record keeps the newest control events (each ~100 bytes)


def actor() -> str:
    """Who runs this command, for the event history: ``user@host``."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{this_host()}"


def _with_event(st: JobStatus, what: str, detail: str, who: str | None, **changes: Any) -> dict[str, Any]:
    event = {"at": time.time(), "who": who or actor(), "what": what, "detail": detail}
    events = [*st.events, event][-EVENTS_KEPT:]
    return st.model_copy(update={"events": events, "updated_at": time.time(), **changes}).model_dump()


def _change_job(
    backend: Backend, job_id: str, change: Callable[[JobStatus], dict[str, Any] | None]
) -> tuple[JobStatus, bool]:
    """Apply ``change`` to the job record by compare-and-set. Returns (the stored status, whether
    it changed). Raises JobNotFoundError."""
    changed: list[bool] = []

    def fn(value: dict[str, Any] | None) -> dict[str, Any] | None:
        changed.clear()
        if value is None:
            raise JobNotFoundError.in_backend(job_id, backend.description)
        new = change(JobStatus.model_validate(value))
        if new is not None:
            changed.append(True)
        return new

    rec = backend.state.update(keys.JOBS_TABLE, keys.job_state(job_id), fn)
    if rec is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    return JobStatus.model_validate(rec.value), bool(changed)


def set_paused(
    backend: Backend, job_id: str, paused: bool, *, who: str | None = None, detail: str = ""
) -> tuple[JobStatus, bool]:
    """Pause (or resume) the job: its ``paused`` flag, with a ``pause``/``resume`` event, in one
    compare-and-set. Idempotent: a job already in that state is left alone (no event). Returns
    (its status, whether it changed). Raises StateError to pause a finished job."""

    def change(st: JobStatus) -> dict[str, Any] | None:
        if st.paused == paused:
            return None
        if paused and st.state.is_terminal:
            raise StateError(f"job {job_id} is {st.state.value}: there is no work to pause")
        return _with_event(st, "pause" if paused else "resume", detail, who, paused=paused)

    return _change_job(backend, job_id, change)


def record_event(
    backend: Backend, job_id: str, what: str, detail: str = "", *, who: str | None = None
) -> None:
    """Append an event to the job's history (a control operation that changes nothing else)."""
    _change_job(backend, job_id, lambda st: _with_event(st, what, detail, who))


def begin_purge(backend: Backend, job_id: str, *, who: str | None = None, detail: str = "") -> JobStatus:
    """Mark the job ``purging`` (no task is claimed from then on): the first step of a purge, so
    that a crash part-way leaves a job that a re-run of ``purge`` finishes. Idempotent."""

    def change(st: JobStatus) -> dict[str, Any] | None:
        if st.state == JobState.PURGING:
            return None
        st.advance(JobState.PURGING)
        return _with_event(st, "purge", detail, who, state=JobState.PURGING)

    return _change_job(backend, job_id, change)[0]


def forget_job(backend: Backend, job_id: str, *, tables: Iterable[str] = ()) -> int:
    """The last step of a purge: delete the job's task records, progress records, its records in
    ``tables`` (keys ``<job>/...``), then the job record itself. Returns how many records were
    deleted. Idempotent (a re-run after a crash deletes what is left)."""
    n = 0
    for table, prefix in (
        (keys.TASKS_TABLE, keys.task_states_prefix(job_id)),
        (keys.PROGRESS_TABLE, keys.progress_prefix(job_id)),
        *((t, f"{job_id}/") for t in tables),
    ):
        for rec in backend.state.scan(table, prefix):
            backend.state.delete(table, rec.key)
            n += 1
    if backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id)) is not None:
        backend.state.delete(keys.JOBS_TABLE, keys.job_state(job_id))
        n += 1
    return n
