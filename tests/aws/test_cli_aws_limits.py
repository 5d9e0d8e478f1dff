"""The CLI commands of the aws backend and the rate limiter, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.aws
def test_aws_bootstrap_creates_everything_and_is_idempotent(moto: Any) -> None:
    args = ["aws", "bootstrap", "--bucket", "boot-strap-1", "--table-prefix", "bs-", "--queue-prefix", "bsq-"]
    args += ["--region", "us-east-1", "--endpoint-url", moto.url]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "created bucket" in first.stdout and "created table bs-tasks" in first.stdout
    second = cli(*args)
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout  # nothing to do the second time

    kw = {"endpoint_url": moto.url, "region_name": "us-east-1"}
    s3 = boto3.client("s3", **kw)
    rules = s3.get_bucket_encryption(Bucket="boot-strap-1")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket="boot-strap-1")["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    ddb = boto3.client("dynamodb", **kw)
    for table in ("jobs", "tasks", "limits"):
        desc = ddb.describe_table(TableName=f"bs-{table}")["Table"]
        assert {i["IndexName"] for i in desc["GlobalSecondaryIndexes"]} == {"job_state", "by_state"}
        assert desc["SSEDescription"]["Status"] in ("ENABLED", "ENABLING")
    sqs = boto3.client("sqs", **kw)
    url = sqs.get_queue_url(QueueName="bsq-work")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith("bsq-work-dlq")
    assert attrs["SqsManagedSseEnabled"] == "true"


def test_limits_set_pause_resume_on_local_root(tmp_path: Path) -> None:
    from slurmctl.ratelimit import bucket_store
    from slurmctl.storage.local import local_backend

    root = str(tmp_path / "root")
    missing = cli("limits", "set", "api", "--burst", "3", "--job", "j1", "--root", root)
    assert missing.returncode != 0 and "no rate limit 'api'" in missing.stderr
    assert "Traceback" not in missing.stderr
    ok = cli("limits", "set", "api", "--rate", "7.5", "--burst", "3", "--job", "j1", "--root", root)
    assert ok.returncode == 0, ok.stderr
    assert "rate 7.5/s, burst 3" in ok.stdout
    store = bucket_store(local_backend(tmp_path / "root"))
    assert store.get("j1/api")["rate"] == 7.5
    # pause/resume act on a job (tests/e2e/test_job_control.py): an unknown one is a clear error.
    unknown = cli("pause", "j1", "--root", root)
    assert unknown.returncode == 5 and "j1" in unknown.stderr and "Traceback" not in unknown.stderr
    assert store.get("j1/_pause") is None


def test_bad_backend_json_is_a_clear_error(tmp_path: Path) -> None:
    bad = cli("pause", "j1", "--backend", "{nope")
    assert bad.returncode == 2
    assert "--backend: not valid JSON" in bad.stderr and "Traceback" not in bad.stderr
    no_bucket = cli("pause", "j1", "--backend", '{"kind": "aws", "bucket": "Bad_Name"}')
    assert no_bucket.returncode == 2 and "backend.bucket" in no_bucket.stderr
