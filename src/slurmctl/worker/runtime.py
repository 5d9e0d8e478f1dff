"""The worker: the one entry point every executor launches (``slurmctl worker``).

A worker runs one task (``--task``, or the array element ``SLURM_ARRAY_TASK_ID + --array-offset``)
or, as a *pilot*, claims tasks one after another until none is left. For each task it:

1. claims the task in the state store (compare-and-set; a running task held by a live lease of
   another worker is left alone), attempt += 1;
2. restores the item checkpoint (node-local SQLite): the union of an earlier attempt's file on this
   node and the runs of the checkpoint segments in the store;
3. streams the batch (sha256 verified) from the first item no run of the checkpoint covers, calls
   the handler per item (chunks sized to ~20-100 ms) or per batch (1,000 records), records each
   chunk as one run (its rows, its failed items' errors) in the checkpoint, commits in batches,
   heartbeats the lease from a thread (a lost lease stops the loop after the chunk), and every
   ``checkpoint_s`` ships the runs committed since the last time to the store as one segment;
4. publishes: result rows, then errors, then the result manifest (rows, sha256, timings), then the
   ``.done`` marker (create-if-absent: exactly one attempt is published), then state SUCCEEDED.

SIGTERM/SIGINT (Slurm preemption, time limit, ``--signal``): the current item finishes, the
checkpoint is committed and snapshotted, the task goes back to ``queued``, and the worker exits
with ``EXIT_RESUME`` (75) — "resume me".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from slurmctl.errors import (
    EXIT_FAILED,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_RESUME,
    ConflictError,
    HandlerError,
    SlurmctlError,
    StateError,
)
from slurmctl.failures.classify import classify_exception
from slurmctl.fsutil import sha256_file
from slurmctl.lifecycle import (
    Busy,
    JobClosed,
    LeaseLost,
    Lifecycle,
    OwnArray,
    Paused,
    attempts_left,
    worker_submission,
)
from slurmctl.model.core import Job, Task, TaskStatus
from slurmctl.model.manifests import DoneMarker, ResultManifest
from slurmctl.model.states import TaskState
from slurmctl.obs import logs as obslogs
from slurmctl.obs.metrics import StoreStats, TaskMetrics, timed_store
from slurmctl.ratelimit.runtime import limits_for
from slurmctl.storage import keys
from slurmctl.storage.base import Backend
from slurmctl.worker.checkpoint import Checkpoint, ErrorRow
from slurmctl.worker.context import TaskContext
from slurmctl.worker.handler import LoadedHandler, load_handler, rows_of

# A chunk of items whose rows exceed this many bytes makes the next chunk smaller.
_CHUNK_BYTES = 16 << 20

# How often a worker that found its job paused looks at the job record again.
PAUSE_POLL_S = 2.0


log = logging.getLogger("slurmctl.worker")

# When this process started (close enough: the module is imported at start-up): the end of the
# Slurm element's queue wait.
_PROCESS_START = time.time()


class Interrupted(Exception):
    """A stop signal arrived; the checkpoint is safe."""


def scratch_root() -> Path:
    """Node-local scratch: $SLURMCTL_SCRATCH, Slurm's per-job $TMPDIR, or /tmp."""
    return Path(os.environ.get("SLURMCTL_SCRATCH") or os.environ.get("TMPDIR") or "/tmp")


def scratch_dir() -> Path:
    """This user's directory in node-local scratch, ``slurmctl-<uid>``: a /tmp shared by the users
    of a node holds one per user (created private), not one that the first user owns."""
    path = scratch_root() / f"slurmctl-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def worker_id() -> str:
    slurm = os.environ.get("SLURM_JOB_ID")
    return f"{socket.gethostname()}:{os.getpid()}" + (f":slurm{slurm}" if slurm else "")


# The worker's JSON codec is msgspec: it decodes and encodes an 80-byte record in 0.66 µs, the json
# module in 4.9 µs (2-core VM, 2026-11-23), which is most of a no-op item's cost. Differences from json.dumps,
# documented in docs/architecture.md: compact row text ({"a":1}), NaN/Infinity are written as null,
# datetimes as RFC 3339 strings; unsupported objects raise TypeError (a permanent item failure).
# Batch lines are read with the decoder that defines a valid record (partition/validity.py), the one
# the partitioner accepts lines by: every line it accepted decodes here, to the value json.loads gives
# (docs/partitioning.md, "Records and rejects").
from slurmctl.partition.validity import record_decoder  # noqa: E402  (kept next to its one use)

_decode_line = record_decoder()


def _row_encoder() -> Callable[[Any], bytes]:
    """Return a row encoder for one task loop: obj -> UTF-8 JSON bytes (kept as bytes: the
    checkpoint and the result file store bytes, so rows are never decoded to str). Raises
    TypeError/OverflowError for what JSON cannot hold."""
    return msgspec.json.Encoder().encode


