"""``slurmctl aws bootstrap``: create the AWS resources of :mod:`.schema` with boto3.

For users without Terraform. Idempotent: every step checks what exists and only creates or
corrects what is missing, so running it again (or after ``terraform apply``) changes nothing.
Returns a list of human-readable actions; raises StorageError when AWS refuses.
"""

from __future__ import annotations

import json
import time
from typing import Any

from slurmctl.errors import StorageError
from slurmctl.storage.aws import schema
from slurmctl.storage.aws.retry import call, error_code
from slurmctl.storage.aws.settings import AwsSettings, make_client


def _do(settings: AwsSettings, what: str, fn: Any) -> Any:
    try:
        return call(fn, what=what, deadline_s=min(settings.retry_deadline_s, 120.0))
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"{what}: {error_code(exc) or type(exc).__name__}: {exc}") from exc


def ensure_bucket(settings: AwsSettings, s3: Any = None) -> list[str]:
    """Create the bucket if missing; enforce encryption, public-access block, versioning and
    the abort-incomplete-multipart lifecycle rule. Returns the actions taken."""
    s3 = s3 or make_client(settings, "s3")
    bucket = settings.bucket
    actions: list[str] = []
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(f"cannot check bucket {bucket}: {exc}") from exc
        kwargs: dict[str, Any] = {"Bucket": bucket}
        region = s3.meta.region_name
        if region and region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        _do(settings, f"create bucket {bucket}", lambda: s3.create_bucket(**kwargs))
        actions.append(f"created bucket s3://{bucket}")
    _do(
        settings,
        f"encrypt bucket {bucket}",
        lambda: s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": schema.BUCKET_SSE_ALGORITHM}}
                ]
            },
        ),
    )
    _do(
        settings,
        f"block public access on {bucket}",
        lambda: s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=dict(schema.BUCKET_PUBLIC_ACCESS_BLOCK)
        ),
    )
    _do(
        settings,
        f"version bucket {bucket}",
        lambda: s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": schema.BUCKET_VERSIONING}
        ),
    )
    _do(
        settings,
        f"lifecycle of bucket {bucket}",
        lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "abort-incomplete-multipart",
                        "Status": "Enabled",
                        "Filter": {"Prefix": ""},
                        "AbortIncompleteMultipartUpload": {
                            "DaysAfterInitiation": schema.ABORT_INCOMPLETE_MULTIPART_DAYS
                        },
                    }
                ]
            },
        ),
    )
    actions.append(
        f"bucket s3://{bucket}: SSE {schema.BUCKET_SSE_ALGORITHM}, public access blocked, versioned"
    )
    return actions


def ensure_tables(settings: AwsSettings, ddb: Any = None, *, wait_s: float = 300.0) -> list[str]:
    """Create every state table of :data:`schema.STATE_TABLES` that is missing, wait until all
    are ACTIVE, and turn on point-in-time recovery. Returns the actions taken."""
    ddb = ddb or make_client(settings, "dynamodb")
    actions: list[str] = []
    for table in schema.STATE_TABLES:
        name = settings.table_name(table)
        try:
            desc = ddb.describe_table(TableName=name)["Table"]
            _check_table(name, desc)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"cannot describe table {name}: {exc}") from exc
            _do(
                settings,
                f"create table {name}",
                lambda name=name: ddb.create_table(**schema.table_definition(name)),
            )
            actions.append(f"created table {name}")
    deadline = time.monotonic() + wait_s
    for table in schema.STATE_TABLES:
        name = settings.table_name(table)
        while ddb.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
            if time.monotonic() > deadline:
                raise StorageError(f"table {name} is not ACTIVE after {wait_s:.0f}s")
            time.sleep(2)
        _do(
            settings,
            f"point-in-time recovery on {name}",
            lambda name=name: ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            ),
        )
    actions.append(
        f"tables {', '.join(settings.table_name(t) for t in schema.STATE_TABLES)}: ACTIVE, PITR on"
    )
    return actions


def _check_table(name: str, desc: dict[str, Any]) -> None:
    """Raise StorageError if an existing table has another key schema or lacks an index
    (we never alter or drop a table that holds data)."""
    keys = {k["AttributeName"]: k["KeyType"] for k in desc.get("KeySchema", [])}
    if keys != {"pk": "HASH", "sk": "RANGE"}:
        raise StorageError(
            f"table {name} exists with key schema {keys}, expected pk (HASH) + sk (RANGE)",
            hint="use another backend.table_prefix, or delete the table if it is not ours",
        )
    have = {i["IndexName"] for i in desc.get("GlobalSecondaryIndexes", [])}
    missing = sorted(set(schema.INDEXES) - have)
    if missing:
        raise StorageError(
            f"table {name} lacks the index(es) {', '.join(missing)}",
            hint="an older slurmctl created it; add the indexes (see docs/aws.md) or use a new table_prefix",
        )


def ensure_queues(settings: AwsSettings, sqs: Any = None) -> list[str]:
    """Create the queues of :data:`schema.QUEUES` (dead-letter queue first) with SSE, and set
    their attributes and redrive policy. Returns the actions taken."""
    sqs = sqs or make_client(settings, "sqs")
    actions: list[str] = []
    urls: dict[str, str] = {}
    order = [schema.DLQ_NAME] + [q for q in schema.QUEUES if q != schema.DLQ_NAME]
    for q in order:
        name = settings.queue_name(q)
        attrs = dict(schema.QUEUES[q])
        if q in schema.DLQ_SOURCES:
            dlq_arn = _do(
                settings,
                f"describe queue {name}",
                lambda: sqs.get_queue_attributes(QueueUrl=urls[schema.DLQ_NAME], AttributeNames=["QueueArn"]),
            )["Attributes"]["QueueArn"]
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(schema.MAX_RECEIVES)}
            )
        try:
            urls[q] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            _do(
                settings,
                f"configure queue {name}",
                lambda q=q, attrs=attrs: sqs.set_queue_attributes(QueueUrl=urls[q], Attributes=attrs),
            )
        except Exception as exc:
            if error_code(exc) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"cannot look up queue {name}: {exc}") from exc
            urls[q] = _do(
                settings,
                f"create queue {name}",
                lambda name=name, attrs=attrs: sqs.create_queue(QueueName=name, Attributes=attrs),
            )["QueueUrl"]
            actions.append(f"created queue {name}")
    actions.append(
        f"queues {', '.join(settings.queue_name(q) for q in order)}: SSE on, "
        f"DLQ after {schema.MAX_RECEIVES} receives"
    )
    return actions


def bootstrap(settings: AwsSettings, *, queues: bool = True) -> list[str]:
    """Create or correct every resource. Idempotent. Returns the actions taken, in order."""
    actions = ensure_bucket(settings)
    actions += ensure_tables(settings)
    if queues:
        actions += ensure_queues(settings)
    return actions
