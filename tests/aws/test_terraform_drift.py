"""infra/terraform and ``slurmctl aws bootstrap`` must declare the same resources: this parses the
Terraform (python-hcl2) and compares it with slurmctl.storage.aws.schema, which bootstrap uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slurmctl.storage.aws import schema

TF = Path(__file__).resolve().parents[2] / "infra" / "terraform"
hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed (dev extra)")


def _clean(value: Any) -> Any:
    """python-hcl2 keeps string quotes and block markers; strip both."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _load() -> dict[str, Any]:
    doc: dict[str, Any] = {"resource": {}, "locals": {}, "data": {}}
    for path in sorted(TF.glob("*.tf")):
        with open(path) as f:
            parsed = _clean(hcl2.load(f))
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                doc["resource"].setdefault(rtype, {}).update(named)
        for block in parsed.get("locals", []):
            doc["locals"].update(block)
        for block in parsed.get("data", []):
            for dtype, named in block.items():
                doc["data"].setdefault(dtype, {}).update(named)
    return doc


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return _load()


def test_state_tables_keys_and_indexes(tf: dict[str, Any]) -> None:
    table = tf["resource"]["aws_dynamodb_table"]["state"]
    definition = schema.table_definition("x")
    assert table["billing_mode"] == definition["BillingMode"]
    assert [table["hash_key"], table["range_key"]] == [k["AttributeName"] for k in schema.KEY_SCHEMA]
    assert {(a["name"], a["type"]) for a in table["attribute"]} == {
        (a["AttributeName"], a["AttributeType"]) for a in schema.KEY_ATTRIBUTES
    }
    assert {
        g["name"]: (g["hash_key"], g["range_key"], g["projection_type"])
        for g in table["global_secondary_index"]
    } == {name: (h, r, "ALL") for name, (h, r) in schema.INDEXES.items()}
    assert table["server_side_encryption"][0]["enabled"] is definition["SSESpecification"]["Enabled"]
    assert table["point_in_time_recovery"][0]["enabled"] is True  # bootstrap turns PITR on too


def test_state_table_names(tf: dict[str, Any]) -> None:
    raw = tf["locals"]["state_tables"]  # '${toset(["jobs", "tasks", "limits"])}'
    names = json.loads(raw[len("${toset(") : -len(")}")])
    assert sorted(names) == sorted(schema.STATE_TABLES)
    assert tf["resource"]["aws_dynamodb_table"]["state"]["name"] == "${var.table_prefix}${each.key}"


def test_bucket_settings(tf: dict[str, Any]) -> None:
    r = tf["resource"]
    sse = r["aws_s3_bucket_server_side_encryption_configuration"]["data"]["rule"][0]
    assert sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == schema.BUCKET_SSE_ALGORITHM
    pab = r["aws_s3_bucket_public_access_block"]["data"]
    expected = {
        "block_public_acls": schema.BUCKET_PUBLIC_ACCESS_BLOCK["BlockPublicAcls"],
        "ignore_public_acls": schema.BUCKET_PUBLIC_ACCESS_BLOCK["IgnorePublicAcls"],
        "block_public_policy": schema.BUCKET_PUBLIC_ACCESS_BLOCK["BlockPublicPolicy"],
        "restrict_public_buckets": schema.BUCKET_PUBLIC_ACCESS_BLOCK["RestrictPublicBuckets"],
    }
    assert {k: pab[k] for k in expected} == expected
    versioning = r["aws_s3_bucket_versioning"]["data"]["versioning_configuration"][0]["status"]
    assert versioning == schema.BUCKET_VERSIONING
    rule = r["aws_s3_bucket_lifecycle_configuration"]["data"]["rule"][0]
    days = rule["abort_incomplete_multipart_upload"][0]["days_after_initiation"]
    assert days == schema.ABORT_INCOMPLETE_MULTIPART_DAYS


TF_QUEUE_ATTRS = {
    "VisibilityTimeout": "visibility_timeout_seconds",
    "MessageRetentionPeriod": "message_retention_seconds",
    "ReceiveMessageWaitTimeSeconds": "receive_wait_time_seconds",
    "DelaySeconds": "delay_seconds",
    "SqsManagedSseEnabled": "sqs_managed_sse_enabled",
}


def test_queues(tf: dict[str, Any]) -> None:
    queues = tf["resource"]["aws_sqs_queue"]
    by_suffix = {q["name"].removeprefix("${var.queue_prefix}"): (res, q) for res, q in queues.items()}
    assert set(by_suffix) == set(schema.QUEUES)
    dlq_resource = by_suffix[schema.DLQ_NAME][0]
    for suffix, attrs in schema.QUEUES.items():
        _, q = by_suffix[suffix]
        declared = {k: q[v] for k, v in TF_QUEUE_ATTRS.items() if v in q}
        assert {k: str(v).lower() for k, v in declared.items()} == {k: v.lower() for k, v in attrs.items()}
        if suffix in schema.DLQ_SOURCES:
            policy = q["redrive_policy"]
            assert f"aws_sqs_queue.{dlq_resource}.arn" in policy
            assert f"maxReceiveCount = {schema.MAX_RECEIVES}" in policy.replace('"', "")
        else:
            assert "redrive_policy" not in q


def test_iam_is_least_privilege(tf: dict[str, Any]) -> None:
    docs = tf["data"]["aws_iam_policy_document"]
    worker = {a for s in docs["worker"]["statement"] for a in s["actions"]}
    coordinator = {a for s in docs["coordinator"]["statement"] for a in s["actions"]}
    for actions in (worker, coordinator):
        assert not any("*" in a for a in actions)
        assert not actions & {
            "s3:DeleteBucket",
            "s3:PutBucketPolicy",
            "dynamodb:DeleteTable",
            "sqs:DeleteQueue",
        }
    # Workers never scan whole tables nor delete state records, and write S3 only under results etc.
    assert not worker & {"dynamodb:Scan", "dynamodb:DeleteItem", "sqs:PurgeQueue"}
    writes = [s for s in docs["worker"]["statement"] if "s3:PutObject" in s["actions"]]
    assert writes and all(
        "/results/" in r or "/checkpoints/" in r or "/logs/" in r for r in writes[0]["resources"]
    )
    # ... yet they can do everything the worker code path does.
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "s3:GetObject", "s3:PutObject"} <= worker
