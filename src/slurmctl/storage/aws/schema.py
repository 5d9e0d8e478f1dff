"""The AWS resources slurmctl needs, declared once.

``bootstrap.py`` creates exactly these with boto3; ``infra/terraform/`` declares the same by hand
and ``tests/aws/test_terraform_drift.py`` checks that the two agree (tables, keys, indexes,
queues, bucket settings).

State tables (one DynamoDB table per logical table of the StateStore contract)::

    pk    S   first path segment of the record key ("<job>" for tasks "<job>/<task>")
    sk    S   "/" + the rest of the key, or "." for a key without "/"
    k     S   the full key            ver  N  record version (optimistic locking)
    v     S   the JSON value          wt   S  token of the write that produced this version
    state S   value["state"] when it is a string (sparse: only records with a state are indexed)

Indexes: ``job_state`` (pk, state) answers "tasks of job J in state S"; ``by_state``
(state, k) answers "every task in state S" across jobs. The base table answers "tasks of job J".

Queues: ``work`` (task hand-out for pilots, visibility timeout = lease) with a dead-letter queue
``work-dlq`` after ``MAX_RECEIVES`` receives; ``retry`` (delayed re-runs) shares the DLQ.
"""

from __future__ import annotations

from typing import Any

# Logical StateStore tables that exist on the aws backend. jobs/tasks/progress:
# slurmctl.storage.keys; limits: the shared rate limiter (slurmctl.ratelimit); alerts: alert
# conditions and deliveries (slurmctl.alerts.state).
STATE_TABLES: tuple[str, ...] = ("jobs", "tasks", "progress", "limits", "alerts")

KEY_ATTRIBUTES: list[dict[str, str]] = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "S"},
    {"AttributeName": "state", "AttributeType": "S"},
    {"AttributeName": "k", "AttributeType": "S"},
]
KEY_SCHEMA: list[dict[str, str]] = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
INDEXES: dict[str, tuple[str, str]] = {
    # index name: (hash key, range key); projection ALL so a query needs no second read.
    "job_state": ("pk", "state"),
    "by_state": ("state", "k"),
}

# Bucket settings bootstrap applies and terraform must declare.
BUCKET_SSE_ALGORITHM = "AES256"
BUCKET_PUBLIC_ACCESS_BLOCK: dict[str, bool] = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
BUCKET_VERSIONING = "Enabled"
# Incomplete multipart uploads (a worker killed mid-upload) cost money until aborted.
ABORT_INCOMPLETE_MULTIPART_DAYS = 2

# Queues: name suffix -> attributes. Values are strings, as SQS wants them.
MAX_RECEIVES = 5
QUEUES: dict[str, dict[str, str]] = {
    "work-dlq": {"MessageRetentionPeriod": "1209600", "SqsManagedSseEnabled": "true"},
    "work": {
        "VisibilityTimeout": "120",
        "MessageRetentionPeriod": "1209600",
        "ReceiveMessageWaitTimeSeconds": "20",
        "SqsManagedSseEnabled": "true",
    },
    "retry": {
        "VisibilityTimeout": "120",
        "DelaySeconds": "30",
        "MessageRetentionPeriod": "1209600",
        "SqsManagedSseEnabled": "true",
    },
}
# Queues whose failed messages go to the DLQ.
DLQ_SOURCES: tuple[str, ...] = ("work", "retry")
DLQ_NAME = "work-dlq"


def table_definition(name: str) -> dict[str, Any]:
    """The CreateTable request for one state table (on-demand billing, SSE on, PITR separate)."""
    return {
        "TableName": name,
        "AttributeDefinitions": KEY_ATTRIBUTES,
        "KeySchema": KEY_SCHEMA,
        "BillingMode": "PAY_PER_REQUEST",
        "SSESpecification": {"Enabled": True},
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": range_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, (hash_key, range_key) in INDEXES.items()
        ],
    }
