"""SIGKILL of ``slurmctl submit`` itself at each step of the coordinator (tests/faults/killpoint.py),
then the documented recovery: ``submit JOB_FILE --resume JOB`` (the job id is the first thing submit
says), or ``resubmit JOB`` where ``--resume`` says the submission is past that, then ``status --watch``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.faults.harness import (
    assert_calls,
    assert_clean,
    assert_exactly_once,
    assert_logs_clean,
    job_id_of,
    recover,
    run,
)
from tests.faults.killpoint import NEVER_REACHED, POINTS

KILLPOINT = Path(__file__).with_name("killpoint.py")
COUNTED = ("batch", "task-record", "task-queued")  # points that happen once per task: pick the Nth


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_submit_at_each_step_then_resume(new_job, point):
    # staging: copy, so that partitioning writes and commits batch files in the backend root.
    job = new_job(n=300, items_per_task=100, delay_s=0.0005, staging="copy")
    nth = job.replay.rng.randint(1, job.tasks) if point in COUNTED else 1
    argv = [sys.executable, str(KILLPOINT), point, str(nth), "submit", str(job.job_file)]
    r = run(argv, job.env(), job.dir, 120, job.replay)
    job.job_id = job_id_of(r)
    assert r.code != NEVER_REACHED, (
        f"kill point {point} #{nth} was never reached: the step it wraps changed; update "
        f"tests/faults/killpoint.py\n{r}\n{job.replay}"
    )
    assert r.code == -9, f"submit was not killed at {point} #{nth}\n{r}\n{job.replay}"
    assert job.job_id, f"submit said no job id before it was killed at {point}\n{r}\n{job.replay}"
    job.replay.note(f"SIGKILL of submit at {point} #{nth}")
    job.remember_pids()

    r = job.cli("submit", str(job.job_file), "--resume", job.job_id)
    assert_clean(r, job.replay, codes=(0, 5))
    job.replay.note(f"submit --resume: exit {r.code}: {r.err.strip()[-300:]}")
    if r.code == 5:  # past the point --resume carries on from: it must say what to do instead
        assert "slurmctl resubmit" in r.err, f"--resume refused without naming resubmit\n{r}\n{job.replay}"
        r = job.cli("resubmit", job.job_id)
        assert_clean(r, job.replay, codes=(0,))
        job.replay.note(f"resubmit: {r.out.strip()}")
    recover(job)
    assert_exactly_once(job)
    assert_calls(job)  # no worker was killed: one call per item
    assert_logs_clean(job)
