"""The Slurm adapter against the real dev cluster (scripts/dev-cluster up)."""

# ruff: noqa: F811  -- pytest fixtures imported from tests/slurm_fixtures.py are redefined as arguments
from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, home of slurm_fixtures
from slurm_fixtures import (  # noqa: F401
    slurm_client,
    slurm_cluster,
    slurm_jobs,
    wait_for_jobs,
)

from slurmctl.errors import SubmissionError
from slurmctl.slurm import JobState, SlurmClient, Snapshot, StatusWatcher
from slurmctl.slurm.doctor import run_slurm_checks

pytestmark = pytest.mark.slurm


def now() -> datetime:
    return datetime.now().astimezone()


def test_array_watched_to_completion_with_one_command_per_poll(slurm_client: SlurmClient, slurm_jobs):
    t0 = now()
    job = slurm_client.sbatch(
        wrap="sleep 0.2; [ $SLURM_ARRAY_TASK_ID -ne 5 ]",
        options={"array": "0-11", "job-name": "it-array", "output": "/dev/null", "time": "5"},
    )
    slurm_jobs.append(job)
    runner = slurm_client.runner
    per_poll: list[int] = []
    last = [sum(runner.executions.values())]

    def on_poll(_snap: Snapshot) -> None:
        total = sum(runner.executions.values())
        per_poll.append(total - last[0])
        last[0] = total

    watcher = StatusWatcher(slurm_client, [job], submitted_at=t0, expected_tasks={job: 12})
    snap = watcher.wait(timeout=240, on_poll=on_poll)
    assert per_poll and set(per_poll) == {1}, per_poll  # exactly one Slurm command per poll
    assert runner.calls["sbatch"] == 1
    assert runner.calls["squeue"] + runner.calls["sacct"] == len(per_poll)
    states = dict(snap.jobs[job].task_states())
    assert sorted(states) == list(range(12))
    assert states[5] is JobState.FAILED
    assert all(s is JobState.COMPLETED for t, s in states.items() if t != 5)


def test_cancel_running_job_and_read_sacct_steps(slurm_client: SlurmClient, slurm_jobs):
    t0 = now()
    job = slurm_client.sbatch(
        wrap="srun sleep 300", options={"job-name": "it-cancel", "output": "/dev/null", "time": "10"}
    )
    slurm_jobs.append(job)
    watcher = StatusWatcher(slurm_client, [job], submitted_at=t0)
    for _ in range(120):
        watcher.poll()
        if watcher.jobs[job].state is JobState.RUNNING:
            break
        time.sleep(min(watcher.interval or 1, 2))
    assert watcher.jobs[job].state is JobState.RUNNING
    # RUNNING comes before the batch script has started its srun step (on a loaded node, seconds
    # before): cancel once the step exists, so that sacct has a step `.0` to report.
    for _ in range(60):
        if f"{job}.0" in {r.job_id for r in slurm_client.sacct([job], start=t0)}:
            break
        time.sleep(1)
    slurm_client.scancel([job])
    snap = wait_for_jobs(slurm_client, [job], submitted_at=t0, timeout=120)
    assert snap.jobs[job].state is JobState.CANCELLED
    # slurmdbd may lag slurmctld by a moment; poll sacct until the steps have their final states.
    rows = []
    for _ in range(60):
        rows = slurm_client.sacct([job], start=t0)
        by_id = {r.job_id: r for r in rows}
        if f"{job}.0" in by_id and by_id[f"{job}.0"].state.is_terminal and by_id[job].state.is_terminal:
            break
        time.sleep(1)
    by_id = {r.job_id: r for r in rows}
    assert by_id[job].state is JobState.CANCELLED
    assert by_id[job].state_text.startswith("CANCELLED by ")
    assert {f"{job}.batch", f"{job}.0"} <= set(by_id)
    assert by_id[f"{job}.0"].fields["JobName"] == "sleep"


def test_sacct_steps_of_a_finished_job(slurm_client: SlurmClient, slurm_jobs):
    t0 = now()
    job = slurm_client.sbatch(
        script_text="#!/bin/sh\nsrun -n1 true\nsrun -n1 sleep 0.5\n",
        options={"job-name": "it-steps", "output": "/dev/null", "time": "5"},
    )
    slurm_jobs.append(job)
    wait_for_jobs(slurm_client, [job], submitted_at=t0)
    rows = []
    for _ in range(60):
        rows = slurm_client.sacct([job], start=t0)
        ids = {r.job_id: r for r in rows}
        # slurmdbd may still hold the allocation as PENDING for a moment after the steps are in.
        if {f"{job}.batch", f"{job}.0", f"{job}.1"} <= set(ids) and ids[job].state.is_terminal:
            break
        time.sleep(1)
    by_id = {r.job_id: r for r in rows}
    assert by_id[job].state is JobState.COMPLETED and by_id[job].exit_code == (0, 0)
    assert [by_id[f"{job}.{s}"].state for s in ("batch", "0", "1")] == [JobState.COMPLETED] * 3
    assert not any(r.is_step for r in slurm_client.sacct([job], start=t0, allocations_only=True))


