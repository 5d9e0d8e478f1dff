"""The store side of item retries: read the facts the planner needs, write its plan durably.

Order of writes (each step idempotent, so a crash anywhere is repaired by running again):

1. the retry manifest ``jobs/<job>/retries/<n>.json``, created if absent: the commit point; a
   planner that loses the race for number n reads the manifests again and plans again;
2. the retry batches (``batches/r<n>-<k>.jsonl``: the items' records, copied from the batches of
   the tasks that failed them) and the task manifests: a function of the manifest, so any process
   may write them again with the same bytes (``ensure``);
3. the task records (pending), by the lifecycle (``Lifecycle.create_retry_tasks``);
4. on the aws backend, when pilots run the job's tasks: one SQS message per retry task, delayed by
   the backoff (slurmctl.retry.queue). A crash before it loses only the messages: pilots find the
   retry tasks through the manifests too.

Retry tasks get the next task ids after the job's last (``t<index>``, index >= the job's task
count); the manifest lists them. Their not-before time is in the manifest: the runner (local) and
the watch loop (Slurm) submit them once it has passed.
"""

from __future__ import annotations

import io
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from slurmctl.coordinator import load_job
from slurmctl.errors import (
    ChecksumMismatchError,
    ConflictError,
    ObjectNotFoundError,
    SlurmctlError,
    StorageError,
)
from slurmctl.lifecycle import Lifecycle, job_status, task_statuses
from slurmctl.model.core import Batch, Job, Task, TaskStatus, task_id
from slurmctl.model.manifests import DoneMarker, RetryManifest
from slurmctl.model.states import JobState, TaskState
from slurmctl.retry.plan import Failure, Plan, Policy, plan
from slurmctl.retry.queue import announce, uses_queue
from slurmctl.retry.tasks import manifests as read_manifests
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

log = logging.getLogger(__name__)

PAUSED_POLL_S = 1.0  # how often a runner looks again whether a paused job was resumed
PASS_SHARE = 10.0  # an automatic planning pass waits at least this many times the last one took


def _index(tid: str) -> int:
    return int(tid[1:])


def manifests(backend: Backend, job_id: str) -> list[RetryManifest]:
    """Every retry manifest of the job, by number."""
    return read_manifests(backend.objects, job_id)


@dataclass
class History:
    """What the retry manifests say about items: how often each ran, the last task holding it."""

    tries: dict[int, int] = field(default_factory=dict)  # item -> runs (absent: 1)
    latest: dict[int, int] = field(default_factory=dict)  # item -> index of the last retry task
    planned: set[str] = field(default_factory=set)  # tasks whose failures a plan took
    retry_tasks: dict[str, list[int]] = field(default_factory=dict)  # retry task -> its items
    next_index: int = 0

    @classmethod
    def of(cls, job: Job, ms: Iterable[RetryManifest]) -> History:
        h = cls(next_index=job.tasks)
        for m in ms:
            h.planned.update(m.sources)
            for tid, ids in m.items.items():
                h.retry_tasks[tid] = ids
                idx = _index(tid)
                h.next_index = max(h.next_index, idx + 1)
                for i in ids:
                    h.tries[i] = h.tries.get(i, 1) + 1
                    h.latest[i] = idx
        return h


def current_failures(
    backend: Backend, job_id: str, statuses: Iterable[TaskStatus], history: History, *, unplanned: bool
) -> tuple[list[Failure], list[str]]:
    """The latest failure of every failed item of a succeeded task that no later retry task holds
    (``unplanned``: only of the tasks no plan took yet). Returns them and the tasks read."""
    out: list[Failure] = []
    read: list[str] = []
    objects = backend.objects
    for st in statuses:
        tid = st.task_id
        if st.state != TaskState.SUCCEEDED or not st.items_failed or (unplanned and tid in history.planned):
            continue
        marker = DoneMarker.from_json(objects.get(keys.done_marker(job_id, tid)), where=f"{tid}/.done")
        read.append(tid)
        # The published attempt's error file, by its key (not through the result manifest and its
        # sha256: a third read per task; ``results`` verifies every file before merging).
        try:
            data = objects.get(keys.result_errors(job_id, tid, marker.attempt))
        except ObjectNotFoundError:
            continue
        idx = _index(tid)
        latest = history.latest
        for line in data.splitlines():
            try:
                err = json.loads(line)
                item = err["item_id"]
            except (ValueError, KeyError, TypeError):
                log.warning("task %s: a damaged line of its error file is not planned", tid)
                continue
            if latest.get(item, -1) > idx:
                continue  # a later retry task holds it
            out.append(Failure(item, err.get("category") or "unknown", err.get("type") or "", tid))
    return out, read


