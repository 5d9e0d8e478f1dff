"""The job file, as pydantic models. Units live in field names (``mem_gb``, ``time_min``).

``slurmctl schema`` prints the JSON Schema generated from these classes; docs/configuration.md
explains every field with an example.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slurmctl.alerts.config import AlertsConfig
from slurmctl.ratelimit.config import LimitConfig, LimitName

CONFIG_SCHEMA_VERSION = 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CsvOptions(Strict):
    delimiter: str | None = Field(
        None, min_length=1, max_length=1, description="field separator (default: ',' for .csv, tab for .tsv)"
    )
    header: bool = Field(True, description="first row holds column names")


class InputConfig(Strict):
    path: str | list[str] = Field(
        description="input file, glob, or list of them; relative to the job file; .gz/.zst allowed"
    )
    format: Literal["jsonl", "csv", "parquet"] | None = Field(None, description="default: from the suffix")
    max_record_mb: float = Field(16.0, gt=0, description="records larger than this are rejected")
    max_rejects: int = Field(
        0, ge=0, description="malformed records tolerated before submit refuses to run the job"
    )
    csv: CsvOptions = Field(default_factory=CsvOptions)
    staging: Literal["auto", "copy", "reference"] = Field(
        "auto",
        description=(
            "copy: every batch is a file under the backend; reference: batches of uncompressed JSONL "
            "point at byte ranges of the input (not copied; keep the input unchanged until the job "
            "ends); auto: reference on the local backend when the workers can read the input (local "
            "executor, or the input on the backend root's file system), else copy"
        ),
    )


class HandlerConfig(Strict):
    function: str = Field(description="module:function, e.g. mypkg.handlers:score")
    python_path: list[str] = Field(
        default_factory=lambda: ["."], description="directories put on sys.path; relative to the job file"
    )
    mode: Literal["item", "batch"] = Field(
        "item", description="item: f(record, ctx) per item (may be a generator); batch: f(records, ctx)"
    )
    classify: str | None = Field(
        None,
        description="module:function classifying a failed item: classify(exc) returns transient, permanent, "
        "infrastructure, resources or unknown, or None to use the built-in table (docs/errors.md)",
    )

    @field_validator("function", "classify")
    @classmethod
    def _module_function(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError("expected 'module:function', e.g. 'textstats:handle'")
        return v


class BatchConfig(Strict):
    items: int | None = Field(1000, gt=0, description="items per task")
    mb: float | None = Field(None, gt=0, description="batch file size per task, in MB (10^6 bytes)")

    @model_validator(mode="after")
    def _one_limit(self) -> BatchConfig:
        if self.items is None and self.mb is None:
            raise ValueError("set batch.items, batch.mb, or both")
        return self


class ResourcesConfig(Strict):
    cpus: int = Field(1, gt=0, description="CPUs per task (sbatch --cpus-per-task)")
    mem_gb: float | None = Field(None, gt=0, description="memory per task (sbatch --mem)")
    time_min: int | None = Field(None, gt=0, description="time limit per task (sbatch --time)")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gres: str | None = Field(None, description="e.g. gpu:a100:1")
    array_throttle: int | None = Field(None, gt=0, description="at most this many array tasks at once (%N)")
    sbatch_extra: list[str] = Field(default_factory=list, description="extra sbatch options, verbatim")


class RetryAttempts(Strict):
    """Attempts per failed item by the category of its latest failure, the first run included.
    Permanent and unknown failures are never retried automatically (``slurmctl retry --force``)."""

    transient: int = Field(3, ge=1, description="attempts of an item whose failure is transient")
    infrastructure: int = Field(3, ge=1, description="attempts of an item failed by node/network/storage")
    resources: int = Field(
        2,
        ge=1,
        description="attempts of an item that ran out of memory; a task escalates this - 1 times",
    )


class BackoffConfig(Strict):
    base_s: float = Field(10.0, ge=0, description="delay before the first retry (the bound of its jitter)")
    cap_s: float = Field(
        600.0, ge=0, description="longest delay; retry n (1 = first) waits up to min(cap_s, base_s * 2^(n-1))"
    )
    jitter: Literal["full", "none"] = Field(
        "full", description="full: a uniform random delay in [0, that bound]; none: the bound itself"
    )

    @model_validator(mode="after")
    def _cap_at_least_base(self) -> BackoffConfig:
        if self.cap_s < self.base_s:
            raise ValueError(f"retry.backoff.cap_s ({self.cap_s}) is below base_s ({self.base_s})")
        return self


class EscalateConfig(Strict):
    """Resource escalation of a task that Slurm ended for memory or time (docs/architecture.md)."""

    memory_factor: float = Field(2.0, gt=1, description="a task killed for memory runs again with mem x this")
    memory_max_gb: float | None = Field(
        None, gt=0, description="the most memory an escalation asks for (none: no cap but the factor)"
    )
    time_factor: float = Field(
        2.0,
        gt=1,
        description="a timed-out task runs again with time x this, at most the partition's MaxTime",
    )


class RetryConfig(Strict):
    max_attempts: int = Field(3, ge=1, description="attempts per task, first run included")
    items: bool = Field(
        True, description="retry failed items of succeeded tasks in retry tasks holding only those items"
    )
    attempts: RetryAttempts = Field(default_factory=RetryAttempts)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    escalate: EscalateConfig = Field(default_factory=EscalateConfig)


class OutputConfig(Strict):
    format: Literal["parquet", "sqlite", "csv", "jsonl"] = "jsonl"
    path: str | None = Field(None, description="merged output; relative to the job file")


class ReduceConfig(Strict):
    function: str = Field(
        description="module:function combine(a, b) -> row: merges two rows with the same key; associative"
    )
    key: list[str] = Field(min_length=1, description="the columns rows are grouped by")

    @field_validator("function")
    @classmethod
    def _module_function(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError("expected 'module:function', e.g. 'wordcount:combine'")
        return v


class AggregateResources(Strict):
    """What a merge array element asks Slurm for, over the job's ``resources``."""

    cpus: int | None = Field(None, gt=0, description="CPUs per merge node (default: resources.cpus)")
    mem_gb: float | None = Field(None, gt=0, description="memory per merge node (default: resources.mem_gb)")
    time_min: int | None = Field(
        None, gt=0, description="time limit per merge node (default: resources.time_min)"
    )
    partition: str | None = Field(None, description="default: resources.partition")


