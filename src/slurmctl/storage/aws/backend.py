"""Open the aws backend from a ``backend:`` block."""

from __future__ import annotations

from typing import Any

from slurmctl.storage.aws.objects import S3ObjectStore
from slurmctl.storage.aws.settings import AwsSettings, RequestCounter
from slurmctl.storage.aws.state import DynamoStateStore
from slurmctl.storage.base import Backend


def aws_backend(spec: dict[str, Any], *, counter: RequestCounter | None = None) -> Backend:
    """The S3 + DynamoDB backend a ``{kind: aws, bucket, ...}`` block names. Opens clients only
    (no request is sent). Raises ConfigError for a bad block or missing boto3/region."""
    settings = AwsSettings.from_spec(spec)
    counter = counter or RequestCounter()
    return Backend(
        objects=S3ObjectStore(settings, counter=counter),
        state=DynamoStateStore(settings, counter=counter),
        description=f"aws:s3://{settings.bucket} + dynamodb:{settings.table_prefix}*",
        spec=settings.to_spec(),
    )
