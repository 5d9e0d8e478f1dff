"""`slurmctl logs` and `slurmctl metrics` on the local executor, through the CLI: each task's log
stored beside its results with context and without secrets, the filters, `--follow` seeing a running
task's lines before the task ends, and the job's metrics as OpenMetrics text."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from tests.e2e.cli import slurmctl, submit_wait, write_job

HANDLER = """
import os, time
from pathlib import Path

def handle(record, ctx):
    n = record["n"]
    if n % 5 == 0:
        ctx.logger.info("item %d with token %s", n, os.environ.get("OBS_TEST_TOKEN"))
    ctx.metrics.counter("seen")
    ctx.metrics.histogram("n_value", n, buckets=[5, 10])
    gate = os.environ.get("OBS_TEST_GATE")
    if gate and n == 0:
        ctx.logger.warning("waiting at the gate")
        deadline = time.monotonic() + 120
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        ctx.logger.info("through the gate")
    if n == 7:
        raise ValueError("seven is bad")
    return {"n": n}
"""

SECRET = "tok-5ecret-abcdef"


def make_job(tmp: Path, items: int = 20, per_task: int = 5) -> Path:
    (tmp / "obsh.py").write_text(HANDLER)
    with open(tmp / "in.jsonl", "w") as f:
        for i in range(items):
            f.write(json.dumps({"n": i}) + "\n")
    return write_job(
        tmp,
        "name: obs\ninput: {path: in.jsonl}\nhandler: {function: 'obsh:handle'}\n"
        f"batch: {{items: {per_task}}}\noutput: {{format: jsonl}}\n"
        "executor: {kind: local, max_parallel: 2}\n",
    )


def test_logs_of_each_task_with_context_filters_and_metrics(tmp_path):
    root = tmp_path / "root"
    env = {"OBS_TEST_TOKEN": SECRET}
    job_id, r = submit_wait(make_job(tmp_path), root, env=env)
    assert r.code == 9, r.err  # finished with one failed item
    assert SECRET not in r.err

    r = slurmctl("logs", job_id, "--json", root=root)
    assert r.code == 0, r.err
    lines = [json.loads(x) for x in r.out.splitlines()]
    assert SECRET not in r.out
    by_task: dict[str, list[dict]] = {}
    for d in lines:
        assert d["job"] == job_id and d["attempt"] == 1 and d["host"] and d["worker"], d
        by_task.setdefault(d["task"], []).append(d)
    assert sorted(by_task) == [f"t000000{i}" for i in range(4)]
    handler_lines = [d for d in lines if d["logger"] == "slurmctl.handler"]
    assert sorted(d["item"] for d in handler_lines) == [0, 5, 10, 15]
    assert all("[redacted]" in d["msg"] for d in handler_lines)
    failed = [d for d in lines if d["level"] == "warning" and d["item"] == 7]
    assert len(failed) == 1 and "seven is bad" in failed[0]["msg"] and failed[0]["task"] == "t0000001"

    # The manifest references the log and the metrics summary by sha256.
    backend = open_backend({"kind": "local", "root": str(root)})
    done = json.loads(backend.objects.get(keys.done_marker(job_id, "t0000001")))
    manifest = json.loads(backend.objects.get(done["manifest_key"]))
    assert manifest["schema_version"] == 2
    assert backend.objects.head(manifest["log_key"]).sha256 == manifest["log_sha256"]
    summary = json.loads(backend.objects.get(manifest["metrics_key"]))
    assert backend.objects.head(manifest["metrics_key"]).sha256 == manifest["metrics_sha256"]
    assert (summary["items_ok"], summary["items_failed"], summary["failed_by_category"]) == (
        4,
        1,
        {"permanent": 1},
    )
    assert summary["custom"]["counters"] == {"seen": 5}
    assert not list(backend.objects.list(keys.live_logs_prefix(job_id)))  # live logs gone once stored

    r = slurmctl("logs", job_id, "t0000001", "--level", "warning", root=root)
    assert r.code == 0 and r.out.count("\n") == 1 and "item 7 failed" in r.out and "t0000001 a1 #7" in r.out
    r = slurmctl("logs", job_id, "--grep", r"item 1\d with", root=root)
    assert r.code == 0 and r.out.count("\n") == 2, r.out
    assert slurmctl("logs", job_id, "t0000009", root=root).out == ""
    r = slurmctl("logs", job_id, "../x", root=root)
    assert r.code == 5 and "no task" in r.err
    assert slurmctl("logs", "no-such-job", root=root).code == 5
    r = slurmctl("logs", job_id, "--level", "loud", root=root)
    assert r.code == 2 and "not a level" in r.err

    r = slurmctl("metrics", job_id, root=root)
    assert r.code == 0, r.err
    families = {f.name: f for f in text_string_to_metric_families(r.out)}
    value = {s.name: s.value for f in families.values() for s in f.samples if "le" not in s.labels}
    assert value["slurmctl_tasks_published"] == 4
    assert value["slurmctl_items_ok_total"] == 19 and value["slurmctl_items_failed_total"] == 1
    assert value["slurmctl_custom_seen_total"] == 20 and value["slurmctl_custom_n_value_count"] == 20
    assert value["slurmctl_store_calls_total"] > 0


def _reader(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line)
    out.put("")


def test_follow_sees_a_running_tasks_lines(tmp_path):
    root = tmp_path / "root"
    gate = tmp_path / "gate"
    env = dict(os.environ, SLURMCTL_ROOT=str(root), OBS_TEST_GATE=str(gate), OBS_TEST_TOKEN=SECRET)
    r = subprocess.run(
        [sys.executable, "-m", "slurmctl", "submit", str(make_job(tmp_path, items=10, per_task=5))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
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
    threading.Thread(target=_reader, args=(follower, lines), daemon=True).start()
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        while not any(d["msg"] == "waiting at the gate" for d in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line, f"the follower ended early: {follower.stderr.read() if follower.stderr else ''}"
            seen.append(json.loads(line))
        # The task is still running (held at the gate) and its line is already shown.
        backend = open_backend({"kind": "local", "root": str(root)})
        assert not backend.objects.exists(keys.done_marker(job_id, "t0000000"))
        gate.touch()
        follower.wait(timeout=120)
    finally:
        gate.touch()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, follower.stderr.read() if follower.stderr else ""
    while True:
        line = lines.get(timeout=10)
        if not line:
            break
        seen.append(json.loads(line))
    msgs = [(d["task"], d["msg"]) for d in seen]
    assert ("t0000000", "through the gate") in msgs
    # Every line once: the live lines are not repeated when the stored log appears.
    assert len(msgs) == len(set(zip(msgs, [d["ts"] for d in seen], strict=True)))
    assert sum(1 for t, m in msgs if m == "waiting at the gate") == 1
    assert {t for t, _ in msgs} == {"t0000000", "t0000001"}
    assert all(SECRET not in m for _, m in msgs)
