"""Where the AWS backend lives and how it talks to it: names, endpoints, clients, timeouts.

Credentials never appear here: boto3 finds them through its standard provider chain
(environment, ``~/.aws``, SSO, instance/role metadata). The job file's ``backend:`` block holds
only names, the region and an optional endpoint (for S3-compatible stores and test servers).
Per-service endpoints also follow boto3's own ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL_SQS`` variables when ``endpoint_url`` is unset.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from slurmctl.errors import ConfigError

# S3 bucket names: 3-63 chars, lowercase letters, digits, dots and hyphens.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# DynamoDB table and SQS queue names allow [A-Za-z0-9_.-]; SQS forbids dots, so we do too.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{0,40}$")
# What botocore accepts as a region (a DNS host label, not all digits). Anything else makes
# client creation raise InvalidRegionError; checked here so the message names the field.
# A well-formed but unknown region shows up at first contact instead (storage.aws.preflight).
_REGION_RE = re.compile(r"^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)$")
# Upper bound of backend.retry_deadline_s (config.models.BackendConfig repeats it): a day is
# longer than any Slurm task should sit waiting for storage, and catches unit mix-ups (ms).
RETRY_DEADLINE_MAX_S = 86400.0


@dataclass(frozen=True)
class AwsSettings:
    """The ``backend: {kind: aws, ...}`` block, validated."""

    bucket: str
    table_prefix: str = "slurmctl-"
    queue_prefix: str = "slurmctl-"
    region: str | None = None
    endpoint_url: str | None = None
    # Give up on an S3/DynamoDB call after retrying throttling and network errors this long. Long
    # enough to ride out an endpoint outage of minutes; a Slurm task's time limit bounds it anyway.
    retry_deadline_s: float = 300.0
    # Objects at least this large are uploaded in parts (S3 allows 10,000 parts of >= 5 MiB).
    multipart_threshold_mb: int = 64
    # Server-side encryption header on every PUT; the bucket's default encryption covers it too.
    sse: str | None = "AES256"

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> AwsSettings:
        """Build from a ``backend:`` block. Raises ConfigError naming the bad field."""
        known = {f for f in cls.__dataclass_fields__} | {"kind", "root"}
        extra = sorted(set(spec) - known)
        if extra:
            raise ConfigError(
                f"backend: unknown field(s) for kind aws: {', '.join(extra)}",
                hint="allowed: bucket, table_prefix, queue_prefix, region, endpoint_url, retry_deadline_s, "
                "sse, multipart_threshold_mb; credentials come from the standard AWS providers (env, "
                "~/.aws, instance role), never from the job file",
            )
        bucket = spec.get("bucket")
        if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
            raise ConfigError(
                f"backend.bucket: expected an S3 bucket name (3-63 of a-z 0-9 . -), found {bucket!r}",
                hint="set backend.bucket in the job file",
            )
        for name in ("table_prefix", "queue_prefix"):
            value = spec.get(name, "slurmctl-")
            if not isinstance(value, str) or not _PREFIX_RE.match(value):
                raise ConfigError(
                    f"backend.{name}: expected up to 40 of A-Z a-z 0-9 _ -, found {value!r}",
                    hint="e.g. 'slurmctl-' or 'myproject-'",
                )
        region = spec.get("region")
        if region is not None and (not isinstance(region, str) or not _REGION_RE.match(region)):
            raise ConfigError(
                f"backend.region: {region!r} is not an AWS region name "
                "(letters, digits and hyphens, e.g. eu-west-1)",
                hint="fix backend.region in the job file (or --backend), or leave it out to use "
                "AWS_REGION / the profile's region",
            )
        kwargs = {
            k: v for k, v in spec.items() if k not in ("kind", "root") and (v is not None or k == "sse")
        }
        if "retry_deadline_s" in kwargs:
            kwargs["retry_deadline_s"] = _retry_deadline(kwargs["retry_deadline_s"])
        return cls(**kwargs)

    def to_spec(self) -> dict[str, Any]:
        """The block a worker on another node reopens the backend from (no credentials, ever)."""
        spec: dict[str, Any] = {
            "kind": "aws",
            "bucket": self.bucket,
            "table_prefix": self.table_prefix,
            "queue_prefix": self.queue_prefix,
        }
        if self.region:
            spec["region"] = self.region
        if self.endpoint_url:
            spec["endpoint_url"] = self.endpoint_url
        for name in ("retry_deadline_s", "multipart_threshold_mb", "sse"):
            value = getattr(self, name)
            if value != self.__dataclass_fields__[name].default:
                spec[name] = value  # tuning set in code or tests travels to the workers too
        return spec

    def table_name(self, table: str) -> str:
        return f"{self.table_prefix}{table}"

    def queue_name(self, queue: str) -> str:
        return f"{self.queue_prefix}{queue}"


def _retry_deadline(value: Any) -> float:
    """``value`` as seconds; raises ConfigError unless it is a number in (0, RETRY_DEADLINE_MAX_S]."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value <= RETRY_DEADLINE_MAX_S:
        raise ConfigError(
            f"backend.retry_deadline_s: expected seconds > 0 and <= {RETRY_DEADLINE_MAX_S:.0f}, "
            f"found {value!r}",
            hint="how long a worker retries an S3/DynamoDB outage before its task fails; default 300",
        )
    return float(value)