def _batch_lines(backend: Backend, task: Task) -> list[bytes]:
    """The lines of a task's batch (sha256 checked), newline-terminated."""
    b = task.batch
    if b.key is None:  # a reference batch: bytes of the input file
        from slurmctl.worker.batchfile import read_reference

        data = read_reference(b)
    else:
        data = backend.objects.get_verified(b.key, b.sha256)
    return [line if line.endswith(b"\n") else line + b"\n" for line in io.BytesIO(data)]


def materialize(backend: Backend, job_id: str, doc: RetryManifest) -> None:
    """Write the retry batches and task manifests of ``doc`` (the same bytes every time)."""
    objects = backend.objects
    records: dict[int, bytes] = {}
    for src, ids in doc.origin.items():
        task = Task.from_json(objects.get(keys.task_manifest(job_id, src)), where=src)
        lines = _batch_lines(backend, task)
        pos = {i: k for k, i in enumerate(task.batch.item_ids)} if task.batch.item_ids is not None else None
        for i in ids:
            records[i] = lines[pos[i] if pos is not None else i - task.batch.first_item]
    for k, tid in enumerate(doc.task_ids):
        ids = doc.items[tid]
        data = b"".join(records[i] for i in ids)
        batch_id = f"r{doc.number:04d}-{k:05d}"
        info = objects.put(keys.batch(job_id, batch_id), data)
        batch = Batch(
            batch_id=batch_id,
            index=_index(tid),
            key=info.key,
            first_item=0,
            items=len(ids),
            bytes=info.size,
            sha256=info.sha256,
            source=f"retry {doc.number}",
            first_line=1,
            last_line=len(ids),
            item_ids=ids,
        )
        task = Task(task_id=tid, job_id=job_id, index=_index(tid), batch=batch)
        objects.put(keys.task_manifest(job_id, tid), task.to_json())


def ensure(backend: Backend, lc: Lifecycle, ms: Iterable[RetryManifest]) -> None:
    """Finish the plans a crash interrupted: a retry manifest whose tasks have no records yet."""
    for m in ms:
        if m.items and lc.task(m.task_ids[-1]) is None:
            materialize(backend, lc.job_id, m)
            lc.create_retry_tasks(m)


