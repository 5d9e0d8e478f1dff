"""SIGKILL of ``slurmctl cp submit`` between the accepted commit and sbatch, and between sbatch and
the commit of the Slurm id, on the dev cluster: after ``cp recover`` the job reached Slurm exactly
once (sacct by its token) and the database holds that one id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurmctl.controlplane.domain import JobState, ResearchProject
from slurmctl.controlplane.repo import Actor, open_repository

pytestmark = pytest.mark.slurm

KILLPOINT = Path(__file__).with_name("cp_killpoint.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _slurmctl(url: str, *args: str, point: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [str(KILLPOINT), point] if point else ["-m", "slurmctl"]
    env = dict(os.environ, SLURMCTL_DATABASE_URL=url, PYTHONPATH=f"{SRC}:{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run(
        [sys.executable, *prefix, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def _sacct_ids(token: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-X", "-a", "-n", "-P", "-D", "-S", "now-1hours", f"--name={token}", "-o", "JobIDRaw"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return sorted(set(out.split()))


def _squeue_ids(token: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", f"--name={token}", "-o", "%A"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return sorted(set(out.split()))


@pytest.mark.parametrize("point", ["accepted", "sbatched"])
def test_sigkill_then_recover_reaches_slurm_exactly_once(point, slurm_cluster, tmp_path):
    url = f"sqlite:///{tmp_path}/control.db"
    repo = open_repository(url)
    # root's only association is the account root; the parent only matters to `project sync`.
    repo.create_project(
        ResearchProject.build(name="cpkill", pi="root", slurm_account="root", parent_account="none"),
        Actor("root", "test"),
    )
    script = tmp_path / "job.sh"
    # Not held: sacct -S leaves out jobs that were never eligible (held), and the check is by sacct.
    script.write_text("#!/bin/sh\n#SBATCH --time=1\n#SBATCH --ntasks=1\n#SBATCH --output=/dev/null\ntrue\n")
    ids: list[str] = []
    try:
        killed = _slurmctl(url, "cp", "submit", str(script), "-p", "cpkill", "--cluster", "dev", point=point)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        (v,) = repo.list_jobs()
        token = v.entity.submit_token
        assert v.entity.state == JobState.ACCEPTED and token
        rec = _slurmctl(url, "cp", "recover", "--grace", "0", "--cluster", "dev")
        assert rec.returncode == 0, rec.stdout + rec.stderr
        expect = "1 found in Slurm, 0 submitted" if point == "sbatched" else "0 found in Slurm, 1 submitted"
        assert expect in rec.stdout
        job = repo.get_job(v.entity.id).entity
        ids = list(job.slurm_job_ids)
        assert job.state == JobState.SUBMITTED and len(ids) == 1
        assert _squeue_ids(token) == ids
        for _ in range(30):  # slurmdbd records the submission a moment later than slurmctld
            if _sacct_ids(token):
                break
            time.sleep(1)
        assert _sacct_ids(token) == ids
        again = _slurmctl(url, "cp", "recover", "--grace", "0", "--cluster", "dev")
        assert "0 found in Slurm, 0 submitted" in again.stdout and _squeue_ids(token) == ids
    finally:
        if ids:
            subprocess.run(["scancel", *ids], check=False, timeout=60)
