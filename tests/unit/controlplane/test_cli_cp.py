"""``slurmctl cp`` without Slurm: bad input is refused before anything reaches Slurm or the
database (exit 3 unreadable script, 5 unknown project, 2 unknown state), and ``cp jobs`` lists what
the database tracks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from slurmctl.controlplane.domain import Job, ResearchProject
from slurmctl.controlplane.repo import Actor, open_repository


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLURMCTL_DATABASE_URL=url, PATH="/nonexistent")  # no Slurm command reachable
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", "cp", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cp_refuses_bad_input_and_lists_jobs(tmp_path):
    url = f"sqlite:///{tmp_path}/control.db"
    repo = open_repository(url)
    repo.create_project(ResearchProject.build(name="lab", pi="olga"), Actor("olga", "test"))
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    p = _cli(url, "submit", str(tmp_path / "missing.sh"), "-p", "lab", "--cluster", "dev")
    assert p.returncode == 3 and "cannot read" in p.stderr and "Traceback" not in p.stderr
    p = _cli(url, "submit", str(script), "-p", "nolab", "--cluster", "dev")
    assert p.returncode == 5 and "nolab" in p.stderr and "Traceback" not in p.stderr
    assert repo.list_jobs() == []
    job = Job.build(id="j1", kind="sbatch", submitted_by="olga", project="lab", cluster="dev", script="x")
    repo.create_job(job, Actor("olga", "test"))
    p = _cli(url, "jobs", "--project", "lab", "--json")
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(p.stdout)
    assert row["id"] == "j1" and row["state"] == "accepted" and "script" not in row
    assert _cli(url, "jobs", "--state", "done").returncode == 2
    assert "j1\tlab\taccepted" in _cli(url, "jobs", "--state", "accepted").stdout
