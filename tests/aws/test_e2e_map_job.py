"""A sample map job end to end on the aws backend (S3 + DynamoDB on moto) with the local
executor, through the real CLI; its merged output must equal the local backend's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "textstats"

pytestmark = [pytest.mark.aws, pytest.mark.slow]


def write_input(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            words = " ".join(f"w{(i * 7 + j) % 11}" for j in range(i % 17 + 1))
            f.write(json.dumps({"id": i, "text": f"{words} end."}) + "\n")


def write_job(path: Path, backend: dict[str, Any]) -> None:
    job = {
        "name": "textstats-e2e",
        "input": {"path": "docs.jsonl"},
        "handler": {"function": "textstats:handle", "python_path": [str(EXAMPLES)]},
        "batch": {"items": 150},
        "executor": {"kind": "local", "max_parallel": 2},
        "backend": backend,
    }
    path.write_text(yaml.safe_dump(job))


def submit(job_file: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "slurmctl", "submit", str(job_file), "--wait"],
        cwd=job_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def merged_rows(spec: dict[str, Any], job_id: str, out: Path) -> list[dict[str, Any]]:
    from slurmctl.aggregate import aggregate as merge
    from slurmctl.storage.open import open_backend

    merge(open_backend(spec), job_id, out, "jsonl")
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_map_job_on_aws_matches_local(moto_spec: dict[str, Any], tmp_path: Path) -> None:
    write_input(tmp_path / "docs.jsonl", 1000)
    # SLURMCTL_ROOT (= --root) wins over the job file's backend.root, so the local job uses it.
    env = {**os.environ, "SLURMCTL_ROOT": str(tmp_path / "local-root")}
    local_spec = {"kind": "local", "root": str(tmp_path / "local-root")}
    aws_block = {
        k: v
        for k, v in moto_spec.items()
        if k in ("kind", "bucket", "table_prefix", "region", "endpoint_url")
    }

    write_job(tmp_path / "local.yaml", {"kind": "local"})
    write_job(tmp_path / "aws.yaml", aws_block)
    local_job = submit(tmp_path / "local.yaml", env)
    aws_job = submit(tmp_path / "aws.yaml", env)

    local_rows = merged_rows(local_spec, local_job, tmp_path / "local.jsonl")
    aws_rows = merged_rows(aws_block, aws_job, tmp_path / "aws.jsonl")
    assert len(aws_rows) == 1000
    assert aws_rows == local_rows
    assert (tmp_path / "aws.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()

    # Everything really lives in S3 / DynamoDB: the task records and .done markers are there.
    from slurmctl.storage import keys
    from slurmctl.storage.open import open_backend

    backend = open_backend(aws_block)
    tasks = backend.state.scan(keys.TASKS_TABLE, keys.task_states_prefix(aws_job))
    assert len(tasks) == 7 and all(t.value["state"] == "succeeded" for t in tasks)
    assert all(backend.objects.exists(keys.done_marker(aws_job, t.key.split("/")[1])) for t in tasks)
    # Only the local runner's log is on disk for the aws job (remote stores hold no logs).
    assert not (tmp_path / "local-root" / "jobs" / aws_job / "tasks").exists()
    assert not (tmp_path / "local-root" / "state" / "tasks" / aws_job).exists()
    # The GSI answers "tasks of this job in state succeeded" too.
    assert len(backend.state.query_state(keys.TASKS_TABLE, "succeeded", job=aws_job)) == 7
