"""SIGKILL of the local runner (the job record's ``runner_pid``) mid-job, then ``resubmit`` and
``status --watch``. No worker is killed: every item must be handled exactly once."""

from __future__ import annotations

import os
import signal
import time

from tests.faults.harness import (
    alive,
    assert_calls,
    assert_clean,
    assert_exactly_once,
    assert_logs_clean,
    recover,
    wait_until,
)


def test_sigkill_runner_then_resubmit_is_exactly_once(new_job):
    job = new_job(n=2500, items_per_task=500, delay_s=0.003)
    r = job.submit()
    assert_clean(r, job.replay, codes=(0,))
    pid = int(job.job_record().get("runner_pid") or 0)
    assert pid, f"the job record names no runner_pid after submit\n{job.state_summary()}\n{job.replay}"
    job.pids.add(pid)
    # Mid-job: at a random moment once some task runs.
    wait_until(
        lambda: any(t.get("state") == "running" for t in job.task_records().values()),
        30, "a running task", job.replay,
    )  # fmt: skip
    time.sleep(job.replay.rng.uniform(0.0, 2.5))
    job.remember_pids()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 10, f"runner {pid} to end", job.replay)
    states = sorted(f"{k}={v.get('state')}" for k, v in job.task_records().items())
    job.replay.note(f"SIGKILL runner pid {pid}; tasks then: {' '.join(states)}")
    r = job.cli("resubmit", job.job_id)
    assert_clean(r, job.replay, codes=(0,))
    job.replay.note(f"resubmit: {r.out.strip()}")
    recover(job)
    assert_exactly_once(job)
    assert_calls(job)  # no worker was killed: one call per item
    assert_logs_clean(job)
