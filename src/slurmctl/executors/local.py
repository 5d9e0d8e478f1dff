"""The local executor: tasks run as worker subprocesses on this machine, N at a time.

``submit`` starts a detached *runner* (``python -m slurmctl.executors.local``) and returns at once;
the runner keeps ``max_parallel`` workers busy (default: the number of cores), re-runs a task whose
worker died (SIGKILL, OOM) or was interrupted, up to ``retry.max_attempts``, and settles the job's
state at the end; a thread of it evaluates the job's alerts (slurmctl.alerts, docs/alerts.md).
``cancel`` signals the runner's process group. ``slurmctl status`` works the same as for Slurm jobs
because everything it reads is in the backend.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from slurmctl.coordinator import load_job
from slurmctl.errors import (
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_RESUME,
    SchedulerError,
    StorageError,
    exit_code,
    failure_message,
)
from slurmctl.executors.base import Executor, shell_join, worker_command
from slurmctl.lifecycle import Element, Facts, Lifecycle, attempts_left, owner_alive, this_host
from slurmctl.model.core import JobStatus, TaskStatus
from slurmctl.model.states import JobState, TaskState
from slurmctl.retry.store import AutoRetry
from slurmctl.slurm.states import JobState as SlurmState
from slurmctl.storage import keys
from slurmctl.storage.base import Backend
from slurmctl.storage.open import default_root, open_backend

log = logging.getLogger("slurmctl.executors.local")

# A runner keeps trying through a storage outage (backing off) for this long before it stops;
# running workers are not disturbed, and `slurmctl resubmit JOB` starts a new runner.
STORAGE_OUTAGE_S = 300.0
# About how many item retry planning passes the runner makes in a job as its tasks finish (``run``).
PASSES_PER_JOB = 25


def default_parallel() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


class LocalExecutor(Executor):
    kind = "local"

    def _runner_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "slurmctl.executors.local",
            "--backend",
            json.dumps(self.backend.spec, separators=(",", ":")),
            "--job",
            self.job.job_id,
        ]

    def dry_run(self, task_ids: list[str]) -> str:
        n = self.job.config["executor"].get("max_parallel") or default_parallel()
        lines = [
            f"# local executor: {len(task_ids)} task(s), {n} at a time, via a detached runner:",
            shell_join(self._runner_argv()),
            "# which runs, per task:",
            shell_join(worker_command(self.backend, self.job.job_id, "--task", "<task-id>")),
        ]
        return "\n".join(lines)

    def submit(self, task_ids: list[str]) -> str:
        self.lifecycle.queue(task_ids)
        log_key = keys.log_prefix(self.job.job_id) + "runner.log"
        # Remote backends (S3) hold no log files: the runner then logs beside the default root.
        log_path = self.backend.objects.local_path(log_key) or default_root() / log_key
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SchedulerError(f"cannot create the runner log {log_path}: {exc.strerror}") from exc
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                self._runner_argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI; cancel signals the whole group
                close_fds=True,
            )
        self.lifecycle.set_job(JobState.SUBMITTED, runner_pid=proc.pid, runner_host=socket.gethostname())
        return f"local runner pid {proc.pid}, {len(task_ids)} task(s)"

    def _runner(self) -> JobStatus | None:
        rec = self.backend.state.get(keys.JOBS_TABLE, keys.job_state(self.job.job_id))
        return None if rec is None else JobStatus.model_validate(rec.value)

    def runner_alive(self) -> bool:
        st = self._runner()
        if st is None or not st.runner_pid:
            return False
        if st.runner_host != socket.gethostname():
            return True  # another machine's runner: assume it lives (we cannot see it)
        try:
            os.kill(st.runner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return Path(f"/proc/{st.runner_pid}").exists() and "Z" not in _proc_state(st.runner_pid)

    plans_item_retries = True

    def deciding(self) -> bool:
        """The runner of this host is alive: it may still plan item retries."""
        st = self._runner()
        return bool(st and st.runner_host == socket.gethostname() and self.runner_alive())

    def poll(self) -> Facts:
        """The runner is the one element: alive (its pid on this host, or a runner on another host,
        which this host cannot see and so presumes alive) or gone. No scheduler command."""
        st = self._runner()
        alive = self.runner_alive()
        started = st.updated_at if st is not None else 0.0
        runner = Element(
            submission="local",
            index=0,
            submitted_at=started,
            state=SlurmState.RUNNING if alive else SlurmState.COMPLETED,
        )
        return Facts(elements={runner.name: runner}, pool=[runner])

    def cancel(self) -> None:
        st = self._runner()
        if st and st.runner_pid and st.runner_host == socket.gethostname():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(st.runner_pid, signal.SIGTERM)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def held_by_live_worker(st: TaskStatus) -> bool:
    """Whether a worker this runner did not start holds the task: running, its lease not lapsed,
    and its process alive on this host (or on a host this one cannot see)."""
    if st.state != TaskState.RUNNING or st.lease_expires is None or st.lease_expires <= time.time():
        return False
    return owner_alive(st.owner) is not False


def run(backend: Backend, job_id: str, *, max_parallel: int | None = None) -> int:
    """Run every unfinished task of the job with at most ``max_parallel`` workers at once; a task
    whose worker died or was interrupted runs again while its attempts last (the lifecycle keeps
    the count). A task held by a live worker of an earlier runner is left to it. Returns 0 if all
    tasks succeeded, 1 otherwise."""
    job = load_job(backend, job_id)
    cfg = job.config
    from slurmctl.obs.logs import resolve_level

    logging.getLogger().setLevel(resolve_level(None, (cfg.get("logging") or {}).get("level")))
    lc = Lifecycle.of(backend, job_id, cfg)
    n = max_parallel or cfg["executor"].get("max_parallel") or default_parallel()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def runnable(tid: str) -> bool:
        st = lc.task(tid)
        if st is None or st.state in (TaskState.SUCCEEDED, TaskState.CANCELLED):
            return False
        return not (st.state == TaskState.FAILED and not attempts_left(st, lc.max_attempts))

    # Item retries (slurmctl.retry): failed items of finished tasks are planned as tasks finish: a
    # pass after a wave of finished tasks (a 25th of the job's tasks: each pass may make a retry
    # task, whose worker start costs 0.3-1.7 s), at most every ``auto.every_s``.
    # Their retry tasks (those of earlier runners too) join the queue only through ``auto.step``:
    # once their not-before time has passed, and not while the job is paused. A due retry task goes
    # before the tasks still queued, so that its round trip does not wait for the rest of the job.
    wave = max(1, -(-job.tasks // PASSES_PER_JOB))
    auto = AutoRetry(backend, job_id, wave=wave) if cfg["retry"].get("items", True) else None
    waiting = auto.waiting if auto is not None else {}
    todo = sorted(t.task_id for t in lc.tasks() if t.task_id not in waiting and runnable(t.task_id))
    deferred: list[str] = []  # held by a live worker this runner did not start: look again later
    running: dict[str, subprocess.Popen[bytes]] = {}
    spawned: dict[str, TaskStatus | None] = {}  # the record each running worker was started on
    next_look = 0.0
    outage_s = 0.0  # how long the backend has been failing (a storage outage pauses the runner)
    while not stopping:
        try:
            if auto is not None:
                idle = not (todo or running or deferred)
                due = auto.step(force=idle)
                todo[:0] = [t for t in due if t not in running and t not in todo and runnable(t)]
                if idle and not todo:
                    wait = auto.next_due()
                    if wait is None:
                        break  # nothing runs, nothing waits, nothing left to plan
                    time.sleep(min(wait, 0.5))
                    continue
            if not (todo or running or deferred):
                break
            before = set(running)
            next_look = _round(
                lc, backend, job_id, n, todo, deferred, running, spawned, next_look, runnable, stopping
            )
            if auto is not None:
                auto.finished(len(before - set(running)))  # workers that ended
            outage_s = 0.0
        except (StorageError, OSError) as exc:  # OSError: Popen (EAGAIN, ENOMEM)
            outage_s = outage_s * 2 if outage_s else 0.5
            if outage_s > STORAGE_OUTAGE_S:
                raise StorageError(f"the runner gave up after {STORAGE_OUTAGE_S:.0f} s of: {exc}") from exc
            log.warning("backend failing (%s); trying again in %.1f s", exc, outage_s)
            time.sleep(outage_s)
            # A task taken off a list when the failure struck is in none of them now: list again
            # every runnable task no worker of ours runs (a failing read leaves that for next time).
            with contextlib.suppress(StorageError):
                lost = [
                    t.task_id
                    for t in lc.tasks()
                    if runnable(t.task_id)
                    and t.task_id not in running
                    and t.task_id not in deferred
                    and t.task_id not in waiting  # a retry task waits for ``auto.step``
                ]
                todo[:] = sorted(set(todo) | set(lost))
    if stopping:
        for proc in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in running.values():
            proc.wait()
        return 1
    final = lc.refresh_job()
    if final.state != JobState.SUCCEEDED:
        return 1
    out = cfg.get("output") or {}
    if (cfg.get("aggregate") or {}).get("when") == "auto" and out.get("path"):
        # aggregate.when: auto — the last task has published: merge into output.path now.
        from slurmctl.aggregate import aggregate

        m = aggregate(backend, job_id, Path(out["path"]), out.get("format"))
        log.info("merged %d rows into %s (%d nodes merged)", m.rows, m.output_path, m.nodes_run)
    return 0


def _round(
    lc: Lifecycle,
    backend: Backend,
    job_id: str,
    n: int,
    todo: list[str],
    deferred: list[str],
    running: dict[str, subprocess.Popen[bytes]],
    spawned: dict[str, TaskStatus | None],
    next_look: float,
    runnable: Callable[[str], bool],
    stopping: bool,
) -> float:
    """One round of the runner: start workers up to ``n``, reap the ones that ended, look at the
    deferred tasks. Returns when to look at the deferred ones next. Raises StorageError."""
    while todo and len(running) < n:
        tid = todo.pop(0)
        if not runnable(tid):
            continue
        st = lc.task(tid)
        if st is not None and held_by_live_worker(st):
            deferred.append(tid)
            continue
        running[tid] = subprocess.Popen(
            worker_command(backend, job_id, "--task", tid), stdin=subprocess.DEVNULL
        )
        spawned[tid] = st
        log.info("task %s: worker pid %d started", tid, running[tid].pid, extra={"task": tid})
    time.sleep(0.05)
    for tid, proc in list(running.items()):
        code = proc.poll()
        if code is None:
            continue
        del running[tid]
        if stopping:
            continue
        st = lc.task(tid)
        owner = f"{this_host()}:{proc.pid}"
        if st is not None and st.state == TaskState.RUNNING and st.owner == owner:
            # The worker died without a word (SIGKILL, OOM): one failed attempt.
            lc.holder_died(tid, owner, f"worker pid {proc.pid} exited {code} before finishing")
        seen = spawned.pop(tid, None)
        if (
            code not in (EXIT_OK, EXIT_LEASE_LOST, EXIT_RESUME)
            and st is not None
            and seen is not None
            and st.attempt == seen.attempt
        ):
            # It exited before claiming (a missing manifest, a broken environment): without a
            # failure counted here the runner would start it again every 50 ms for ever.
            lc.start_failed(tid, st, f"worker pid {proc.pid} exited {code} before claiming the task")
        if code == EXIT_LEASE_LOST:
            deferred.append(tid)  # another worker holds it; see again when that one is gone
        elif runnable(tid):
            log.warning("task %s: worker exited %s; running it again", tid, code)
            todo.append(tid)
    if deferred and time.monotonic() >= next_look:
        next_look = time.monotonic() + 0.5
        for tid in list(deferred):
            st = lc.task(tid)
            if st is None or not held_by_live_worker(st):
                deferred.remove(tid)
                if runnable(tid) and tid not in running and tid not in todo:
                    todo.append(tid)
    return next_look


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slurmctl.executors.local")
    parser.add_argument("--backend", required=True, help="backend spec (JSON)")
    parser.add_argument("--job", required=True)
    parser.add_argument("--max-parallel", type=int)
    args = parser.parse_args(argv)
    from slurmctl.obs.logs import bind, configure, resolve_level

    configure(resolve_level())
    bind(job=args.job, worker=f"runner:{socket.gethostname()}:{os.getpid()}")
    alerts = None
    try:
        backend = open_backend(json.loads(args.backend))
        from slurmctl.alerts.evaluate import start as start_alerts

        # Alerts look at the job in a thread of their own every alerts.interval_s: never in the way.
        alerts = start_alerts(backend, args.job, load_job(backend, args.job).config)
        code = run(backend, args.job, max_parallel=args.max_parallel)
    except (Exception, KeyboardInterrupt) as exc:
        # Workers already running go on and publish; `slurmctl resubmit JOB` starts a new runner.
        log.error("runner for %s stops: %s", args.job, failure_message(exc, traceback_file=False))
        return exit_code(exc)
    finally:
        if alerts is not None:
            alerts.stop()  # one last look: the job's end resolves its conditions
    log.info("runner done for %s (exit %d)", args.job, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
