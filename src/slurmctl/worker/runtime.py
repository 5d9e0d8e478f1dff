"""The worker: the one entry point every executor launches (``slurmctl worker``).

A worker runs one task (``--task``, or the array element ``SLURM_ARRAY_TASK_ID + --array-offset``)
or, as a *pilot*, claims tasks one after another until none is left. For each task it:

1. claims the task in the state store (compare-and-set; a running task held by a live lease of
   another worker is left alone), attempt += 1;
2. restores the item checkpoint (node-local SQLite; the store's snapshot if that is further on);
3. streams the batch (sha256 verified), calls the handler per item (or per batch), records each
   item's rows or error in the checkpoint, commits in batches, heartbeats the lease from a thread,
   snapshots the checkpoint to the store every ``checkpoint_s``;
4. publishes: result rows, then errors, then the result manifest (rows, sha256, timings), then the
   ``.done`` marker (create-if-absent: exactly one attempt is published), then state SUCCEEDED.

SIGTERM/SIGINT (Slurm preemption, time limit, ``--signal``): the current item finishes, the
checkpoint is committed and snapshotted, the task goes back to ``queued``, and the worker exits
with ``EXIT_RESUME`` (75) — "resume me".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from slurmctl.errors import ConflictError, HandlerError, SlurmctlError, StateError
from slurmctl.fsutil import sha256_file
from slurmctl.model.core import Job, Task, TaskStatus
from slurmctl.model.manifests import DoneMarker, ResultManifest
from slurmctl.model.states import TaskState
from slurmctl.ratelimit.runtime import limits_for
from slurmctl.storage import keys
from slurmctl.storage.base import Backend
from slurmctl.worker.checkpoint import Checkpoint
from slurmctl.worker.classify import classify
from slurmctl.worker.context import TaskContext
from slurmctl.worker.handler import LoadedHandler, load_handler, rows_of

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_LEASE_LOST = 3
EXIT_RESUME = 75  # EX_TEMPFAIL: interrupted after a clean checkpoint; run again to resume

log = logging.getLogger("slurmctl.worker")


class Busy(Exception):
    """Another worker holds the task with a live lease."""


class Interrupted(Exception):
    """A stop signal arrived; the checkpoint is safe."""


class LeaseLost(Exception):
    """Another worker took the task over; this attempt must not publish."""


def scratch_root() -> Path:
    """Node-local scratch: $SLURMCTL_SCRATCH, Slurm's per-job $TMPDIR, or /tmp."""
    return Path(os.environ.get("SLURMCTL_SCRATCH") or os.environ.get("TMPDIR") or "/tmp")


def worker_id() -> str:
    slurm = os.environ.get("SLURM_JOB_ID")
    return f"{socket.gethostname()}:{os.getpid()}" + (f":slurm{slurm}" if slurm else "")


# The worker's JSON codec is msgspec: it decodes and encodes a small record ~7x faster than the json
# module here (bench/RESULTS.md), which is most of a no-op item's cost. Differences from json.dumps,
# documented in docs/architecture.md: compact row text ({"a":1}), NaN/Infinity are written as null,
# datetimes as RFC 3339 strings; unsupported objects raise TypeError (a permanent item failure).
_decode_line = msgspec.json.Decoder().decode


def _row_encoder() -> Callable[[Any], str]:
    """A row encoder for one task loop: obj -> JSON text."""
    encode = msgspec.json.Encoder().encode

    def encode_text(obj: Any) -> str:
        return encode(obj).decode()

    return encode_text