def plan_retries(
    backend: Backend,
    job_id: str,
    *,
    by_hand: bool = False,
    categories: Iterable[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    now: float | None = None,
    rng: Callable[[], float] = random.random,
    statuses: list[TaskStatus] | None = None,
) -> tuple[Plan, RetryManifest | None]:
    """Plan the retry of the job's current failures and (unless ``dry_run``, or nothing to retry)
    record it: manifest, retry batches, task manifests, task records. Returns the plan and its
    manifest. Automatic (``by_hand`` False) reads only tasks no plan took yet and plans nothing
    for a cancelled or purging job. ``dry_run`` reads only (no repair of progress records)."""
    if not by_hand and job_status(backend, job_id).state in (JobState.CANCELLED, JobState.PURGING):
        return Plan(), None
    job = load_job(backend, job_id)
    lc = Lifecycle.of(backend, job_id, job.config)
    policy = Policy.from_config(job.config)
    cats = list(categories) if categories is not None else None
    while True:
        ms = manifests(backend, job_id)
        if not dry_run:
            ensure(backend, lc, ms)
        history = History.of(job, ms)
        if statuses is None:  # a dry run reads only: no repair of the progress records
            statuses = task_statuses(backend, job_id) if dry_run else lc.tasks()
        failures, read = current_failures(backend, job_id, statuses, history, unplanned=not by_hand)
        p = plan(failures, history.tries, policy, by_hand=by_hand, categories=cats, force=force, rng=rng)
        if dry_run or not (p.tasks or (read and not by_hand)):
            return p, None  # (an automatic pass records the tasks it read even if none retries)
        created = now if now is not None else time.time()
        tids = [task_id(history.next_index + k) for k in range(len(p.tasks))]
        number = max((m.number for m in ms), default=-1) + 1
        doc = RetryManifest(
            job_id=job_id,
            number=number,
            created_at=created,
            reason="slurmctl retry" if by_hand else "automatic item retry",
            task_ids=tids,
            items=dict(zip(tids, p.tasks, strict=True)),
            origin=p.origin,
            sources=read,
            categories=p.categories,
            causes=p.causes,
            skipped=p.skipped,
            round=p.round,
            delay_s=round(p.delay_s, 3),
            not_before=created + p.delay_s,
        )
        try:
            backend.objects.put_if_absent(keys.retry_manifest(job_id, number), doc.to_json())
        except ConflictError:
            statuses = None  # another planner (or a resubmission) took number n: look again
            continue
        if not tids:
            return p, doc
        materialize(backend, job_id, doc)
        lc.create_retry_tasks(doc)
        if uses_queue(backend, job.config):  # aws, pilots: the SQS retry queue hands them out
            announce(backend, job_id, tids, doc.not_before)
        log.info(
            "retry %d: %d item(s) in %d task(s) %s..%s, not before +%.1f s",
            number,
            p.items,
            len(tids),
            tids[0],
            tids[-1],
            p.delay_s,
        )
        return p, doc


_TO_RUN = (TaskState.PENDING, TaskState.QUEUED)


def waiting(backend: Backend, job_id: str) -> dict[str, float]:
    """The job's retry tasks still to run (record pending or queued; a finished one is never
    submitted again), each with its not-before time (unix time)."""
    ms = [m for m in manifests(backend, job_id) if m.items]
    if not ms:
        return {}
    todo = {t.task_id for t in task_statuses(backend, job_id) if t.state in _TO_RUN}
    return {tid: m.not_before for m in ms for tid in m.task_ids if tid in todo}


_FOR_GOOD = (ChecksumMismatchError, ObjectNotFoundError)  # storage errors a retry does not mend


class AutoRetry:
    """Item retries during a run (the local runner, the watch loop): ``step`` plans the failures
    of newly finished tasks (at most every ``every_s``, and at most every ``PASS_SHARE`` times
    what the last pass took) and returns the retry tasks whose
    not-before time has passed, none while the job is paused (they wait for ``resume``).
    ``wave`` (the local runner): the caller says when a task finished (``finished``); after the
    first pass (tasks may have finished before the caller started) the next waits for ``wave``
    finished tasks (0: no such wait, the watch loop)."""

    def __init__(self, backend: Backend, job_id: str, *, every_s: float = 2.0, wave: int = 0) -> None:
        self.backend, self.job_id, self.every_s = backend, job_id, every_s
        self.wave = wave
        self.unplanned = wave  # tasks finished since the last pass (the first pass: any number)
        self.waiting = waiting(backend, job_id)  # retry task -> not before (unix time)
        self.paused = False  # the job was paused when a retry task was last due
        self._next = 0.0
        self.off = False  # planning failed for good (logged once): no more plans in this process

    def step(self, *, force: bool = False) -> list[str]:
        """Plan if due (or ``force``); return the waiting retry tasks that may run now."""
        mono = time.monotonic()
        if not self.off and (force or (self.unplanned >= self.wave and mono >= self._next)):
            self._next = mono + self.every_s
            try:
                _, doc = plan_retries(self.backend, self.job_id)
            except SlurmctlError as exc:  # e.g. the input changed since submission
                if isinstance(exc, StorageError) and not isinstance(exc, _FOR_GOOD):
                    raise  # an outage: the caller waits and calls again
                self._turn_off(exc)
                doc = None
            self.unplanned = 0
            # A pass reads every task record (0.3-0.4 s for 10k tasks on the local backend): at
            # most a tenth of the time goes to planning.
            self._next = max(self._next, mono + PASS_SHARE * (time.monotonic() - mono))
            if doc is not None:
                for tid in doc.task_ids:
                    self.waiting[tid] = doc.not_before
        now = time.time()
        due = sorted(t for t, at in self.waiting.items() if at <= now)
        if due:
            rec = self.backend.state.get(keys.JOBS_TABLE, keys.job_state(self.job_id))
            self.paused = bool(rec is not None and rec.value.get("paused"))
            if self.paused:
                return []
        for t in due:
            del self.waiting[t]
        return due

    def finished(self, n: int = 1) -> None:
        """``n`` tasks finished (``wave``)."""
        self.unplanned += n

    def _turn_off(self, exc: SlurmctlError) -> None:
        self.off = True
        log.error("job %s: item retries are off for this process: planning failed: %s", self.job_id, exc)

    def next_due(self) -> float | None:
        """Seconds until the next waiting retry task may run (while the job is paused: until the
        job record is worth reading again), or None if none waits."""
        if not self.waiting:
            return None
        return PAUSED_POLL_S if self.paused else max(0.0, min(self.waiting.values()) - time.time())
