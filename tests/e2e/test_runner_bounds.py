"""The local runner counts a worker that exits before claiming its task (a missing task manifest,
a broken environment) as a failed attempt: the job ends failed instead of respawning for ever."""

from __future__ import annotations

import json

from slurmctl.storage import keys
from tests.e2e.cli import slurmctl, write_job


def test_a_worker_that_cannot_start_uses_up_the_attempts(tmp_path):
    (tmp_path / "rb_h.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(4)))
    job = write_job(
        tmp_path,
        "name: rb\ninput: {path: in.jsonl}\nhandler: {function: 'rb_h:handle'}\nbatch: {items: 2}\n"
        "executor: {kind: local, max_parallel: 1}\n",
    )
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    (root / keys.task_manifest(job_id, "t0000001")).unlink()  # its worker fails before claiming it
    r = slurmctl("resubmit", job_id, root=root)
    assert r.code == 0, r.err
    r = slurmctl("status", job_id, "--watch", root=root, timeout=120)
    assert r.code == 1, r.out + r.err
    st = json.loads(slurmctl("status", job_id, "--json", root=root).out)
    assert st["state"] == "failed" and st["task_states"]["succeeded"] == 1
    assert "before claiming" in st["failed_tasks"][0]["error"]
