"""`slurmctl logs` of a pilot job on the real dev cluster: each task's lines carry their context (job,
task, attempt, item, worker, host, Slurm job id), `--follow` shows a running task's lines before it
ends, and the metrics summaries have the Slurm queue wait. Small: 2 pilots, 3 tasks of 4 items."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from tests.e2e.test_logs_metrics import HANDLER, SECRET

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def _cancel_own_arrays(tmp_path):
    """A failed or timed-out test must not leave its arrays queued (only this test's own)."""
    yield
    ids = []
    for manifest in tmp_path.glob("**/jobs/*/job.json"):
        doc = json.loads(manifest.read_text())
        ids += [s["array_job_id"] for g in doc.get("groups", []) for s in g.get("submissions", [])]
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def test_pilot_job_logs_with_context_and_follow(slurm_cluster, tmp_path):
    (tmp_path / "obsh.py").write_text(HANDLER)
    with open(tmp_path / "in.jsonl", "w") as f:
        for i in range(12):
            f.write(json.dumps({"n": i}) + "\n")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "name: obsl\ninput: {path: in.jsonl}\nhandler: {function: 'obsh:handle'}\nbatch: {items: 4}\n"
        "resources: {mem_gb: 0.25, time_min: 10}\nexecutor: {kind: slurm, mode: pilot, workers: 2}\n"
        "logging: {level: info}\n"
    )
    root = tmp_path / "root"
    gate = tmp_path / "gate"
    env = dict(os.environ, SLURMCTL_ROOT=str(root), OBS_TEST_GATE=str(gate), OBS_TEST_TOKEN=SECRET)
    r = subprocess.run(
        [sys.executable, "-m", "slurmctl", "submit", str(job_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[-1]
    follower = subprocess.Popen(
        [sys.executable, "-m", "slurmctl", "logs", job_id, "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    followed: list[dict] = []
    backend = open_backend({"kind": "local", "root": str(root)})
    try:
        deadline = time.monotonic() + 600  # the node is shared: the pilots may queue a while
        while not any(d["msg"] == "waiting at the gate" for d in followed):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line, f"the follower ended early: {follower.stderr.read() if follower.stderr else ''}"
            followed.append(json.loads(line))
        assert not backend.objects.exists(keys.done_marker(job_id, "t0000000"))  # still running
        gate.touch()
        follower.wait(timeout=600)
    finally:
        gate.touch()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, follower.stderr.read() if follower.stderr else ""
    while (line := lines.get(timeout=10)) != "":
        followed.append(json.loads(line))
    assert any(d["msg"] == "through the gate" and d["task"] == "t0000000" for d in followed)

    r = subprocess.run(
        [sys.executable, "-m", "slurmctl", "logs", job_id, "--json"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout
    stored = [json.loads(x) for x in r.stdout.splitlines()]
    assert {d["task"] for d in stored} == {"t0000000", "t0000001", "t0000002"}
    arrays = {
        str(s["array_job_id"])
        for g in json.loads(backend.objects.get(keys.job_manifest(job_id)))["groups"]
        for s in g["submissions"]
    }
    for d in stored:
        assert d["job"] == job_id and d["attempt"] == 1 and d["host"], d
        assert d["slurm_job_id"] and ":slurm" in d["worker"], d  # a pilot's Slurm element
    handler_items = sorted(
        d["item"] for d in stored if d["logger"] == "slurmctl.handler" and d["item"] is not None
    )
    assert handler_items == [0, 0, 0, 5, 10]  # item 0: its line, the gate's two; items 5 and 10
    # Every stored line was shown by --follow too, once.
    key = [(d["task"], d["ts"], d["msg"]) for d in stored]
    assert sorted(key) == sorted((d["task"], d["ts"], d["msg"]) for d in followed if d["task"])

    for tid in ("t0000000", "t0000001", "t0000002"):
        done = json.loads(backend.objects.get(keys.done_marker(job_id, tid)))
        manifest = json.loads(backend.objects.get(done["manifest_key"]))
        summary = json.loads(backend.objects.get(manifest["metrics_key"]))
        assert (
            summary["slurm_job_id"] and summary["queue_wait_s"] is not None and summary["queue_wait_s"] >= 0
        )
        assert arrays  # the executor recorded its submissions, the source of the queue wait