def test_show_config_reads_max_array_size(slurm_client: SlurmClient):
    config = slurm_client.config()
    assert config.max_array_size is not None and config.max_array_size >= 2
    assert config.accounting_enabled
    assert slurm_client.scontrol_show_config()["MaxArraySize"] == str(config.max_array_size)


def test_gpu_job_has_gres_in_alloc_tres(slurm_client: SlurmClient, slurm_jobs):
    t0 = now()
    job = slurm_client.sbatch(
        wrap="true", options={"gres": "gpu:a100:1", "job-name": "it-gpu", "output": "/dev/null", "time": "5"}
    )
    slurm_jobs.append(job)
    wait_for_jobs(slurm_client, [job], submitted_at=t0)
    tres: dict[str, str] = {}
    for _ in range(60):
        rows = slurm_client.sacct([job], start=t0, allocations_only=True)
        tres = rows[0].alloc_tres if rows else {}
        if tres:
            break
        time.sleep(1)
    assert tres.get("gres/gpu:a100") == "1" and tres.get("gres/gpu") == "1"


def test_over_memory_job_fails(slurm_client: SlurmClient, slurm_jobs):
    t0 = now()
    job = slurm_client.sbatch(
        wrap=f"{sys.executable} -c 'import time; b = bytearray(400 << 20); time.sleep(30)'",
        options={"mem": "64M", "job-name": "it-oom", "output": "/dev/null", "time": "5"},
    )
    slurm_jobs.append(job)
    wait_for_jobs(slurm_client, [job], submitted_at=t0)
    row = None
    for _ in range(60):
        rows = slurm_client.sacct([job], start=t0, allocations_only=True)
        row = rows[0] if rows else None
        if row is not None and row.state.is_terminal:
            break
        time.sleep(1)
    assert row is not None
    # Without cgroups (this container) OverMemoryKill kills the step: FAILED with signal 9, not OUT_OF_MEMORY.
    if row.state is JobState.FAILED:
        assert row.exit_code == (0, 9)
    else:
        assert row.state is JobState.OUT_OF_MEMORY  # a cluster with cgroup memory enforcement


def test_requeue_puts_job_back_to_pending(slurm_client: SlurmClient, slurm_jobs):
    t0 = now()
    job = slurm_client.sbatch(
        wrap="sleep 120", options={"job-name": "it-requeue", "output": "/dev/null", "time": "5"}
    )
    slurm_jobs.append(job)
    watcher = StatusWatcher(slurm_client, [job], submitted_at=t0)
    for _ in range(120):
        watcher.poll()
        if watcher.jobs[job].state is JobState.RUNNING:
            break
        time.sleep(1)
    assert watcher.jobs[job].state is JobState.RUNNING
    slurm_client.scontrol_requeue(job)
    states = set()
    for _ in range(30):
        rows = slurm_client.squeue([job])
        states = {r.state for r in rows}
        if JobState.PENDING in states:
            break
        time.sleep(0.5)
    assert states == {JobState.PENDING}  # Slurm 22.05 holds it back with Reason=BeginTime for ~2 min


def test_definitive_submission_errors_are_not_retried(slurm_client: SlurmClient):
    with pytest.raises(SubmissionError) as err:
        slurm_client.sbatch(wrap="true", options={"partition": "nosuch", "output": "/dev/null"})
    assert "Invalid partition" in err.value.stderr
    with pytest.raises(SubmissionError) as err:
        slurm_client.sbatch(wrap="true", options={"array": "0-5000000", "output": "/dev/null"})
    assert "Invalid job array specification" in err.value.stderr
    assert slurm_client.runner.executions["sbatch"] == 2  # one process each: no retries


def test_squeue_of_unknown_job_is_empty(slurm_client: SlurmClient):
    assert slurm_client.squeue(["999999"]) == []
    assert slurm_client.squeue(["999998", "999999"]) == []


def test_doctor_checks_pass_on_the_dev_cluster(slurm_client: SlurmClient):
    findings = run_slurm_checks(slurm_client)
    assert [f for f in findings if not f.ok] == []
    assert {"controller", "max_array_size", "accounting", "scratch"} <= {f.check for f in findings}


@pytest.mark.slurm
def test_find_names_lists_a_job_cancelled_while_held(slurm_cluster, slurm_client, slurm_jobs):
    """A job that was never eligible (held, then cancelled) is in sacct only when the query names
    states; the control plane's recovery depends on finding it by its name."""
    import uuid
    from datetime import UTC, timedelta

    name = f"slurmctl-test-{uuid.uuid4().hex[:12]}"
    since = datetime.now(UTC) - timedelta(minutes=1)
    job_id = slurm_client.sbatch(
        wrap="true", options={"hold": True, "time": 1, "job-name": name, "output": "/dev/null"}
    )
    slurm_jobs.append(job_id)
    assert slurm_client.find_names_in_queue([name, "no-such-name"]) == {name: job_id}
    slurm_client.scancel([job_id])
    found: dict[str, str] = {}
    for _ in range(30):  # slurmdbd records the end a moment after slurmctld
        found = slurm_client.find_names_in_accounting([name], since)
        if found:
            break
        time.sleep(1)
    assert found == {name: job_id}