# What records an item failure: ``record(item_id, exc)`` -> the checkpoint's row for it.
_ErrorRecorder = Callable[[int, BaseException], ErrorRow]


def error_recorder(
    attempt: int, classify: Callable[[BaseException], object] | None = None, ids: list[int] | None = None
) -> _ErrorRecorder:
    """Return ``record(item_id, exc)``: the checkpoint's row of an item that failed with ``exc``
    in ``attempt`` on this host (category by ``slurmctl.failures.classify``, ``classify`` being
    the job's own function, if any), stamped with the host, the Slurm job id and the time. Each
    failure is logged (warning, with the item: ``ids[item_id]`` for a retry batch's positions)."""
    host, slurm_job_id = socket.gethostname(), os.environ.get("SLURM_JOB_ID")

    def record(item_id: int, exc: BaseException) -> ErrorRow:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
        category = classify_exception(exc, classify).category
        message = str(exc)[:2000]
        iid = item_id if ids is None else ids[item_id]
        log.warning(
            "item %d failed (%s): %s: %.200s", iid, category, type(exc).__name__, message, extra={"item": iid}
        )
        return (item_id, category, type(exc).__name__, message, tb, attempt, host, slurm_job_id, time.time())

    return record


def _item_call(handler: LoadedHandler) -> Callable[[Any, TaskContext], Any]:
    """Return ``f(record, ctx)`` calling a per-item handler in its own shape: a generator's rows
    collected into a list, ``ctx`` dropped if the handler does not take it. Handlers of the usual
    shape are returned as they are, so the item loop makes one call and tests no flags per item."""
    fn = handler.function
    if handler.is_generator:
        if handler.wants_ctx:

            def gen_ctx(record: Any, ctx: TaskContext) -> Any:
                return list(fn(record, ctx))

            return gen_ctx

        def gen(record: Any, _ctx: TaskContext) -> Any:
            return list(fn(record))

        return gen
    if handler.wants_ctx:
        return fn

    def no_ctx(record: Any, _ctx: TaskContext) -> Any:
        return fn(record)

    return no_ctx