class _Stop:
    """Set by SIGTERM/SIGINT; checked between items."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None

    def install(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.requested = True
            self.signal = signum

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not the main thread (tests)
                signal.signal(sig, handler)


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
        while not self.stop_event.wait(every):
            done, failed = self.progress()
            try:
                self.worker._renew(self.task_id, done, failed)
            except LeaseLost:
                self.lost = True
                return
            except SlurmctlError as exc:  # storage hiccup: try again next beat, lease has slack
                log.warning("heartbeat for %s failed: %s", self.task_id, exc)


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
    ) -> None:
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
        self.id = worker_id()
        self.stop = _Stop()
        self._handler: LoadedHandler | None = None

    # -- state ------------------------------------------------------------------------------
    def _status(self, task_id: str) -> TaskStatus | None:
        rec = self.state.get(keys.TASKS_TABLE, keys.task_state(self.job_id, task_id))
        return None if rec is None else TaskStatus.model_validate(rec.value)

    def _update(self, task_id: str, change: Callable[[TaskStatus], TaskStatus | None]) -> TaskStatus | None:
        def fn(value: dict[str, Any] | None) -> dict[str, Any] | None:
            current = TaskStatus(task_id=task_id) if value is None else TaskStatus.model_validate(value)
            new = change(current)
            return None if new is None else new.model_dump(mode="json")

        rec = self.state.update(keys.TASKS_TABLE, keys.task_state(self.job_id, task_id), fn)
        return None if rec is None else TaskStatus.model_validate(rec.value)

    def _claim(self, task_id: str, items: int, honour_leases: bool) -> TaskStatus | None:
        """Take the task: returns its new status, or None if it is already succeeded.
        Raises Busy if another worker's lease is live (pilot mode) or attempts are exhausted."""
        now = time.time()
        claimed: list[bool] = []

        def change(st: TaskStatus) -> TaskStatus | None:
            claimed.clear()
            if st.state == TaskState.SUCCEEDED:
                return None
            if st.state == TaskState.RUNNING and st.owner != self.id:
                live = st.lease_expires is not None and st.lease_expires > now
                if live and (honour_leases or not self.takeover):
                    raise Busy(task_id)
            if honour_leases and st.state == TaskState.FAILED and st.attempt >= self.max_attempts:
                raise Busy(task_id)
            if honour_leases and st.state == TaskState.CANCELLED:
                raise Busy(task_id)
            new_state = TaskState.QUEUED if st.state in (TaskState.FAILED, TaskState.CANCELLED) else st.state
            st = st.model_copy(update={"state": new_state})
            claimed.append(True)
            return st.advance(
                TaskState.RUNNING,
                attempt=st.attempt + 1,
                owner=self.id,
                lease_expires=now + self.lease_s,
                started_at=now,
                finished_at=None,
                items_total=items,
                exit_code=None,
                error=None,
                slurm_job_id=os.environ.get("SLURM_JOB_ID"),
            )

        status = self._update(task_id, change)
        return status if claimed else None

    def _renew(self, task_id: str, done: int, failed: int) -> None:
        def change(st: TaskStatus) -> TaskStatus | None:
            if st.owner != self.id or st.state != TaskState.RUNNING:
                raise LeaseLost(task_id)
            return st.advance(
                TaskState.RUNNING,
                lease_expires=time.time() + self.lease_s,
                items_done=done,
                items_failed=failed,
            )

        self._update(task_id, change)

    def _finish(self, task_id: str, new: TaskState, **changes: Any) -> None:
        def change(st: TaskStatus) -> TaskStatus | None:
            if st.owner != self.id and st.state == TaskState.RUNNING:
                return None  # someone took over; leave their record alone
            if st.state == new == TaskState.SUCCEEDED:
                return None
            try:
                return st.advance(new, finished_at=time.time(), lease_expires=None, **changes)
            except StateError:
                return None

        self._update(task_id, change)

    # -- one task ---------------------------------------------------------------------------
    def handler(self) -> LoadedHandler:
        if self._handler is None:
            h = self.job.config["handler"]
            self._handler = load_handler(h["function"], h["python_path"], h["mode"])
        return self._handler

    def run_task(self, task_id: str, *, honour_leases: bool = False) -> int:
        """Run one task to publication. Returns an exit code (EXIT_*). Idempotent: a published
        task returns EXIT_OK at once; an interrupted one resumes from its checkpoint."""
        task = Task.from_json(self.objects.get(keys.task_manifest(self.job_id, task_id)), where=task_id)
        if self.objects.exists(keys.done_marker(self.job_id, task_id)):
            self._finish(task_id, TaskState.SUCCEEDED)
            return EXIT_OK
        status = self._claim(task_id, task.batch.items, honour_leases)
        if status is None:
            return EXIT_OK
        attempt = status.attempt
        log.info("task %s attempt %d on %s", task_id, attempt, self.id)
        # One directory per attempt: a worker that lost its lease may still be running here.
        task_dir = scratch_root() / "slurmctl" / self.job_id / task_id
        scratch = task_dir / f"a{attempt}"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            handler = self.handler()
        except HandlerError as exc:
            self._finish(task_id, TaskState.FAILED, exit_code=EXIT_FAILED, error=str(exc))
            raise
        ckpt = self._open_checkpoint(task_id, scratch)
        beat = _Heartbeat(self, task_id, lambda: (len(done_ids), failed[0]))
        done_ids: set[int] = ckpt.done_ids()
        resumed = len(done_ids)
        failed = [0]
        beat.start()
        started = time.time()
        try:
            handler_s = self._process(task, attempt, handler, ckpt, done_ids, failed, scratch, beat)
            ckpt.commit_if_due(force=True)
            if beat.lost:
                raise LeaseLost(task_id)
            self._publish(task, attempt, ckpt, scratch, started, handler_s, resumed)
        except Interrupted:
            ckpt.commit_if_due(force=True)
            self._save_checkpoint(task_id, ckpt, scratch)
            beat.stop_event.set()
            self._finish(task_id, TaskState.QUEUED, exit_code=EXIT_RESUME, error="interrupted by signal")
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
            self._finish(task_id, TaskState.FAILED, exit_code=EXIT_FAILED, error=error)
            raise
        finally:
            beat.stop_event.set()
            ckpt.close()
        shutil.rmtree(task_dir, ignore_errors=True)
        return EXIT_OK

    def _open_checkpoint(self, task_id: str, scratch: Path) -> Checkpoint:
        """Start from the furthest checkpoint there is: an earlier attempt's on this node (it may
        be newer than the store's, e.g. after SIGKILL) or the store's snapshot."""
        local = scratch / "checkpoint.sqlite"
        candidates = [p for p in scratch.parent.glob("a*/checkpoint.sqlite") if p != local]
        key = keys.checkpoint(self.job_id, task_id)
        if self.objects.exists(key):
            remote_copy = scratch / "checkpoint.remote.sqlite"
            self.objects.get_file(key, remote_copy)
            candidates.append(remote_copy)
        best = max(candidates, key=Checkpoint.count, default=None)
        if best is not None and Checkpoint.count(best) > 0:
            Checkpoint.copy(best, local)
        with contextlib.suppress(FileNotFoundError):
            (scratch / "checkpoint.remote.sqlite").unlink()
        return Checkpoint(local)

    def _save_checkpoint(self, task_id: str, ckpt: Checkpoint, scratch: Path) -> None:
        snap = scratch / "checkpoint.snapshot.sqlite"
        ckpt.snapshot(snap)
        self.objects.put_file(keys.checkpoint(self.job_id, task_id), snap)
        snap.unlink()

    def _batch_path(self, task: Task, scratch: Path) -> Path:
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
        done_ids: set[int],
        failed: list[int],
        scratch: Path,
        beat: _Heartbeat,
    ) -> float:
        """Run the handler over the batch's pending items. Returns seconds spent in the handler."""
        ctx = TaskContext(
            job_id=self.job_id,
            task_id=task.task_id,
            attempt=attempt,
            logger=logging.getLogger(f"slurmctl.handler.{task.task_id}"),
            scratch_dir=scratch / "handler",
            resources=dict(self.job.config.get("resources", {})),
            rate_limits=limits_for(self.backend, self.job_id, self.job.config),
        )
        # Unused rate-limit slots go back to the bucket when the task's items are done.
        try:
            ctx.scratch_dir.mkdir(exist_ok=True)
            path = self._batch_path(task, scratch)
            fn = handler.function
            wants_ctx = handler.wants_ctx
            dumps = _row_encoder()
            record_ok, done_add = ckpt.record_ok, done_ids.add
            stop = self.stop
            first = task.batch.first_item
            handler_s = 0.0
            next_snapshot = time.monotonic() + self.checkpoint_s
            perf = time.perf_counter

            def record_error(item_id: int, exc: BaseException) -> None:
                failed[0] += 1
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
                ckpt.record_error(item_id, classify(exc), type(exc).__name__, str(exc)[:2000], tb, attempt)
                done_ids.add(item_id)

            def record_rows(item_id: int, result: Any) -> None:
                if type(result) is dict:
                    result["_item_id"] = item_id
                    ckpt.record_ok(item_id, dumps(result), 1)
                else:
                    rows = rows_of(result)
                    text = "\n".join(dumps({**r, "_item_id": item_id}) for r in rows)
                    ckpt.record_ok(item_id, text, len(rows))
                done_ids.add(item_id)

            with open(path, "rb") as f:
                if handler.mode == "batch":
                    pending = [(first + k, line) for k, line in enumerate(f) if first + k not in done_ids]
                    chunk = 1000
                    for start in range(0, len(pending), chunk):
                        if stop.requested:
                            raise Interrupted()
                        part = pending[start : start + chunk]
                        records = [_decode_line(line) for _, line in part]
                        t0 = perf()
                        try:
                            results = fn(records, ctx) if wants_ctx else fn(records)
                            results = list(results) if results is not None else []
                            if len(results) != len(records):
                                raise HandlerError(
                                    f"batch handler returned {len(results)} results "
                                    f"for {len(records)} records"
                                )
                        except Exception as exc:
                            handler_s += perf() - t0
                            for item_id, _ in part:
                                record_error(item_id, exc)
                            continue
                        handler_s += perf() - t0
                        for (item_id, _), result in zip(part, results, strict=True):
                            try:
                                record_rows(item_id, result)
                            except Exception as exc:  # unencodable rows fail their item only
                                record_error(item_id, exc)
                        ckpt.commit_if_due()
                    return handler_s

                is_gen = handler.is_generator
                for k, line in enumerate(f):
                    item_id = first + k
                    if item_id in done_ids:
                        continue
                    if stop.requested:
                        raise Interrupted()
                    ctx.item_id = item_id
                    t0 = perf()
                    try:
                        record = _decode_line(line)
                        result = fn(record, ctx) if wants_ctx else fn(record)
                        if is_gen:
                            result = list(result)
                    except Exception as exc:
                        handler_s += perf() - t0
                        record_error(item_id, exc)
                        continue
                    handler_s += perf() - t0
                    try:
                        if type(result) is dict:  # the common case, inlined: one row
                            result["_item_id"] = item_id
                            record_ok(item_id, dumps(result), 1)
                            done_add(item_id)
                        else:
                            record_rows(item_id, result)
                    except Exception as exc:  # a row the codec cannot encode fails its item only
                        record_error(item_id, exc)
                    if not k & 1023:
                        ckpt.commit_if_due()
                        if beat.lost:
                            raise LeaseLost(task.task_id)
                        if time.monotonic() >= next_snapshot:
                            self._save_checkpoint(task.task_id, ckpt, scratch)
                            next_snapshot = time.monotonic() + self.checkpoint_s
            return handler_s
        finally:
            ctx.rate_limits.release()

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
        with open(data_path, "w", encoding="utf-8") as out:
            for block in ckpt.iter_rows():
                out.write(block)
                out.write("\n")
        data_info = self.objects.put_file(keys.result_data(job, tid, attempt), data_path)
        errors_key = errors_sha = None
        if failed:
            err_path = scratch / "errors.jsonl"
            with open(err_path, "w", encoding="utf-8") as out:
                for err in ckpt.iter_errors():
                    out.write(json.dumps(err) + "\n")
            errors_key = keys.result_errors(job, tid, attempt)
            errors_sha = self.objects.put_file(errors_key, err_path).sha256
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
            failure_categories=ckpt.error_categories(),
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
            for key in (data_info.key, mkey, errors_key):
                if key:
                    self.objects.delete(key)
        self._finish(tid, TaskState.SUCCEEDED, items_done=ok + failed, items_failed=failed, exit_code=0)
        self.objects.delete(keys.checkpoint(job, tid))

    # -- pilot ------------------------------------------------------------------------------
    def run_pilot(self, index: int, workers: int, *, idle_poll_s: float = 2.0) -> int:
        """Claim and run tasks until every task is published or unclaimable. Pilots start at
        different offsets (``index``/``workers``) so they rarely contend for the same task."""
        n = self.job.tasks
        ids = self.job.task_ids()
        start = (index * n) // max(workers, 1)
        order = ids[start:] + ids[:start]
        while True:
            remaining = 0
            ran = False
            for tid in order:
                if self.stop.requested:
                    return EXIT_RESUME
                if self.objects.exists(keys.done_marker(self.job_id, tid)):
                    continue
                try:
                    code = self.run_task(tid, honour_leases=True)
                except Busy:
                    st = self._status(tid)
                    if (
                        st is not None
                        and not (st.state == TaskState.FAILED and st.attempt >= self.max_attempts)
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
