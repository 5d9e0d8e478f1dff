"""With the S3/DynamoDB endpoint unreachable for 30 s in the middle of a job, the job still
completes and nothing is lost: every call retries with capped back-off until its deadline.

moto keeps its data in memory, so the "outage" is a TCP proxy between the workers and moto that
drops every connection and refuses new ones for 30 s (what a network partition looks like)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurmctl.storage import keys
from slurmctl.storage.open import open_backend

pytestmark = [pytest.mark.aws, pytest.mark.slow]

HANDLER = """
import time

def handle(record, ctx):
    time.sleep(0.02)
    return {"id": record["id"], "double": record["id"] * 2}
"""


def test_job_survives_30s_endpoint_outage(moto: Any, moto_spec: dict[str, Any], tmp_path: Path) -> None:
    from slurmctl_test_aws_servers import CutProxy  # loaded by fixtures.py

    proxy = CutProxy(int(moto.url.rsplit(":", 1)[1]))
    try:
        n = 1200
        with open(tmp_path / "in.jsonl", "w") as f:
            for i in range(n):
                f.write(json.dumps({"id": i}) + "\n")
        (tmp_path / "slow.py").write_text(HANDLER)
        block = {k: moto_spec[k] for k in ("kind", "bucket", "table_prefix", "region")}
        job = {
            "name": "outage",
            "input": {"path": "in.jsonl"},
            "handler": {"function": "slow:handle"},
            "batch": {"items": 100},
            "executor": {"kind": "local", "max_parallel": 2},
            "backend": {**block, "endpoint_url": proxy.url},
        }
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
        env = {**os.environ, "SLURMCTL_ROOT": str(tmp_path / "root")}
        submit = subprocess.Popen(
            [sys.executable, "-m", "slurmctl", "submit", "job.yaml", "--wait"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        direct = open_backend({**block, "endpoint_url": moto.url})  # the test's own view, no proxy

        def done_tasks() -> int:
            jobs = direct.state.scan(keys.JOBS_TABLE)
            if not jobs:
                return 0
            job_id = jobs[0].key
            return sum(
                1
                for t in direct.state.scan(keys.TASKS_TABLE, f"{job_id}/")
                if t.value["state"] == "succeeded"
            )

        deadline = time.monotonic() + 300
        while done_tasks() < 2:
            assert submit.poll() is None, submit.stderr.read() if submit.stderr else ""
            assert time.monotonic() < deadline, "job made no progress"
            time.sleep(0.2)
        proxy.cut()
        during = done_tasks()
        time.sleep(30)
        assert done_tasks() == during  # really cut off: no task could publish meanwhile
        assert submit.poll() is None  # ... and nothing gave up
        proxy.restore()
        out, err = submit.communicate(timeout=600)
        assert submit.returncode == 0, err
        job_id = out.strip().splitlines()[-1]
    finally:
        proxy.close()

    from slurmctl.aggregate import aggregate as merge

    merge(direct, job_id, tmp_path / "out.jsonl", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == list(range(n))
    assert all(r["double"] == 2 * r["id"] for r in rows)