@dataclass
class RequestCounter:
    """Counts the HTTP requests each service receives (retries included): the benchmarks report
    requests per task and per 1,000 tokens from these numbers."""

    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hook(self, service: str) -> Any:
        def on_request(**_: Any) -> None:
            with self._lock:
                self.counts[service] = self.counts.get(service, 0) + 1

        return on_request

    def total(self, service: str | None = None) -> int:
        with self._lock:
            return sum(v for k, v in self.counts.items() if service is None or k == service)


def make_client(
    settings: AwsSettings, service: str, counter: RequestCounter | None = None, *, quick: bool = False
) -> Any:
    """A boto3 client for ``service`` with short timeouts and few built-in retries (our own retry
    loop in :mod:`.retry` owns the long back-off). ``quick``: shorter timeouts and a single try
    per call, for the first-contact check (:mod:`.preflight`), whose whole budget is seconds.
    Raises ConfigError if boto3 is not installed, or no region is known or it is malformed."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ConfigError("the aws backend needs boto3", hint="pip install 'slurmctl[aws]'") from exc
    import botocore.exceptions

    cfg = Config(
        connect_timeout=2 if quick else 3,
        read_timeout=2 if quick else 20,
        # total_max_attempts counts the first try; max_attempts (the usual setting) counts retries.
        retries={"total_max_attempts": 1, "mode": "standard"}
        if quick
        else {"max_attempts": 2, "mode": "standard"},
        max_pool_connections=32,
        # Path-style addressing works with every S3-compatible store (SeaweedFS, MinIO, moto).
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    try:
        session = boto3.session.Session(region_name=settings.region)
        client = session.client(service, endpoint_url=settings.endpoint_url, config=cfg)
    except botocore.exceptions.NoRegionError as exc:
        raise ConfigError(
            "no AWS region for the aws backend", hint="set backend.region or AWS_REGION / AWS_DEFAULT_REGION"
        ) from exc
    except botocore.exceptions.InvalidRegionError as exc:
        # backend.region was checked by from_spec, so this one came from the environment or profile.
        region = exc.kwargs.get("region_name")
        raise ConfigError(
            f"the AWS region {region!r} (from AWS_REGION / AWS_DEFAULT_REGION or the profile's "
            "region) is not a region name",
            hint="fix that variable or ~/.aws/config, or set backend.region (e.g. eu-west-1)",
        ) from exc
    if counter is not None:
        client.meta.events.register("before-send", counter.hook(service))
    return client
