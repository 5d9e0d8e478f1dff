"""A storage outage mid-job on the local backend, made real: the root directory is renamed away (every
path under it fails with ENOENT, as when a shared file system is unmounted) or turns read-only (EROFS,
a read-only bind mount), for a random one to three seconds while workers run; then it comes back and
the documented commands must finish the job exactly once. Nothing is killed: no item is handled twice
beyond what a failed worker could not commit (it commits before it exits, so: none)."""

from __future__ import annotations

import os
import time

from tests.faults.harness import (
    FaultJob,
    assert_calls,
    assert_clean,
    assert_exactly_once,
    assert_logs_clean,
    read_only,
    recover,
    wait_until,
)


def start_job(job: FaultJob) -> None:
    r = job.submit()
    assert_clean(r, job.replay, codes=(0,))
    job.remember_pids()
    wait_until(
        lambda: any(t.get("state") == "running" for t in job.task_records().values()),
        30, "a running task", job.replay,
    )  # fmt: skip
    time.sleep(job.replay.rng.uniform(0.0, 1.0))
    job.remember_pids()


def test_root_renamed_away_mid_job_then_documented_commands(new_job, tmp_path):
    job = new_job(n=2000, items_per_task=400, delay_s=0.002)
    start_job(job)
    away, stray = tmp_path / "root.away", tmp_path / "root.written-during-outage"
    outage = job.replay.rng.uniform(1.0, 3.0)
    os.rename(job.root, away)
    try:
        job.replay.note(f"root renamed away for {outage:.2f} s")
        time.sleep(outage)
    finally:
        # A process that recreated the root while it was away wrote into a new, empty tree (on a
        # real shared file system: into the bare mount point). Keep that tree aside as evidence.
        if job.root.exists():
            os.rename(job.root, stray)
        os.rename(away, job.root)
    written = sorted(str(p.relative_to(stray)) for p in stray.rglob("*")) if stray.exists() else []
    if written:
        job.replay.note(
            f"while the root was away, {len(written)} path(s) were created in a new root: {written[:12]}"
        )
    recover(job)
    assert_exactly_once(job)
    assert_calls(job)
    assert_logs_clean(job)
    assert not written, (
        f"while the root was away, slurmctl recreated {job.root} and wrote into it instead of failing "
        f"(a split tree on a shared file system): {written[:20]}\n{job.replay}"
    )


def test_root_read_only_mid_job_then_documented_commands(new_job):
    job = new_job(n=2000, items_per_task=400, delay_s=0.002)
    start_job(job)
    outage = job.replay.rng.uniform(1.0, 3.0)
    with read_only(job.root):
        job.replay.note(f"root read-only (EROFS) for {outage:.2f} s")
        time.sleep(outage)
    recover(job)
    assert_exactly_once(job)
    assert_calls(job)
    assert_logs_clean(job)
