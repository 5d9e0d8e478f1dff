"""ENOSPC of the backend root and of the worker scratch ($SLURMCTL_SCRATCH), each on a small tmpfs
(or a loop-mounted image) filled up with a filler file. The failure must be a clear message with
exit code 6 (StorageError, the exit-code table of src/slurmctl/errors.py), no traceback and no exit
70; after the filler is removed, the documented commands finish the job exactly once."""

from __future__ import annotations

import re
from collections import Counter

from tests.faults.harness import (
    FaultJob,
    Result,
    assert_calls,
    assert_clean,
    assert_exactly_once,
    assert_logs_clean,
    committed_ids,
    fill,
    recover,
    small_fs,
    wait_until,
)

FS_BYTES = 8 << 20
SPACE = re.compile(r"no space left|disk is full|disk full|ENOSPC|out of space", re.IGNORECASE)


def assert_says_full(r: Result, job: FaultJob, where: str) -> None:
    """Exit 6 with a message that says the disk is full, where, and no traceback."""
    assert_clean(r, job.replay, codes=(6,))
    assert SPACE.search(r.err), f"exit 6 without saying the disk is full\n{r}\n{job.replay}"
    assert where in r.err, f"the message does not name the full file system ({where})\n{r}\n{job.replay}"


def wait_for_failures_saying_full(job: FaultJob) -> None:
    """Wait until a task record carries an error, then check that every task error says, without a
    traceback, that the disk is full (what ``status`` shows a user), and that ``status`` answers."""
    wait_until(
        lambda: any(t.get("error") for t in job.task_records().values()),
        30, "a task to fail on the full disk", job.replay,
    )  # fmt: skip
    for tid, t in job.task_records().items():
        err = t.get("error")
        if err:
            assert SPACE.search(str(err)) and "Traceback" not in str(err), (
                f"{tid} failed without saying the disk is full: {err!r}\n{job.state_summary()}\n{job.replay}"
            )
    assert_clean(job.cli("status", job.job_id), job.replay, codes=(0,))


def failed_attempts(job: FaultJob) -> Counter[int]:
    """Per item, the attempts of its task beyond the first: on a full disk each may have handled the
    item without being able to commit it, so each may repeat one call."""
    return Counter(
        {
            i: int(t.get("attempt") or 1) - 1
            for tid, t in job.task_records().items()
            for i in job.task_items(tid)
        }
    )


def test_root_full_at_submit_then_resume(new_job, tmp_path):
    with small_fs(tmp_path / "fs", FS_BYTES):
        # staging: copy writes ~1.2 MB of batches into the root; 64 KB are left.
        job = new_job(
            n=3000, items_per_task=500, record_pad=400, staging="copy", root=tmp_path / "fs" / "root"
        )
        filler = fill(tmp_path / "fs", 64 << 10)
        job.replay.note("backend root full (64 KB left) before submit")
        r = job.submit()
        assert job.job_id, f"submit said no job id\n{r}\n{job.replay}"
        assert_says_full(r, job, str(tmp_path / "fs"))
        filler.unlink()
        r = job.cli("submit", str(job.job_file), "--resume", job.job_id)
        assert_clean(r, job.replay, codes=(0,))
        recover(job)
        assert_exactly_once(job)
        assert_calls(job)
        assert_logs_clean(job)


def test_root_full_while_publishing_worker_exits_6_then_resubmit(new_job, tmp_path):
    with small_fs(tmp_path / "fs", FS_BYTES):
        # Rows of ~1 KB: a task's result (~300 KB) does not fit in the 128 KB left.
        job = new_job(n=900, items_per_task=300, pad=1000, root=tmp_path / "fs" / "root")
        r = job.submit("--dry-run")
        assert_clean(r, job.replay, codes=(0,))
        filler = fill(tmp_path / "fs", 128 << 10)
        job.replay.note("backend root full (128 KB left) after partitioning")
        r = job.worker("t0000000")
        assert_says_full(r, job, str(tmp_path / "fs"))
        redo = committed_ids(job.checkpoint("t0000000", 1))
        filler.unlink()
        r = job.cli("resubmit", job.job_id)
        assert_clean(r, job.replay, codes=(0,))
        recover(job)
        assert_exactly_once(job)
        # The failed worker's uncommitted items (if its checkpoint could not commit) may run again.
        allowed = {i: 1 for i in job.task_items("t0000000") if redo is None or i not in redo}
        assert_calls(job, allowed)
        assert_logs_clean(job)


def test_root_full_during_local_job_then_documented_commands(new_job, tmp_path):
    with small_fs(tmp_path / "fs", FS_BYTES):
        job = new_job(n=1500, items_per_task=300, pad=1000, delay_s=0.001, root=tmp_path / "fs" / "root")
        r = job.submit()
        assert_clean(r, job.replay, codes=(0,))
        filler = fill(tmp_path / "fs", 128 << 10)
        job.replay.note("backend root full (128 KB left) right after submit")
        wait_for_failures_saying_full(job)
        filler.unlink()
        job.replay.note("filler removed")
        recover(job)
        assert_exactly_once(job)
        # The checkpoints (on scratch, not full) commit before a failed worker exits: no repeats.
        assert_calls(job)
        assert_logs_clean(job)


def test_scratch_full_worker_exits_6_then_resubmit(new_job, tmp_path):
    with small_fs(tmp_path / "scratchfs", 2 << 20):
        job = new_job(n=900, items_per_task=300, pad=1000, scratch=tmp_path / "scratchfs" / "s")
        r = job.submit("--dry-run")
        assert_clean(r, job.replay, codes=(0,))
        filler = fill(tmp_path / "scratchfs", 48 << 10)
        job.replay.note("scratch full (48 KB left) before the worker starts")
        r = job.worker("t0000000")
        assert_says_full(r, job, str(tmp_path / "scratchfs"))
        redo = committed_ids(job.checkpoint("t0000000", 1))
        filler.unlink()
        r = job.cli("resubmit", job.job_id)
        assert_clean(r, job.replay, codes=(0,))
        recover(job)
        assert_exactly_once(job)
        allowed = {i: 1 for i in job.task_items("t0000000") if redo is None or i not in redo}
        assert_calls(job, allowed)
        assert_logs_clean(job)


def test_scratch_full_during_local_job_then_documented_commands(new_job, tmp_path):
    with small_fs(tmp_path / "scratchfs", 2 << 20):
        job = new_job(n=1500, items_per_task=300, pad=1000, scratch=tmp_path / "scratchfs" / "s")
        filler = fill(tmp_path / "scratchfs", 48 << 10)
        job.replay.note("scratch full (48 KB left) before submit")
        r = job.submit()
        assert_clean(r, job.replay, codes=(0,))
        wait_for_failures_saying_full(job)
        filler.unlink()
        job.replay.note("filler removed")
        recover(job)
        assert_exactly_once(job)
        assert_calls(job, failed_attempts(job))
        assert_logs_clean(job)