class _Stop:
    """Set by SIGTERM/SIGINT/SIGUSR1; checked before each item.

    The signals received are kept in a list so the item loop can test a local reference to it
    (``if flag:``, the cheapest test there is) instead of an attribute per item."""

    def __init__(self) -> None:
        self.flag: list[int] = []

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return bool(self.flag)

    @property
    def signal(self) -> int | None:
        """The first stop signal received, if any."""
        return self.flag[0] if self.flag else None

    def request(self, signum: int) -> None:
        """Ask the worker to stop after the current item (what the signal handler does)."""
        self.flag.append(signum)

    def install(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.request(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not the main thread (tests)
                signal.signal(sig, handler)


class _Progress:
    """Items done (resumed included) and failed so far; written by the item loop once per run of
    items, read by the heartbeat thread."""

    __slots__ = ("done", "failed")

    def __init__(self, done: int) -> None:
        self.done = done
        self.failed = 0


def pending_runs(first: int, items: int, done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the half-open id ranges ``[a, b)`` of ``[first, first + items)`` that the sorted,
    inclusive ``done`` ranges do not cover, in order. Pure."""
    runs: list[tuple[int, int]] = []
    pos, end = first, first + items
    for a, b in done:
        if b < pos:
            continue
        if a >= end:
            break
        if a > pos:
            runs.append((pos, a))
        pos = max(pos, b + 1)
    if pos < end:
        runs.append((pos, end))
    return runs


# A chunk function: ``handle_chunk(pos, n)`` handles up to ``n`` items from item id ``pos`` (the next
# lines of the batch file) and returns (first id not handled, their rows, their failed items'
# errors); fewer than ``n`` handled means a stop signal or the end of the file.
_Chunker = Callable[[int, int], tuple[int, list[bytes], list[ErrorRow]]]
# Records per call of a batch handler (the last call of a run may get fewer).
_BATCH_RECORDS = 1000


class _Heartbeat(threading.Thread):
    """Renews the task's lease and publishes progress counters every ``every_s``."""

    def __init__(self, worker: Worker, task_id: str, progress: Callable[[], tuple[int, int]]) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{task_id}")
        self.worker = worker
        self.task_id = task_id
        self.progress = progress
        self.stop_event = threading.Event()
        self.lost = False

    def run(self) -> None:
        every = max(0.2, min(self.worker.heartbeat_s, self.worker.lease_s / 3))
        # The lease runs out lease_s after the last renewal that got through: past 80% of that
        # without one, another worker may take the task any moment, so this attempt gives it up
        # (the item loop sees ``lost`` and stops without publishing) rather than race it.
        renewed = time.monotonic()
        while not self.stop_event.wait(every):
            done, failed = self.progress()
            try:
                self.worker._renew(self.task_id, done, failed)
                renewed = time.monotonic()
            except LeaseLost:
                self.lost = True
                return
            except Exception as exc:  # storage hiccup (or a bug): try again next beat, the lease has slack
                log.warning("heartbeat for %s failed: %s", self.task_id, exc)
                if time.monotonic() - renewed > 0.8 * self.worker.lease_s:
                    log.error(
                        "task %s: the lease could not be renewed for %.0f s; giving the task up",
                        self.task_id,
                        time.monotonic() - renewed,
                    )
                    self.lost = True
                    return


class _TaskObs:
    """A task attempt's log and metrics. The log: every line this process logs while the attempt
    runs, JSON, flushed line by line to a live file — under the job root when the object store is
    a directory (``slurmctl logs --follow`` reads it there), else on scratch — and stored gzipped
    as ``a<N>.log.jsonl.gz``: by ``publish`` before ``.done``, or by ``end`` for an attempt that
    failed, stopped or lost its task. The metrics: ``TaskMetrics`` (``ctx.metrics`` is its
    ``custom``), stored by ``publish`` as ``a<N>.metrics.json``."""

    def __init__(self, worker: Worker, task_id: str, attempt: int, scratch: Path) -> None:
        self.objects, self.job_id = worker.objects, worker.job_id
        self.task_id, self.attempt, self.scratch = task_id, attempt, scratch
        obslogs.bind(task=task_id, attempt=attempt)
        live = worker.objects.local_path(keys.live_log(worker.job_id, task_id, attempt))
        level = logging.getLogger().getEffectiveLevel()
        try:
            self.log = obslogs.TaskLog(live or scratch / "live.log.jsonl", level)
        except OSError as exc:  # the job root refuses the live file: keep it on scratch (not followable)
            log.warning("live log %s: %s; writing it to scratch", live, exc)
            self.log = obslogs.TaskLog(scratch / "live.log.jsonl", level)
        self.log.install()
        ctx = obslogs.CONTEXT
        self.metrics = TaskMetrics(
            worker.job_id, task_id, attempt, ctx["host"], ctx["slurm_job_id"], worker.store_stats
        )
        self.stored = False

    def _store_log(self) -> Any:
        gz = self.log.gzip_to(self.scratch / "log.jsonl.gz")
        try:
            info = self.objects.put_file(keys.result_log(self.job_id, self.task_id, self.attempt), gz)
        finally:
            gz.unlink(missing_ok=True)
        self.stored = True
        self.log.live.unlink(missing_ok=True)
        return info

    def publish(self, summary: dict[str, Any]) -> tuple[Any, Any]:
        """Store the metrics summary, then the log. Returns their ObjectInfos (log, metrics)."""
        key = keys.result_metrics(self.job_id, self.task_id, self.attempt)
        minfo = self.objects.put(key, json.dumps(summary, separators=(",", ":")).encode())
        return self._store_log(), minfo

    def end(self) -> None:
        """Store the log if ``publish`` did not, and stop writing it. Never raises."""
        try:
            if not self.stored:
                self._store_log()
        except Exception as exc:  # the attempt's outcome stands; its log stays in the live file
            log.warning("the log of task %s attempt %d was not stored: %s", self.task_id, self.attempt, exc)
        finally:
            self.log.close()
            obslogs.bind(task=None, attempt=None)


class Worker:
    def __init__(
        self,
        backend: Backend,
        job_id: str,
        *,
        lease_s: float | None = None,
        heartbeat_s: float = 5.0,
        checkpoint_s: float = 30.0,
        takeover: bool = True,
        observe: bool = True,
    ) -> None:
        # Every store call is counted (calls, seconds) for the tasks' metrics summaries.
        self.store_stats = StoreStats()
        if observe:
            backend = dataclasses.replace(
                backend,
                objects=timed_store(backend.objects, self.store_stats),
                state=timed_store(backend.state, self.store_stats),
            )
        self.observe = observe
        self.backend = backend
        self.objects = backend.objects
        self.state = backend.state
        self.job_id = job_id
        self.job = Job.from_json(self.objects.get(keys.job_manifest(job_id)), where=f"job {job_id}")
        cfg = self.job.config
        self.lease_s = lease_s if lease_s is not None else float(cfg["executor"]["lease_s"])
        self.heartbeat_s = heartbeat_s
        self.checkpoint_s = checkpoint_s
        self.takeover = takeover
        self.max_attempts = int(cfg["retry"]["max_attempts"])
        self.lifecycle = Lifecycle.of(backend, job_id, cfg)
        self.id = worker_id()
        obslogs.bind(job=job_id, worker=self.id)
        self.stop = _Stop()
        self._handler: LoadedHandler | None = None
        self._classify: Callable[[BaseException], object] | None = None
        self._obs: _TaskObs | None = None

    def queue_wait_s(self) -> float | None:
        """Seconds from the submission of this process's Slurm array job (the executor records
        when it ran sbatch) to this process's start; None outside Slurm or if it is not known."""
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        if not array:
            return None
        for fresh in (False, True):  # the job manifest read at start may predate this array's entry
            if fresh:
                try:
                    self.job = Job.from_json(self.objects.get(keys.job_manifest(self.job_id)))
                except Exception:
                    return None
            for group in self.job.groups:
                for sub in group.submissions:
                    if str(sub.get("array_job_id")) == array and sub.get("submitted_at"):
                        return max(0.0, _PROCESS_START - float(sub["submitted_at"]))
        return None

    # -- state (every change goes through the lifecycle, the one owner of task state) --------
    def _status(self, task_id: str) -> TaskStatus | None:
        return self.lifecycle.task(task_id)

    def _claim(self, task_id: str, items: int, honour_leases: bool) -> TaskStatus | None:
        """Take the task: returns its new status, or None if it is already succeeded.
        Raises Busy if another live worker holds it (pilot mode) or attempts are exhausted.
        While the job is paused it waits (claiming nothing, keeping its Slurm allocation) and
        looks again every PAUSE_POLL_S; raises Interrupted if a stop signal comes meanwhile."""
        waiting = False
        while True:
            try:
                return self.lifecycle.claim(
                    task_id,
                    owner=self.id,
                    items=items,
                    lease_s=self.lease_s,
                    honour_leases=honour_leases,
                    takeover=self.takeover,
                    submission=worker_submission(),
                    slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                )
            except Paused:
                if not waiting:
                    log.info("job %s is paused: waiting for `slurmctl resume`", self.job_id)
                    waiting = True
                deadline = time.monotonic() + PAUSE_POLL_S
                while time.monotonic() < deadline:
                    if self.stop.requested:
                        raise Interrupted() from None
                    time.sleep(0.1)

    def _renew(self, task_id: str, done: int, failed: int) -> None:
        self.lifecycle.renew(task_id, owner=self.id, lease_s=self.lease_s, done=done, failed=failed)

    # -- one task ---------------------------------------------------------------------------
    def handler(self) -> LoadedHandler:
        """The job's handler (imported once); its ``handler.classify`` function too, if named.
        Raises HandlerError."""
        if self._handler is None:
            h = self.job.config["handler"]
            self._handler = load_handler(h["function"], h["python_path"], h["mode"])
            if h.get("classify"):
                self._classify = load_handler(h["classify"], h["python_path"]).function
        return self._handler

    def run_task(self, task_id: str, *, honour_leases: bool = False) -> int:
        """Run one task to publication. Returns an exit code (EXIT_*). Idempotent: a published
        task returns EXIT_OK at once; an interrupted one resumes from its checkpoint."""
        task = Task.from_json(self.objects.get(keys.task_manifest(self.job_id, task_id)), where=task_id)
        if self.objects.exists(keys.done_marker(self.job_id, task_id)):
            self.lifecycle.published(task_id)
            return EXIT_OK
        try:
            status = self._claim(task_id, task.batch.items, honour_leases)
        except Interrupted:  # stopped while the job was paused: nothing claimed, nothing to save
            return EXIT_RESUME
        if status is None:
            return EXIT_OK
        attempt = status.attempt
        # One directory per attempt: a worker that lost its lease may still be running here.
        task_dir = scratch_dir() / self.job_id / task_id
        scratch = task_dir / f"a{attempt}"
        scratch.mkdir(parents=True, exist_ok=True)
        self._obs = _TaskObs(self, task_id, attempt, scratch) if self.observe else None
        try:
            return self._run_claimed(task, attempt, task_dir, scratch)
        finally:
            if self._obs is not None:
                self._obs.end()
                self._obs = None

    def _run_claimed(self, task: Task, attempt: int, task_dir: Path, scratch: Path) -> int:
        """``run_task`` once the task is claimed: ``attempt`` is ours."""
        task_id = task.task_id
        log.info("task %s attempt %d on %s: %d items", task_id, attempt, self.id, task.batch.items)
        try:
            handler = self.handler()
        except HandlerError as exc:
            self.lifecycle.failed(task_id, owner=self.id, exit_code=exc.exit_code, error=str(exc))
            raise
        try:
            ckpt = self._open_checkpoint(task_id, scratch)
        except SlurmctlError as exc:  # a damaged or too-new checkpoint: say so on the task, not only here
            self.lifecycle.failed(task_id, owner=self.id, exit_code=exc.exit_code, error=str(exc))
            raise
        done = ckpt.done_ranges()
        resumed = sum(last - first + 1 for first, last in done)
        progress = _Progress(resumed)
        beat = _Heartbeat(self, task_id, lambda: (progress.done, progress.failed))
        beat.start()
        started = time.time()
        try:
            runs = pending_runs(task.batch.first_item, task.batch.items, done)
            handler_s = self._process(task, attempt, handler, ckpt, runs, progress, scratch, beat)
            ckpt.commit_if_due(force=True)
            if beat.lost:
                raise LeaseLost(task_id)
            self._publish(task, attempt, ckpt, scratch, started, handler_s, resumed)
        except Interrupted:
            ckpt.commit_if_due(force=True)
            self._save_checkpoint(task_id, ckpt, scratch)
            beat.stop_event.set()
            self.lifecycle.interrupted(task_id, owner=self.id, exit_code=EXIT_RESUME)
            log.warning("task %s interrupted (signal %s); checkpoint saved", task_id, self.stop.signal)
            return EXIT_RESUME
        except LeaseLost:
            log.warning("task %s was taken over by another worker; not publishing", task_id)
            return EXIT_LEASE_LOST
        except Exception as exc:  # ours or a bug: keep the checkpoint, record why, let the caller report
            with contextlib.suppress(Exception):
                ckpt.commit_if_due(force=True)
                self._save_checkpoint(task_id, ckpt, scratch)
            error = str(exc) if isinstance(exc, SlurmctlError) else f"{type(exc).__name__}: {exc}"
            code = exc.exit_code if isinstance(exc, SlurmctlError) else EXIT_FAILED
            # A traceback only for a bug: our own errors say what happened and what to do.
            tb = None if isinstance(exc, SlurmctlError) else exc
            log.error("task %s attempt %d failed: %s", task_id, attempt, error, exc_info=tb)
            self.lifecycle.failed(task_id, owner=self.id, exit_code=code, error=error)
            raise
        finally:
            beat.stop_event.set()
            ckpt.close()
        # This attempt's scratch and earlier ones' (their checkpoints are in the result now); never
        # a later attempt's: a worker that lost the task may still get here while the new owner runs.
        for old in task_dir.glob("a*"):
            if old.name[1:].isdigit() and int(old.name[1:]) <= attempt:
                shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):
            task_dir.rmdir()
        return EXIT_OK

    def _open_checkpoint(self, task_id: str, scratch: Path) -> Checkpoint:
        """Open this attempt's checkpoint holding the union of what there is: the furthest one an
        earlier attempt left on this node (it may be further on than the store, e.g. after
        SIGKILL), plus every run of the store's segments that overlaps no run already there. A
        damaged or other-format segment is logged and ignored: its items run again. Runs the store
        lacks are marked to ship with the next snapshot. Raises StateError (the local file) or
        StorageError (the store)."""
        local = scratch / "checkpoint.sqlite"
        earlier = [p for p in scratch.parent.glob("a*/checkpoint.sqlite") if p != local]
        counted = [(Checkpoint.count(p), p) for p in earlier]
        items, best = max(counted, default=(0, None))
        if best is not None and items > 0:
            Checkpoint.copy(best, local)
        ckpt = Checkpoint(local)
        try:
            ckpt.set_shipped(self._merge_segments(task_id, ckpt, scratch))
        except BaseException:
            ckpt.close()
            raise
        return ckpt

    def _merge_segments(self, task_id: str, ckpt: Checkpoint, scratch: Path) -> set[tuple[int, int]]:
        """Merge the task's readable segments from the store into ``ckpt`` (see ``Checkpoint.merge``).
        Returns the ``(first, last)`` of every run they hold, merged or not (those are in the
        store: not to be shipped again)."""
        from slurmctl.errors import ObjectNotFoundError
        from slurmctl.worker.checkpoint import SegmentError, read_segment

        in_store: set[tuple[int, int]] = set()
        for key in list(self.objects.list(keys.checkpoint_prefix(self.job_id, task_id))):
            if not key.endswith(".seg"):
                continue
            path = self.objects.local_path(key)
            copied = path is None
            if path is None:  # a remote store: read a local copy
                path = scratch / "segment.restore"
                try:
                    self.objects.get_file(key, path)
                except ObjectNotFoundError:  # deleted since the listing (the task got published)
                    continue
            try:
                with open(path, "rb") as f:
                    heads = ckpt.merge(read_segment(f))
            except FileNotFoundError:
                continue
            except SegmentError as exc:
                log.warning("checkpoint segment %s ignored: %s; its items are run again", key, exc)
                continue
            finally:
                if copied:
                    path.unlink(missing_ok=True)
            in_store.update(heads)
        return in_store

    def _save_checkpoint(self, task_id: str, ckpt: Checkpoint, scratch: Path) -> None:
        """Ship the runs committed since the previous call to the store, as one segment (nothing
        when there are none): the cost of a snapshot is the new work, not the whole checkpoint.
        Raises StorageError if the store refuses it (the next call ships those runs again).
        Idempotent."""
        path = scratch / "segment.out"
        segment = ckpt.write_segment(path)
        if segment is None:
            return
        try:
            key = keys.checkpoint_segment(self.job_id, task_id, segment.first_id, ckpt.writer)
            self.objects.put_file(key, path)
        finally:
            path.unlink(missing_ok=True)
        ckpt.mark_shipped(segment)
        log.debug(
            "checkpoint segment %s: %d items, %d bytes, sha256 %s",
            key,
            segment.items,
            segment.size,
            segment.sha256,
        )

    def _drop_checkpoint(self, task_id: str) -> None:
        """Delete the task's checkpoint segments from the store (once it is published: the result
        holds every item). Idempotent."""
        for key in list(self.objects.list(keys.checkpoint_prefix(self.job_id, task_id))):
            self.objects.delete(key)

    def _batch_path(self, task: Task, scratch: Path) -> Path:
        if task.batch.key is None:  # a reference batch: its bytes are in the job's input file
            from .batchfile import copy_reference

            path = scratch / "batch.jsonl"
            copy_reference(task.batch, path)
            return path
        path = self.objects.local_path(task.batch.key)
        if path is None:
            path = scratch / "batch.jsonl"
            self.objects.get_file(task.batch.key, path)
        actual = sha256_file(path)
        if actual != task.batch.sha256:
            from slurmctl.errors import ChecksumMismatchError

            raise ChecksumMismatchError(task.batch.key, task.batch.sha256, actual)
        return path

    def _process(
        self,
        task: Task,
        attempt: int,
        handler: LoadedHandler,
        ckpt: Checkpoint,
        runs: list[tuple[int, int]],
        progress: _Progress,
        scratch: Path,
        beat: _Heartbeat,
    ) -> float:
        """Run the handler over the items of ``runs`` (half-open id ranges, in order), per item or
        per batch as the job says. Returns the seconds spent handling chunks (decoding, the
        handler, encoding its rows; timed per chunk of items, not per item). Raises Interrupted on
        a stop signal (the items handled so far are recorded), LeaseLost if the heartbeat lost the
        lease."""
        ctx = TaskContext(
            job_id=self.job_id,
            task_id=task.task_id,
            attempt=attempt,
            logger=logging.getLogger("slurmctl.handler"),
            scratch_dir=scratch / "handler",
            resources=dict(self.job.config.get("resources", {})),
            rate_limits=limits_for(self.backend, self.job_id, self.job.config),
        )
        ctx.logger = obslogs.ItemLogger(ctx.logger, ctx)  # its lines carry ctx.item_id
        if self._obs is not None:
            ctx.metrics = self._obs.metrics.custom
            self._obs.metrics.watch_limits(ctx.rate_limits)
        # Unused rate-limit slots go back to the bucket when the task's items are done.
        try:
            ctx.scratch_dir.mkdir(exist_ok=True)
            path = self._batch_path(task, scratch)
            with open(path, "rb") as f:
                batch = handler.mode == "batch"
                make = self._batch_chunks if batch else self._item_chunks
                chunks = make(f, attempt, handler, ctx, task.batch.item_ids)
                return self._drive_chunks(f, task, chunks, ckpt, runs, progress, scratch, beat, batch=batch)
        finally:
            ctx.rate_limits.release()

    def _item_chunks(
        self, f: BinaryIO, attempt: int, handler: LoadedHandler, ctx: TaskContext, ids: list[int] | None
    ) -> _Chunker:
        """The chunk function of a per-item handler (see ``_Chunker``): one call per item, a
        failing item recorded as an error, the others' rows kept. Stops early at a stop signal
        (after the item in hand) or at the end of ``f``. ``ids``: a retry batch's item ids (rows
        and ``ctx`` carry them; the checkpoint keeps positions)."""
        call = _item_call(handler)
        decode, encode = _decode_line, _row_encoder()
        record_error = error_recorder(attempt, self._classify, ids)
        flag = self.stop.flag

        def handle_chunk(pos: int, n: int) -> tuple[int, list[bytes], list[ErrorRow]]:
            """Handle up to ``n`` items from item ``pos``; return (first id not handled, rows,
            errors). Stops early at a stop signal or at the end of the file."""
            rows: list[bytes] = []
            errors: list[ErrorRow] = []
            append = rows.append
            item_id = pos - 1
            for item_id, line in enumerate(islice(f, n), pos):
                if flag:
                    return item_id, rows, errors
                ctx.item_id = iid = item_id if ids is None else ids[item_id]
                try:
                    result = call(decode(line), ctx)
                    if type(result) is dict:  # the common case, inlined: one row
                        result["_item_id"] = iid
                        append(encode(result))
                    else:  # every row encoded before any is kept: a bad row fails its item only
                        rows.extend([encode({**r, "_item_id": iid}) for r in rows_of(result)])
                except Exception as exc:
                    errors.append(record_error(item_id, exc))
            return item_id + 1, rows, errors

        return handle_chunk

    def _batch_chunks(
        self, f: BinaryIO, attempt: int, handler: LoadedHandler, ctx: TaskContext, ids: list[int] | None
    ) -> _Chunker:
        """The chunk function of a per-batch handler (see ``_Chunker``): one call with the chunk's
        records; if it raises, or returns a wrong number of results, every item of the call fails;
        an item whose rows cannot be encoded fails alone. Stops early at the end of ``f``."""
        fn, wants_ctx = handler.function, handler.wants_ctx
        encode = _row_encoder()
        record_error = error_recorder(attempt, self._classify, ids)

        def handle_chunk(pos: int, n: int) -> tuple[int, list[bytes], list[ErrorRow]]:
            lines = list(islice(f, n))
            positions = range(pos, pos + len(lines))
            rows: list[bytes] = []
            if not lines:
                return pos, rows, []
            try:
                records = [_decode_line(line) for line in lines]
                results = fn(records, ctx) if wants_ctx else fn(records)
                results = list(results) if results is not None else []
                if len(results) != len(records):
                    raise HandlerError(
                        f"batch handler returned {len(results)} results for {len(records)} records"
                    )
            except Exception as exc:  # the call failed: every item of it fails
                return positions.stop, rows, [record_error(item_id, exc) for item_id in positions]
            errors: list[ErrorRow] = []
            for item_id, result in zip(positions, results, strict=True):
                iid = item_id if ids is None else ids[item_id]
                try:  # every row encoded before any is kept: a bad row fails its item only
                    rows.extend([encode({**r, "_item_id": iid}) for r in rows_of(result)])
                except Exception as exc:
                    errors.append(record_error(item_id, exc))
            return positions.stop, rows, errors

        return handle_chunk

    def _drive_chunks(
        self,
        f: BinaryIO,
        task: Task,
        handle_chunk: _Chunker,
        ckpt: Checkpoint,
        runs: list[tuple[int, int]],
        progress: _Progress,
        scratch: Path,
        beat: _Heartbeat,
        *,
        batch: bool = False,
    ) -> float:
        """The one loop over ``runs`` for both handler modes; see ``_process`` (returns, raises).
        Items go to ``handle_chunk`` in chunks: each chunk is one run in the checkpoint, and the
        per-chunk work — commit when due, the lost-lease check, a snapshot every ``checkpoint_s``,
        the stop signal — is done once per chunk instead of once per item. Per-item chunks are
        sized to take ~20-100 ms; a batch handler gets up to ``_BATCH_RECORDS`` records per call."""
        flag = self.stop.flag
        perf = time.perf_counter
        handler_s = 0.0
        # Items per chunk, adapted below. Start at one: a slow handler (seconds per item) must report
        # progress and commit item by item from its first item on.
        size = _BATCH_RECORDS if batch else 1
        next_snapshot = time.monotonic() + self.checkpoint_s
        pos = task.batch.first_item  # the id of the item the next line of f holds
        for a, b in runs:
            if a > pos:  # skip items a previous attempt recorded
                deque(islice(f, a - pos), maxlen=0)
                pos = a
            while pos < b:
                if flag:
                    raise Interrupted()
                n = min(size, b - pos)
                t0 = perf()
                end, rows, errors = handle_chunk(pos, n)
                elapsed = perf() - t0
                handler_s += elapsed
                block = b"\n".join(rows) + b"\n" if rows else b""
                if end > pos:
                    ckpt.record_run(pos, end - 1, block, len(rows), errors)
                    progress.done += end - pos
                    progress.failed += len(errors)
                if end < pos + n:
                    if flag:
                        raise Interrupted()
                    return handler_s  # the batch file is shorter than the task: _publish reports it
                pos = end
                # ~20-100 ms per chunk: per-chunk costs vanish for fast handlers, and a slow one
                # still commits every commit_s and notices a lost lease within ~0.1 s. Big rows
                # shrink the chunk too: its rows are held in memory until the next commit.
                if batch:  # the handler's contract: batches of _BATCH_RECORDS
                    pass
                elif len(block) > _CHUNK_BYTES and size > 1:
                    size //= 2
                elif elapsed < 0.02 and size < 4096:
                    size *= 2
                elif elapsed > 0.1 and size > 1:
                    size //= 2
                ckpt.commit_if_due()
                if beat.lost:
                    raise LeaseLost(task.task_id)
                if time.monotonic() >= next_snapshot:
                    self._save_checkpoint(task.task_id, ckpt, scratch)
                    next_snapshot = time.monotonic() + self.checkpoint_s
        return handler_s

    def _publish(
        self,
        task: Task,
        attempt: int,
        ckpt: Checkpoint,
        scratch: Path,
        started: float,
        handler_s: float,
        resumed: int,
    ) -> None:
        job, tid = self.job_id, task.task_id
        ok, failed, rows = ckpt.counts()
        if ok + failed != task.batch.items:
            raise StateError(
                f"task {tid}: {ok + failed} items recorded but the batch has {task.batch.items}",
                hint="the batch file changed after partitioning",
            )
        data_path = scratch / "result.jsonl"
        with open(data_path, "wb") as out:
            for block in ckpt.iter_rows():  # newline-terminated rows, in item order
                out.write(block)
        data_info = self.objects.put_file(keys.result_data(job, tid, attempt), data_path)
        errors_key = errors_sha = None
        if failed:
            err_path = scratch / "errors.jsonl"
            with open(err_path, "w", encoding="utf-8") as out:
                for err in ckpt.iter_errors():
                    if task.batch.item_ids is not None:  # positions in the checkpoint, ids here
                        err["item_id"] = task.batch.item_ids[err["item_id"]]
                    out.write(json.dumps(err) + "\n")
            errors_key = keys.result_errors(job, tid, attempt)
            errors_sha = self.objects.put_file(errors_key, err_path).sha256
        categories = ckpt.error_categories()
        log.info(
            "task %s attempt %d: %d items ok, %d failed%s, %d resumed",
            tid,
            attempt,
            ok,
            failed,
            f" {categories}" if categories else "",
            resumed,
        )
        log_info = metrics_info = None
        if self._obs is not None:
            summary = self._obs.metrics.summary(
                items_ok=ok,
                items_failed=failed,
                items_handled=ok + failed - resumed,
                failed_by_category=categories,
                queue_wait_s=self.queue_wait_s(),
            )
            log_info, metrics_info = self._obs.publish(summary)
        manifest = ResultManifest(
            job_id=job,
            task_id=tid,
            attempt=attempt,
            data_key=data_info.key,
            data_sha256=data_info.sha256,
            data_bytes=data_info.size,
            rows=rows,
            errors_key=errors_key,
            errors_sha256=errors_sha,
            items=task.batch.items,
            items_ok=ok,
            items_failed=failed,
            items_resumed=resumed,
            first_item=task.batch.first_item,
            batch_sha256=task.batch.sha256,
            started_at=started,
            finished_at=time.time(),
            handler_seconds=round(handler_s, 6),
            worker=self.id,
            failure_categories=categories,
            log_key=log_info.key if log_info else None,
            log_sha256=log_info.sha256 if log_info else None,
            metrics_key=metrics_info.key if metrics_info else None,
            metrics_sha256=metrics_info.sha256 if metrics_info else None,
        )
        mkey = keys.result_manifest(job, tid, attempt)
        minfo = self.objects.put(mkey, manifest.to_json())
        marker = DoneMarker(task_id=tid, attempt=attempt, manifest_key=mkey, manifest_sha256=minfo.sha256)
        try:
            self.objects.put_if_absent(keys.done_marker(job, tid), marker.to_json())
        except ConflictError:
            # Another attempt published first (e.g. a worker thought dead came back). Its result
            # stands; ours is dropped so only one result per task is ever visible.
            log.warning("task %s already published by another attempt; discarding attempt %d", tid, attempt)
            for key in (data_info.key, mkey, errors_key, manifest.log_key, manifest.metrics_key):
                if key:
                    self.objects.delete(key)
        self.lifecycle.succeeded(tid, owner=self.id, items_done=ok + failed, items_failed=failed)
        self._drop_checkpoint(tid)

    # -- pilot ------------------------------------------------------------------------------
    def run_pilot(self, index: int, workers: int, *, idle_poll_s: float = 2.0) -> int:
        """Claim and run tasks until every task is published or unclaimable. Pilots start at
        different offsets (``index``/``workers``) so they rarely contend for the same task. An item
        retry task waits for its not-before time (the backoff): until then it is not claimed, nor
        does it keep the pilot (the watch loop submits it when it is due). On the aws backend the
        due retry tasks that the SQS retry queue hands out come first (slurmctl.retry.queue)."""
        from slurmctl.retry.queue import Inbox, uses_queue
        from slurmctl.retry.tasks import retry_not_before

        inbox = Inbox(self.backend, self.job_id) if uses_queue(self.backend, self.job.config) else None
        while True:
            # The job's tasks, then its item retry tasks (planned while the job runs: listed anew).
            not_before = retry_not_before(self.objects, self.job_id)
            ids = self.job.task_ids() + list(not_before)
            start = (index * len(ids)) // max(workers, 1)
            order = ids[start:] + ids[:start]
            if inbox is not None:
                order = inbox.take() + order  # a task met twice is published or Busy the second time
            remaining = 0
            ran = False
            now = time.time()
            for tid in order:
                if self.stop.requested:
                    return EXIT_RESUME
                if self.objects.exists(keys.done_marker(self.job_id, tid)):
                    continue
                if not_before.get(tid, 0.0) > now:
                    continue  # its backoff has not passed
                try:
                    code = self.run_task(tid, honour_leases=True)
                except JobClosed:
                    raise
                except OwnArray:
                    continue  # escalated resources: an array element of its own runs it
                except Busy:
                    st = self._status(tid)
                    if (
                        st is not None
                        and not (st.state == TaskState.FAILED and not attempts_left(st, self.max_attempts))
                        and st.state != TaskState.CANCELLED
                    ):
                        remaining += 1
                    continue
                except SlurmctlError as exc:
                    log.error("task %s failed: %s", tid, exc)
                    continue
                if code == EXIT_RESUME:
                    return EXIT_RESUME
                ran = True
            if remaining == 0:
                return EXIT_OK
            if not ran:
                time.sleep(idle_poll_s)
