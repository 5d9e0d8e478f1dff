"""`slurmctl pause` / `resume` of a pilot job on the real dev cluster: one scontrol call each
(counted by a PATH shim in front of every Slurm command), the pending pilots held (squeue shows
the hold as their reason), no task claimed while paused (task records against the job's events),
and the job completes after the resume."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from slurmctl.coordinator import load_job
from slurmctl.lifecycle import task_statuses
from slurmctl.model.states import TaskState
from slurmctl.storage.local import local_backend
from tests.e2e.cli import slurmctl
from tests.e2e.test_job_control import check_no_claim_while_paused, make_job, wait_for

pytestmark = pytest.mark.slurm

SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo")


def shim(tmp: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose Slurm commands log their argv to a file, then run the real ones."""
    bin_dir, log = tmp / "shim", tmp / "slurm-calls.log"
    bin_dir.mkdir()
    for name in SLURM_COMMANDS:
        real = subprocess.run(["which", name], capture_output=True, text=True, check=True).stdout.strip()
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexec {real} "$@"\n')
        script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def arrays(tmp_path):
    """Array ids to cancel at teardown, whatever happened."""
    ids: list[str] = []
    yield ids
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def test_pause_resume_pilot_job(slurm_cluster, tmp_path, arrays):
    root = tmp_path / "root"
    # 20 tasks of ~0.8 s; 4 pilots, at most 2 running at once: 2 stay pending until the end.
    job = make_job(
        tmp_path,
        40,
        2,
        0.4,
        executor="{kind: slurm, mode: pilot, workers: 4}\nresources: {mem_gb: 0.25, array_throttle: 2}",
    )
    r = slurmctl("submit", str(job), root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = local_backend(root)
    array_id = load_job(backend, job_id).groups[0].submissions[0]["array_job_id"]
    arrays.append(array_id)
    wait_for(lambda: any(t.state == TaskState.SUCCEEDED for t in task_statuses(backend, job_id)), what="task")

    env, log = shim(tmp_path)
    r = slurmctl("pause", job_id, root=root, env=env)
    assert r.code == 0, r.err
    assert calls(log) == [f"scontrol hold {array_id}"]
    q = subprocess.run(
        ["squeue", "-h", "-j", array_id, "-t", "PD", "-o", "%i %r"],
        capture_output=True,
        text=True,
        check=True,
    )
    pending = q.stdout.split("\n")[0].split()
    assert pending and pending[1].startswith("JobHeld"), q.stdout

    wait_for(
        lambda: not any(t.state == TaskState.RUNNING for t in task_statuses(backend, job_id)), what="idle job"
    )
    time.sleep(4)  # the waiting pilots look at the job record every 2 s
    left = [t for t in task_statuses(backend, job_id) if t.state != TaskState.SUCCEEDED]
    assert left and all(t.state == TaskState.QUEUED and t.attempt == 0 for t in left)
    assert "paused" in slurmctl("status", job_id, root=root).out.splitlines()[0]

    log.unlink()
    r = slurmctl("resume", job_id, root=root, env=env)
    assert r.code == 0, r.err
    assert calls(log) == [f"scontrol release {array_id}"]
    q = subprocess.run(
        ["squeue", "-h", "-j", array_id, "-o", "%r"], capture_output=True, text=True, check=True
    )
    assert "JobHeld" not in q.stdout

    r = slurmctl("status", job_id, "--watch", root=root, timeout=600)
    assert r.code == 0, r.err + r.out
    check_no_claim_while_paused(root, job_id)
    out = tmp_path / "o.jsonl"
    assert slurmctl("results", job_id, "-o", str(out), root=root).code == 0
    assert sorted(json.loads(line)["n"] for line in out.read_text().splitlines()) == list(range(40))
