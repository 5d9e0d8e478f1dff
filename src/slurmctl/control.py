"""Job control: ``slurmctl pause`` / ``resume`` and ``slurmctl purge``.

Pause: the lifecycle sets the job record's ``paused`` flag (compare-and-set, with an event in the
job's history); from then on ``Lifecycle.claim`` refuses, and workers wait for the resume (a task
already claimed runs to its end). Then ONE scheduler command holds the pending elements
(``scontrol hold`` of every array of the job; the local executor has nothing to hold: its runner's
workers wait at the claim), and rate-limit tokens stop (:func:`slurmctl.ratelimit.set_paused`).
Resume undoes the three in the same order.

Purge deletes everything the backend holds of a job, crash-safe and idempotent: the job is marked
``purging`` first (no claim succeeds from then on), then its objects are deleted (the local
directories with them), then the SQS messages that name it, then its records — rate-limit buckets,
tasks, progress — and the job record last. A purge that stops part-way leaves a ``purging`` job (or,
after the job record, nothing): running ``purge`` again finishes it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurmctl import lifecycle
from slurmctl.errors import JobNotFoundError, StateError, StorageError
from slurmctl.model.core import JobStatus
from slurmctl.model.states import JobState, TaskState
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

# Objects ``purge --keep-results`` keeps: what ``slurmctl results JOB`` reads (the retry manifests
# name the retry tasks; their batches are not read).
_RESULT_PARTS = ("job.json", "config.json", "tasks/", "results/", "retries/", "output/")
# State tables of a job besides tasks and progress (keys ``<job>/...``): its rate-limit buckets.
_JOB_TABLES = ("limits", "alerts")
# SQS queues that may carry a job's messages (a message body names its job as "job" or "job_id").
_QUEUES = ("work", "retry")


def refuse_if_paused(status: JobStatus, doing: str) -> None:
    """Raise StateError (exit 5) naming ``slurmctl resume`` when the job is paused: nothing new is
    submitted while it is (``resubmit``, ``retry``). Called before anything changes."""
    if status.paused:
        job_id = status.job_id
        raise StateError(
            f"job {job_id} is paused: nothing is {doing} while it is paused",
            hint=f"`slurmctl resume {job_id}` lets its work run again; then run the command again",
        )


def _executor(backend: Backend, job_id: str) -> Any:
    from slurmctl.coordinator import load_job
    from slurmctl.executors import executor_for

    return executor_for(backend, load_job(backend, job_id))


def pause(backend: Backend, job_id: str, *, resume: bool = False) -> list[str]:
    """Pause (``resume``: resume) the job; returns what was done, one line each. Idempotent: the
    hold/release is issued again (one scheduler command), the flag and the event are not."""
    from slurmctl.ratelimit import bucket_store, set_paused

    executor = _executor(backend, job_id)
    _, changed = lifecycle.set_paused(backend, job_id, not resume)
    verb = "resumed" if resume else "paused"
    done = [f"job {job_id} {verb}" if changed else f"job {job_id} was already {verb}"]
    held = executor.hold(release=resume)
    if held:
        done.append(held)
    set_paused(bucket_store(backend), job_id, not resume)
    done.append(("issuing" if resume else "stopped") + " rate-limit tokens to its workers")
    if not resume:
        done.append("running tasks finish; no worker claims another until `slurmctl resume`")
    return done


@dataclass
class PurgePlan:
    """What a purge of ``job_id`` deletes (and keeps)."""

    job_id: str
    status: JobStatus | None
    objects: list[tuple[str, int]] = field(default_factory=list)  # (key, bytes) to delete
    kept: list[tuple[str, int]] = field(default_factory=list)  # (key, bytes) kept (--keep-results)
    records: dict[str, int] = field(default_factory=dict)  # table -> records to delete
    local_dirs: list[Path] = field(default_factory=list)  # directories of the job outside the store
    live: str | None = None  # why the job is live (None: it is not)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.objects)

    @property
    def empty(self) -> bool:
        return not (self.objects or self.kept or any(self.records.values()) or self.local_dirs)

    def summary(self) -> str:
        rec = ", ".join(f"{n} {t}" for t, n in self.records.items() if n) or "none"
        text = f"{len(self.objects)} object(s), {_size(self.bytes)}; records: {rec}"
        if self.local_dirs:
            text += "; local directories: " + ", ".join(str(d) for d in self.local_dirs)
        if self.kept:
            text += f"; keeps {len(self.kept)} result object(s), {_size(sum(s for _, s in self.kept))}"
        return text


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _local_root(backend: Backend) -> Path | None:
    root = backend.spec.get("root") if backend.spec.get("kind") == "local" else None
    return Path(root) if root else None


def _job_dir(root: Path, job_id: str) -> Path:
    """The job's directory ``<root>/jobs/<job>``, resolved; StateError unless it is a child of
    ``<root>/jobs`` (the only directories purge deletes)."""
    jobs = (root / keys.jobs_root()).resolve()
    d = (root / keys.job_prefix(job_id)).resolve()
    if d.parent != jobs:
        raise StateError(f"job {job_id!r}: its directory {d} is not in {jobs}; purge deletes nothing there")
    return d


def plan_purge(backend: Backend, job_id: str, *, keep_results: bool = False) -> PurgePlan:
    """List what a purge deletes. Reads only. Raises JobNotFoundError if the backend holds nothing
    of the job."""
    rec = backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id))
    plan = PurgePlan(job_id, None if rec is None else JobStatus.model_validate(rec.value))
    prefix = keys.job_prefix(job_id)
    for key, size in backend.objects.list_sizes(prefix):
        keep = keep_results and key[len(prefix) :].startswith(_RESULT_PARTS)
        (plan.kept if keep else plan.objects).append((key, size))
    for table, scan in (
        (keys.TASKS_TABLE, keys.task_states_prefix(job_id)),
        (keys.PROGRESS_TABLE, keys.progress_prefix(job_id)),
        *((t, f"{job_id}/") for t in _JOB_TABLES),
    ):
        plan.records[table] = len(backend.state.scan(table, scan))
    plan.records[keys.JOBS_TABLE] = int(rec is not None)
    # A job whose backend is remote writes its logs (runner, Slurm) under the default local root.
    if _local_root(backend) is None:
        from slurmctl.storage.open import default_root

        logs = _job_dir(default_root(), job_id)
        if logs.exists():
            plan.local_dirs.append(logs)
    if plan.empty:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    plan.live = _live(backend, plan)
    return plan


def _live(backend: Backend, plan: PurgePlan) -> str | None:
    """Why the job is live (not finished, or tasks under a live lease, or its local runner alive),
    or None."""
    st = plan.status
    if st is None or st.state == JobState.PURGING:
        return None
    if not st.state.is_terminal:
        return f"it is {st.state.value}"
    now = time.time()
    held = [
        t
        for t in lifecycle.task_statuses(backend, plan.job_id)
        if t.state == TaskState.RUNNING and (t.lease_expires or 0) > now
    ]
    if held:
        return f"{len(held)} task(s) are held by live workers ({held[0].owner}, ...)"
    if st.runner_pid and st.runner_host == lifecycle.this_host():
        with contextlib.suppress(StorageError, StateError):
            if _executor(backend, plan.job_id).runner_alive():
                return f"its local runner (pid {st.runner_pid}) is alive"
    return None


@dataclass
class PurgeReport:
    objects: int = 0
    bytes: int = 0
    records: int = 0
    messages: int = 0
    kept: int = 0

    def summary(self) -> str:
        text = f"freed {self.objects} object(s) ({_size(self.bytes)}), {self.records} record(s)"
        text += f", {self.messages} queue message(s)"
        return text + (f"; kept {self.kept} result object(s)" if self.kept else "")


def purge(
    backend: Backend, plan: PurgePlan, *, force: bool = False, keep_results: bool = False
) -> PurgeReport:
    """Delete what ``plan`` lists (see the module docstring for the order). A live job is refused
    (StateError, exit 5) unless ``force``, which cancels it first and waits for its workers to
    stop (at most two leases). Idempotent."""
    job_id = plan.job_id
    if plan.live and not force:
        raise StateError(
            f"job {job_id} is live: {plan.live}; purge refuses to delete a live job",
            hint=f"`slurmctl cancel {job_id}` first, or `slurmctl purge {job_id} --force` (cancels it)",
        )
    if plan.status is not None:
        if plan.live:
            _stop(backend, job_id)
        lifecycle.begin_purge(backend, job_id, detail="keep results" if keep_results else "")
    report = PurgeReport(kept=len(plan.kept))
    for key, size in plan.objects:
        backend.objects.delete(key)
        report.objects += 1
        report.bytes += size
    delete_versions = getattr(backend.objects, "delete_versions", None)
    if delete_versions is not None:  # S3: the noncurrent versions of what was deleted
        kept = {key for key, _ in plan.kept}
        delete_versions(keys.job_prefix(job_id), kept.__contains__)
    root = _local_root(backend)
    if root is not None and not keep_results:  # the job's directory, with what is not an object
        shutil.rmtree(_job_dir(root, job_id), ignore_errors=True)
    elif root is not None:  # the directories left empty
        for d in sorted(_job_dir(root, job_id).glob("**/"), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
    for d in plan.local_dirs:
        shutil.rmtree(d, ignore_errors=True)
    report.messages = _purge_messages(backend, job_id)
    report.records = lifecycle.forget_job(backend, job_id, tables=_JOB_TABLES)
    if root is not None:  # the state directories the records lived in
        for table in (keys.TASKS_TABLE, keys.PROGRESS_TABLE, *_JOB_TABLES):
            shutil.rmtree(root / "state" / table / job_id, ignore_errors=True)
    return report


def _stop(backend: Backend, job_id: str) -> None:
    """``--force``: cancel the job's work, then wait until the workers that held tasks are gone
    (their pid, on this host) or their leases lapsed, so that none writes after the purge."""
    holders = [
        t
        for t in lifecycle.task_statuses(backend, job_id)
        if t.state == TaskState.RUNNING and t.lease_expires
    ]
    executor = _executor(backend, job_id)
    executor.cancel()
    executor.lifecycle.cancel("cancelled by purge --force")
    deadline = max((t.lease_expires or 0.0 for t in holders), default=0.0)
    while time.time() < deadline and any(lifecycle.owner_alive(t.owner) is not False for t in holders):
        time.sleep(0.5)


def _purge_messages(backend: Backend, job_id: str) -> int:
    """Delete the SQS messages that name the job (aws backend). SQS cannot list a queue: each
    visible message is received once; the job's are deleted, the others made visible again at
    once (that counts one receive towards their dead-letter limit). Returns how many were
    deleted."""
    if backend.spec.get("kind") != "aws":
        return 0
    from slurmctl.storage.aws.queue import SqsWorkQueue
    from slurmctl.storage.aws.settings import AwsSettings

    settings = AwsSettings.from_spec(backend.spec)
    deleted = 0
    for name in _QUEUES:
        queue = SqsWorkQueue(settings, name)
        try:
            depth = queue.approximate_depth()
        except StorageError:
            continue  # no such queue (bootstrap --no-queues): nothing to delete
        others = []
        seen = 0
        while seen < depth:
            batch = queue.receive(max_messages=10, visibility_s=60)
            if not batch:
                break
            for m in batch:
                seen += 1
                if job_id in (m.body.get("job"), m.body.get("job_id")):
                    queue.ack(m)
                    deleted += 1
                else:
                    others.append(m)
        for m in others:
            queue.nack(m)
    return deleted