class AggregateConfig(Strict):
    where: Literal["local", "slurm"] = Field(
        "local",
        description="local: merge processes on the machine that runs results; slurm: one job array per "
        "tree level",
    )
    resources: AggregateResources | None = Field(
        None, description="slurm: the merge arrays' resources, over the job's resources"
    )
    fan_in: int = Field(256, ge=2, le=100_000, description="inputs per merge node (results, then nodes)")
    processes: int | None = Field(None, ge=1, le=1024, description="merge processes at once (default: cores)")
    when: Literal["manual", "auto"] = Field(
        "manual",
        description="manual: `slurmctl results JOB` runs the merge; auto: the local runner (slurm: the "
        "watch loop of submit --wait / status --watch) runs it into output.path once every task has "
        "published",
    )
    reduce: ReduceConfig | None = Field(
        None, description="a user reduction applied at every merge node: the output holds one row per key"
    )


class BackendConfig(Strict):
    kind: Literal["local", "aws"] = "local"
    root: str | None = Field(None, description="local: default $SLURMCTL_ROOT or ~/.slurmctl")
    # aws: S3 + DynamoDB (+ SQS). Credentials come only from the standard AWS providers.
    bucket: str | None = Field(None, description="aws: S3 bucket for batches, manifests and results")
    table_prefix: str = Field("slurmctl-", description="aws: DynamoDB tables are <prefix>jobs, tasks, limits")
    queue_prefix: str = Field("slurmctl-", description="aws: SQS queues are <prefix>work, retry, work-dlq")
    region: str | None = Field(None, description="aws: default AWS_REGION / the profile's region")
    endpoint_url: str | None = Field(None, description="aws: S3-compatible / test endpoint (not for AWS)")
    sse: Literal["AES256", "aws:kms"] | None = Field(
        "AES256", description="aws: S3 server-side encryption header; null for stores without SSE (SeaweedFS)"
    )
    # The bound is storage.aws.settings.RETRY_DEADLINE_MAX_S (not imported: it would load the aws backend).
    retry_deadline_s: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="aws: how long workers retry an S3/DynamoDB outage before the task fails (default 300)",
    )

    @model_validator(mode="after")
    def _aws_needs_bucket(self) -> BackendConfig:
        if self.kind == "aws" and not self.bucket:
            raise ValueError("backend.kind aws needs backend.bucket")
        if self.kind == "local" and self.bucket:
            raise ValueError("backend.bucket is for kind: aws (set kind: aws, or remove bucket)")
        if self.kind == "local" and self.retry_deadline_s is not None:
            raise ValueError("backend.retry_deadline_s is for kind: aws (the local backend does not retry)")
        return self


class ExecutorConfig(Strict):
    kind: Literal["local", "slurm"] = "local"
    max_parallel: int | None = Field(None, gt=0, description="local: tasks at once (default: cores)")
    mode: Literal["array", "pilot"] = Field(
        "array", description="slurm: one array element per task, or pilots"
    )
    workers: int = Field(4, gt=0, description="slurm pilot mode: array size W")
    lease_s: float = Field(
        120.0, gt=0, description="a claimed task is re-claimable this long after a heartbeat"
    )
    cluster: str | None = Field(None, description="named cluster profile")
    poll_min_s: float = Field(1.0, gt=0)
    poll_max_s: float = Field(30.0, gt=0)
    sbatch_template: str | None = Field(None, description="path to a user sbatch template (string.Template)")
    signal_lead_s: int = Field(
        60, ge=0, description="slurm: SIGUSR1 this long before the time limit, to checkpoint and exit 75"
    )


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="level of the workers' and the runner's logs; $SLURMCTL_LOG_LEVEL and --log-level win",
    )


class JobConfig(Strict):
    schema_version: Literal[1] = CONFIG_SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    input: InputConfig
    handler: HandlerConfig
    batch: BatchConfig = Field(default_factory=BatchConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    limits: dict[LimitName, LimitConfig] = Field(
        default_factory=dict,
        description="named rate limits shared by all workers; handlers use ctx.rate_limits[name]",
    )
    alerts: AlertsConfig | None = Field(
        None, description="alert rules and channels (docs/alerts.md); over the user's alert file"
    )

    @model_validator(mode="after")
    def _auto_aggregate(self) -> JobConfig:
        if self.aggregate.when == "auto" and not self.output.path:
            raise ValueError("aggregate.when: auto needs output.path (where the merged output goes)")
        return self

    @model_validator(mode="after")
    def _reference_needs_local_backend(self) -> JobConfig:
        if self.input.staging == "reference" and self.backend.kind != "local":
            raise ValueError(
                "input.staging: reference needs the local backend (workers on a remote backend read "
                "their batches from the object store); use auto or copy"
            )
        return self
