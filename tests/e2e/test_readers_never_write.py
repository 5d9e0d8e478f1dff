"""`status`, `jobs` and `inspect` only read: they show the job state its tasks imply without
storing it (the lifecycle is the one writer of task and job records)."""

from __future__ import annotations

import json
import os

from slurmctl.lifecycle import Lifecycle, set_job_state
from slurmctl.model.states import JobState
from slurmctl.storage.open import open_backend
from slurmctl.worker.runtime import Worker
from tests.e2e.cli import slurmctl, write_job


def snapshot(root):
    """Every file under the state store with its bytes."""
    out = {}
    for dirpath, _dirnames, filenames in os.walk(root / "state"):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            with open(p, "rb") as f:
                out[p] = f.read()
    return out


def test_status_jobs_inspect_never_write(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    mod = "rw_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    (tmp_path / f"{mod}.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(6)))
    job = write_job(
        tmp_path,
        f"name: rw\ninput: {{path: in.jsonl}}\nhandler: {{function: '{mod}:handle'}}\nbatch: {{items: 2}}\n",
    )
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = open_backend({"kind": "local", "root": str(root)})
    set_job_state(backend, job_id, JobState.SUBMITTED)
    w = Worker(backend, job_id)
    for tid in ("t0000000", "t0000001", "t0000002"):  # published, but nobody watches the job
        assert w.run_task(tid) == 0
    before = snapshot(root)
    assert json.loads(slurmctl("status", job_id, "--json", root=root).out)["state"] == "succeeded"
    listed = json.loads(slurmctl("jobs", "--json", root=root).out)
    assert [(j["job_id"], j["state"]) for j in listed] == [(job_id, "succeeded")]
    assert slurmctl("inspect", job_id, "t0000001", root=root).code == 0
    assert slurmctl("inspect", job_id, root=root).code == 0
    assert snapshot(root) == before  # not one record written
    assert Lifecycle(backend, job_id).job().state == JobState.SUBMITTED
