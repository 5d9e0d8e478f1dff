"""Open the aws backend from a ``backend:`` block."""

from __future__ import annotations

from typing import Any

from slurmctl.storage.aws.objects import S3ObjectStore
from slurmctl.storage.aws.settings import AwsSettings, RequestCounter
from slurmctl.storage.aws.state import DynamoStateStore
from slurmctl.storage.base import Backend


def aws_backend(
    spec: dict[str, Any], *, counter: RequestCounter | None = None, check: bool = False
) -> Backend:
    """The S3 + DynamoDB backend a ``{kind: aws, bucket, ...}`` block names. Without ``check``
    it opens clients only (no request is sent: what a worker wants); with ``check`` it first runs
    the first-contact check of :mod:`.preflight` (a few requests, seconds at most).
    Raises ConfigError for a bad block or missing/malformed boto3 or region; with ``check``,
    StorageError when the bucket or a table is missing or the endpoint does not answer."""
    settings = AwsSettings.from_spec(spec)
    counter = counter or RequestCounter()
    if check:
        from slurmctl.storage.aws.preflight import preflight

        preflight(settings, counter=counter)
    return Backend(
        objects=S3ObjectStore(settings, counter=counter),
        state=DynamoStateStore(settings, counter=counter),
        description=f"aws:s3://{settings.bucket} + dynamodb:{settings.table_prefix}*",
        spec=settings.to_spec(),
    )
