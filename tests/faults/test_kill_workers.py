"""SIGKILL of workers at random points of a running local job, then the documented recovery."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter

import pytest

from tests.faults.harness import (
    TERMINAL,
    FaultJob,
    alive,
    assert_calls,
    assert_clean,
    assert_exactly_once,
    assert_logs_clean,
    committed_ids,
    owner_pid,
    recover,
    wait_until,
)

MAX_ATTEMPTS = 3  # retry.max_attempts' default: a task may lose at most 2 workers and still run


def kill_running_workers(job: FaultJob, kills: int, *, max_per_task: int = MAX_ATTEMPTS - 1) -> Counter[int]:
    """SIGKILL ``kills`` workers of running tasks at random moments (a task at most ``max_per_task``
    times, so its attempts are not used up by the test). Returns, per item, how many kills found it
    not committed in the killed attempt's checkpoint: the handler calls those kills may repeat."""
    rng = job.replay.rng
    host = socket.gethostname()
    allowed: Counter[int] = Counter()
    per_task: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    done = 0
    while done < kills and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 1.5))
        if job.job_record().get("state") in TERMINAL:
            break
        running = []
        for tid, t in sorted(job.task_records().items()):
            pid = owner_pid(t.get("owner"), host)
            if t.get("state") == "running" and pid and per_task[tid] < max_per_task and alive(pid):
                running.append((tid, pid, int(t["attempt"])))
        if not running:
            continue
        tid, pid, attempt = rng.choice(running)
        job.pids.add(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        wait_until(lambda pid=pid: not alive(pid), 10, f"killed worker {pid} to end", job.replay)
        committed = committed_ids(job.checkpoint(tid, attempt))
        items = job.task_items(tid)
        # Unreadable checkpoint: the kill may have repeated any item of the task.
        redo = [i for i in items if committed is None or i not in committed]
        allowed.update(redo)
        per_task[tid] += 1
        done += 1
        job.replay.note(
            f"SIGKILL worker pid {pid} of {tid} attempt {attempt}: "
            f"{'unreadable checkpoint' if committed is None else f'{len(committed)} items committed'} "
            f"({'a' if job.checkpoint(tid, attempt).exists() else 'no'} checkpoint file), "
            f"{len(redo)} may be handled again"
        )
    return allowed


@pytest.mark.parametrize("kills", [2, 4])
def test_sigkill_workers_then_watch_is_exactly_once(new_job, kills):
    # 5 tasks of 500 items at ~3 ms each: ~1.5 s per task, two at a time; checkpoints commit every
    # 1 s, so a kill finds some tasks with committed items and some without.
    job = new_job(n=2500, items_per_task=500, delay_s=0.003)
    r = job.submit()
    assert_clean(r, job.replay, codes=(0,))
    allowed = kill_running_workers(job, kills)
    assert job.replay.notes, f"the job ended before a worker could be killed\n{job.replay}"
    recover(job)
    assert_exactly_once(job)
    assert_calls(job, allowed)
    assert_logs_clean(job)
