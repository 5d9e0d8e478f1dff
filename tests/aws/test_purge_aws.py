"""`slurmctl purge` on the aws backend (S3, DynamoDB and SQS on a moto server), through the real
CLI: after it nothing of the job is listed in the bucket, in any table or in the queues, while
another job's message stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

pytestmark = [pytest.mark.aws, pytest.mark.slow]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", *args], capture_output=True, text=True, timeout=300, env=env
    )


def everything_of(spec: dict[str, Any], job_id: str) -> dict[str, list[str]]:
    """What the bucket, the tables and the queues hold of the job, by listing them."""
    from slurmctl.storage.aws.schema import QUEUES, STATE_TABLES

    kw = {"endpoint_url": spec["endpoint_url"], "region_name": spec["region"]}
    s3, ddb, sqs = (boto3.client(s, **kw) for s in ("s3", "dynamodb", "sqs"))
    found: dict[str, list[str]] = {}
    found["s3"] = [
        o["Key"] for o in s3.list_objects_v2(Bucket=spec["bucket"]).get("Contents", []) if job_id in o["Key"]
    ]
    versions = s3.list_object_versions(Bucket=spec["bucket"])  # the bucket is versioned
    found["s3 versions"] = [
        v["Key"]
        for v in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]
        if job_id in v["Key"]
    ]
    for table in STATE_TABLES:
        items = ddb.scan(TableName=spec["table_prefix"] + table)["Items"]
        found[table] = [i["k"]["S"] for i in items if job_id in i["k"]["S"]]
    for q in QUEUES:
        url = sqs.get_queue_url(QueueName=spec["queue_prefix"] + q)["QueueUrl"]
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        found[q] = [m["Body"] for m in msgs.get("Messages", [])]
    return found


def test_purge_leaves_nothing_of_the_job(moto_spec: dict[str, Any], tmp_path: Path) -> None:
    from slurmctl.storage.aws.bootstrap import ensure_queues
    from slurmctl.storage.aws.queue import SqsWorkQueue
    from slurmctl.storage.aws.settings import AwsSettings

    settings = AwsSettings.from_spec(moto_spec)
    ensure_queues(settings)
    (tmp_path / "h.py").write_text("def handle(record, ctx):\n    return {'n': record['n']}\n")
    with open(tmp_path / "in.jsonl", "w") as f:
        for i in range(60):
            f.write(json.dumps({"n": i}) + "\n")
    job = {
        "name": "purge-aws",
        "input": {"path": "in.jsonl"},
        "handler": {"function": "h:handle"},
        "batch": {"items": 20},
        "executor": {"kind": "local", "max_parallel": 2},
        "backend": {k: moto_spec[k] for k in ("kind", "bucket", "table_prefix", "region", "endpoint_url")},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    env = {**os.environ, "SLURMCTL_ROOT": str(tmp_path / "local-root")}  # the runner's log
    r = subprocess.run(
        [sys.executable, "-m", "slurmctl", "submit", "job.yaml", "--wait"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[-1]
    backend = json.dumps(moto_spec)
    assert (
        cli("limits", "set", "api", "--rate", "5", "--job", job_id, "--backend", backend, env=env).returncode
        == 0
    )
    SqsWorkQueue(settings).send({"job": job_id, "task": "t0000001"})
    SqsWorkQueue(settings, "retry").send({"job_id": job_id, "task": "t0000002"})
    SqsWorkQueue(settings).send({"job": "another-job", "task": "t0000001"})
    before = everything_of(moto_spec, job_id)
    assert before["s3"] and before["jobs"] and before["tasks"] and before["progress"] and before["limits"]
    assert list((tmp_path / "local-root").rglob("runner.log"))

    r = cli("purge", job_id, "--dry-run", "--backend", backend, env=env)
    assert r.returncode == 0, r.stderr
    assert f"{len(before['s3'])} object(s)" in r.stdout
    assert everything_of(moto_spec, job_id)["s3"] == before["s3"]

    r = cli("purge", job_id, "--yes", "--backend", backend, env=env)
    assert r.returncode == 0, r.stderr
    assert f"freed {len(before['s3'])} object(s)" in r.stdout and "2 queue message(s)" in r.stdout
    after = everything_of(moto_spec, job_id)
    assert after.pop("work") == [
        json.dumps({"job": "another-job", "task": "t0000001"}, separators=(",", ":"))
    ]
    assert all(v == [] for v in after.values()), after
    assert not [p for p in (tmp_path / "local-root").rglob("*") if job_id in str(p)]
    r = cli("purge", job_id, "--yes", "--backend", backend, env=env)
    assert r.returncode == 5 and "no job" in r.stderr
