"""The control plane API on the dev cluster, through a real uvicorn: an sbatch script POSTed twice with
one Idempotency-Key reaches Slurm once, under the project's account, named by its token. The job is
held and cancelled at the end (only this test's job id)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from slurmctl.controlplane.auth import Scope, create_token
from slurmctl.controlplane.domain import ResearchProject
from slurmctl.controlplane.repo import Actor, open_repository
from slurmctl.storage.open import open_backend
from tests.e2e.browser import serving

pytestmark = pytest.mark.slurm
ACTOR = Actor("root", "test")
SCRIPT = "#!/bin/sh\n#SBATCH --hold\n#SBATCH --time=1\n#SBATCH --output=/dev/null\ntrue\n"


def test_api_submission_reaches_slurm_once_under_the_projects_account(slurm_cluster, tmp_path, monkeypatch):
    from slurmctl.server.app import create_app

    monkeypatch.setenv("SLURMCTL_AUDIT_JSONL", "")
    url = f"sqlite:///{tmp_path}/control.db"
    repo = open_repository(url)
    # root's only association is the account root (as in test_cp_poller_slurm.py).
    repo.create_project(
        ResearchProject.build(name="cpapi", pi="root", slurm_account="root", parent_account="none"), ACTOR
    )
    secret = create_token(repo, user="root", name="t", scope=Scope.WRITE, days=1, actor=ACTOR).secret
    app = create_app(
        open_backend({"kind": "local", "root": str(tmp_path / "root")}), database=url, admins=frozenset()
    )
    ids: list[str] = []
    try:
        with serving(app) as base:
            headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "once"}
            body = {"project": "cpapi", "script": SCRIPT}
            answers = [
                httpx.post(f"{base}/api/v1/jobs", json=body, headers=headers, timeout=120) for _ in range(2)
            ]
        assert [a.status_code for a in answers] == [201, 201], answers[0].text
        job = answers[0].json()
        assert answers[1].json() == job and job["state"] == "submitted"
        ids = job["slurm_job_ids"]
        out = subprocess.run(
            ["squeue", "-h", "-n", job["submit_token"], "-o", "%i %a"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert out == [ids[0], "root"]
    finally:
        if ids:
            subprocess.run(["scancel", *ids], check=False, timeout=60)
