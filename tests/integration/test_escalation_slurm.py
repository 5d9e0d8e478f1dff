"""Resource escalation on the dev cluster: a task that Slurm kills for memory (OverMemoryKill,
``JobAcctGatherParams=OverMemoryKill``, sampled every 2 s) runs again with memory x 2 and
succeeds, in array and in pilot mode (a pilot never runs an escalated task: it goes into an array
of its own)."""

from __future__ import annotations

import json
import subprocess

import pytest

from slurmctl.lifecycle import task_statuses
from slurmctl.storage.local import local_backend
from tests.e2e.cli import submit_wait

pytestmark = pytest.mark.slurm

# ~300 MB held for 5 s: over 256 MB with the worker's own memory, under 512 MB.
HANDLER = """
import time

def handle(record, ctx):
    block = bytearray(300 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return {"n": record["n"], "mb": len(block) >> 20}
"""


@pytest.mark.parametrize("executor", ["{kind: slurm}", "{kind: slurm, mode: pilot, workers: 1}"])
def test_memory_killed_task_runs_again_with_more_memory(slurm_cluster, tmp_path, executor):
    (tmp_path / "h.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text(json.dumps({"n": 1}) + "\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: esc\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 1}\n"
        "resources: {mem_gb: 0.25}\nretry: {max_attempts: 3, escalate: {memory_factor: 2.0}}\n"
        f"executor: {executor}\n"
    )
    root = tmp_path / "root"
    try:
        job_id, r = submit_wait(job, root, timeout=240)
    finally:
        manifests = [json.loads(m.read_text()) for m in root.glob("jobs/*/job.json")]
        ids = [s["array_job_id"] for m in manifests for g in m.get("groups", []) for s in g["submissions"]]
        if ids:
            subprocess.run(["scancel", *ids], check=False)
    assert job_id and r.code == 0, r.err
    (st,) = task_statuses(local_backend(root), job_id)
    assert st.state == "succeeded" and st.attempt == 2 and st.failures == 1
    assert st.resources == {"mem_mb": 512, "time_min": None, "steps": 1, "attempt": 1}
    (manifest,) = manifests
    first, second = manifest["groups"]
    assert second["mode"] == "array" and second["task_ids"] == ["t0000000"]
    scripts = sorted((root / "jobs" / job_id).rglob("*.sbatch"))
    assert ["--mem=256M" in s.read_text() for s in scripts] == [True, False]
    assert "#SBATCH --mem=512M" in scripts[1].read_text()
    # what sacct says of the first run: killed by signal 9 with a memory limit of 256 MB
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", first["submissions"][0]["array_job_id"], "-o", "State,ExitCode"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["FAILED|0:9"], out


def test_timed_out_task_runs_again_with_more_time(slurm_cluster, tmp_path):
    """--time=1 and an item that takes 70 s: Slurm ends the element TIMEOUT (OverTimeLimit 0,
    KillWait 5 s on the dev cluster); the task runs again with --time=2 (partition debug:
    MaxTime UNLIMITED, the factor alone) and succeeds. About 2.5 minutes: Slurm's time limits
    are whole minutes."""
    (tmp_path / "h.py").write_text(
        "import time\n\ndef handle(record, ctx):\n    time.sleep(70)\n    return {'n': record['n']}\n"
    )
    (tmp_path / "in.jsonl").write_text(json.dumps({"n": 1}) + "\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: esct\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 1}\n"
        "resources: {time_min: 1}\nretry: {max_attempts: 3}\n"
        "executor: {kind: slurm, signal_lead_s: 10}\n"
    )
    root = tmp_path / "root"
    try:
        job_id, r = submit_wait(job, root, timeout=420)
    finally:
        manifests = [json.loads(m.read_text()) for m in root.glob("jobs/*/job.json")]
        ids = [s["array_job_id"] for m in manifests for g in m.get("groups", []) for s in g["submissions"]]
        if ids:
            subprocess.run(["scancel", *ids], check=False)
    assert job_id and r.code == 0, r.err
    (st,) = task_statuses(local_backend(root), job_id)
    assert st.state == "succeeded" and st.attempt == 2 and st.failures == 1
    assert st.resources == {"mem_mb": None, "time_min": 2, "steps": 1, "attempt": 1}
    scripts = sorted((root / "jobs" / job_id).rglob("*.sbatch"))
    assert ["#SBATCH --time=1\n" in s.read_text() for s in scripts] == [True, False]
    assert "#SBATCH --time=2\n" in scripts[1].read_text()
    first = manifests[0]["groups"][0]["submissions"][0]["array_job_id"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", first, "-o", "State"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["TIMEOUT"], out
