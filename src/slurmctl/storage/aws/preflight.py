"""First contact with the aws backend: is the bucket there, are the tables there, does the
endpoint answer — within seconds, before a command creates anything.

Commands (``submit``, ``status``, ``results``, ...) run this once when they open the backend
(``open_backend(..., check=True)``), so a typo in the bucket name, a missing ``aws bootstrap``, a
dead endpoint or a wrong region is a clear error in seconds instead of an orphan job record or
five minutes of retries. Workers skip it: they reopen a backend that a command has already
checked, and mid-job they must ride out outages for ``retry_deadline_s`` (see :mod:`.retry`).

The requests need only the permissions both Terraform roles have: ``s3:ListBucket`` (HeadBucket)
and ``dynamodb:GetItem`` (a read of a key that never exists), no DescribeTable.
"""

from __future__ import annotations

import time
from typing import Any

from slurmctl.errors import StorageError
from slurmctl.storage.aws.retry import call, error_code, http_status
from slurmctl.storage.aws.schema import STATE_TABLES
from slurmctl.storage.aws.settings import AwsSettings, RequestCounter, make_client

# The whole check's budget for retrying throttling, 5xx and network errors. The quick clients
# give up on one try after 2 s (connect) + 2 s (read), so a check ends within about 9 s even
# against an endpoint that swallows packets.
FIRST_CONTACT_DEADLINE_S = 5.0

# A record key no slurmctl record uses (keys never start with "_"): GetItem answers "no item".
_PROBE_KEY = {"pk": {"S": "_slurmctl_preflight"}, "sk": {"S": "."}}

_DENIED = frozenset(
    {
        "403",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
    }
)
_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"})
_CREDENTIALS_HINT = (
    "check the AWS credentials of this shell (AWS_PROFILE, `aws sts get-caller-identity`) and that "
    "its role may use this bucket and these tables (infra/terraform's coordinator role)"
)


def preflight(
    settings: AwsSettings,
    *,
    deadline_s: float = FIRST_CONTACT_DEADLINE_S,
    counter: RequestCounter | None = None,
) -> None:
    """Check that the bucket and every state table of ``settings`` exist and answer, giving up
    after ``deadline_s`` in all (never ``settings.retry_deadline_s``). Returns None when all is
    well; sends 1 + len(STATE_TABLES) requests and creates nothing (idempotent).

    Raises StorageError (exit 6) naming the bucket/table, endpoint and region and what to do;
    ConfigError (exit 2) when boto3 or the region is missing or malformed."""
    give_up = time.monotonic() + deadline_s
    s3 = make_client(settings, "s3", counter, quick=True)
    _check_bucket(settings, s3, give_up, deadline_s)
    ddb = make_client(settings, "dynamodb", counter, quick=True)
    for table in STATE_TABLES:
        _check_table(settings, ddb, settings.table_name(table), give_up, deadline_s)


def _where(client: Any) -> str:
    return f"endpoint {client.meta.endpoint_url}, region {client.meta.region_name}"


def _ask(client: Any, fn: Any, what: str, give_up: float, deadline_s: float) -> Any:
    """``fn()`` with retries until ``give_up``; a still-failing retriable error becomes a
    StorageError saying the endpoint did not answer within ``deadline_s``. Non-retriable
    errors are raised unchanged for the caller to name."""
    try:
        return call(fn, what=what, deadline_s=max(0.0, give_up - time.monotonic()))
    except StorageError as exc:
        service = client.meta.service_model.service_id
        raise StorageError(
            f"cannot reach {service} for {what} ({_where(client)}): no answer within "
            f"{deadline_s:g} s ({exc.__cause__ or exc})",
            hint="check backend.endpoint_url / backend.region (or AWS_ENDPOINT_URL_*), that the "
            "endpoint is up and this node can reach it; nothing was created",
        ) from exc.__cause__


def _no_credentials(code: str, cause: Exception) -> None:
    """Raise StorageError if ``code`` says boto3 found no usable credentials (no request was sent)."""
    if code in _NO_CREDENTIALS:
        raise StorageError(f"no usable AWS credentials: {cause}", hint=_CREDENTIALS_HINT) from cause


def _check_bucket(settings: AwsSettings, s3: Any, give_up: float, deadline_s: float) -> None:
    bucket = settings.bucket
    what = f"bucket {bucket!r}"
    try:
        _ask(s3, lambda: s3.head_bucket(Bucket=bucket), what, give_up, deadline_s)
        return
    except StorageError:
        raise
    except Exception as exc:
        code = error_code(exc) or type(exc).__name__
        status = http_status(exc)
        cause = exc
    _no_credentials(code, cause)
    if code in ("404", "NoSuchBucket", "NotFound"):
        raise StorageError(
            f"S3 bucket {bucket!r} does not exist ({_where(s3)})",
            hint=f"create it with `slurmctl aws bootstrap --bucket {bucket}` (or infra/terraform), "
            "or fix backend.bucket; nothing was created",
        ) from cause
    if code in _DENIED:
        raise StorageError(
            f"S3 bucket {bucket!r}: access denied ({code}; {_where(s3)})",
            hint=_CREDENTIALS_HINT + "; bucket names are global, so the name may belong to another account",
        ) from cause
    if code in ("301", "PermanentRedirect") or status == 301:
        headers = getattr(cause, "response", {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
        actual = headers.get("x-amz-bucket-region", "another region")
        raise StorageError(
            f"S3 bucket {bucket!r} is in {actual}, not in region {s3.meta.region_name}",
            hint=f"set backend.region: {actual}" if actual != "another region" else "fix backend.region",
        ) from cause
    raise StorageError(
        f"S3 refused to look up bucket {bucket!r} ({code}; {_where(s3)}): {cause}",
        hint="check backend.region, backend.endpoint_url and the AWS credentials; nothing was created",
    ) from cause


def _check_table(settings: AwsSettings, ddb: Any, name: str, give_up: float, deadline_s: float) -> None:
    what = f"DynamoDB table {name!r}"
    try:
        _ask(ddb, lambda: ddb.get_item(TableName=name, Key=_PROBE_KEY), what, give_up, deadline_s)
        return
    except StorageError:
        raise
    except Exception as exc:
        code = error_code(exc) or type(exc).__name__
        cause = exc
    _no_credentials(code, cause)
    if code == "ResourceNotFoundException":
        raise StorageError(
            f"DynamoDB table {name!r} does not exist ({_where(ddb)})",
            hint=f"create the tables with `slurmctl aws bootstrap --bucket {settings.bucket} "
            f"--table-prefix {settings.table_prefix}` (or infra/terraform), or fix "
            "backend.table_prefix / backend.region; nothing was created",
        ) from cause
    if code in _DENIED:
        raise StorageError(
            f"DynamoDB table {name!r}: access denied ({code}; {_where(ddb)})", hint=_CREDENTIALS_HINT
        ) from cause
    raise StorageError(
        f"DynamoDB refused a read of table {name!r} ({code}; {_where(ddb)}): {cause}",
        hint="check backend.region, backend.table_prefix and the AWS credentials; nothing was created",
    ) from cause
