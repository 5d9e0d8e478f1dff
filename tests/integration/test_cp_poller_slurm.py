"""The control plane's poller on the dev cluster: 50 held jobs submitted through ``Submitter`` are
tracked by ``slurmctl cp poll`` with one squeue call per poll and no sacct (squeue still knows them
all); jobs cancelled in Slurm become cancelled in the database. Every Slurm command goes through a
PATH shim that logs it. Only this test's job ids are cancelled (at the end, and at teardown)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from slurmctl.controlplane.domain import JobState, ResearchProject
from slurmctl.controlplane.repo import Actor, open_repository
from slurmctl.controlplane.submit import Submitter
from slurmctl.slurm.client import SlurmClient
from slurmctl.slurm.runner import CommandRunner

pytestmark = pytest.mark.slurm

SRC = Path(__file__).resolve().parents[2] / "src"
N = 50
ACTOR = Actor("root", "test")


def _shim(tmp: Path) -> tuple[str, Path]:
    log = tmp / "slurm-calls.log"
    log.touch()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name in ("squeue", "sacct", "sbatch"):
        real = shutil.which(name)
        assert real, f"{name} not on PATH"
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexec {real} "$@"\n')
        shim.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", log


def _calls(log: Path) -> Counter[str]:
    counts = Counter(line.split(" ", 1)[0] for line in log.read_text().splitlines())
    log.write_text("")
    return counts


def test_fifty_held_jobs_one_squeue_per_poll(slurm_cluster, tmp_path):
    path, log = _shim(tmp_path)
    url = f"sqlite:///{tmp_path}/control.db"
    repo = open_repository(url)
    # root's only association is the account root; the parent only matters to `project sync`.
    repo.create_project(
        ResearchProject.build(name="cppoll", pi="root", slurm_account="root", parent_account="none"), ACTOR
    )
    client = SlurmClient(CommandRunner(timeout=60, env=dict(os.environ, PATH=path)))
    sub = Submitter(repo, client, cluster="dev")
    script = "#!/bin/sh\n#SBATCH --hold\n#SBATCH --time=1\n#SBATCH --output=/dev/null\ntrue\n"
    ids: list[str] = []
    try:
        for _ in range(N):
            v = sub.submit(sub.accept(project="cppoll", script=script, actor=ACTOR), ACTOR)
            ids += v.entity.slurm_job_ids
        assert len(ids) == N and _calls(log) == Counter(sbatch=N)

        def poll(n: int) -> list[str]:
            env = dict(os.environ, PATH=path, PYTHONPATH=f"{SRC}:{os.environ.get('PYTHONPATH', '')}")
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "slurmctl",
                    "cp",
                    "poll",
                    "--polls",
                    str(n),
                    "--cluster",
                    "dev",
                    "--url",
                    url,
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                check=False,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            return out.stdout.splitlines()

        assert poll(3) == [f"poll: {N} tracked, 0 changed, 0 not found in Slurm"] * 3
        assert _calls(log) == Counter(squeue=3)

        subprocess.run(["scancel", *ids[:5]], check=True, timeout=60)
        assert poll(1) == [f"poll: {N} tracked, 5 changed, 0 not found in Slurm"]
        assert _calls(log) == Counter(squeue=1)
        states = Counter(v.entity.state for v in repo.list_jobs(limit=1000))
        assert states == {JobState.CANCELLED: 5, JobState.SUBMITTED: N - 5}
    finally:
        if ids:
            subprocess.run(["scancel", *ids], check=False, timeout=60)
