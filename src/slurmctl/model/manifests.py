"""Result, retry and aggregation manifests (seed 001, story 1.3). Each carries the checksums that
let a reader verify what it reads, and each is written atomically; the result manifest is written
before the ``.done`` marker, so a reader that sees the marker always finds a complete result."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from slurmctl.model.core import Doc


class ResultManifest(Doc, kw_only=True):
    """What one attempt published. Schema 2: ``log_key``/``metrics_key`` and their sha256."""

    SCHEMA: ClassVar[int] = 2
    schema_version: int = 2
    job_id: str
    task_id: str
    attempt: int
    data_key: str
    data_sha256: str
    data_bytes: int
    rows: int
    errors_key: str | None = None
    errors_sha256: str | None = None
    items: int  # items in the batch
    items_ok: int
    items_failed: int
    items_resumed: int = 0  # items this attempt found already done in its checkpoint
    first_item: int
    batch_sha256: str
    started_at: float
    finished_at: float
    handler_seconds: float
    worker: str
    failure_categories: dict[str, int] = msgspec.field(default_factory=dict)
    # The attempt's log (gzipped JSON lines) and metrics summary, published before `.done`.
    log_key: str | None = None
    log_sha256: str | None = None
    metrics_key: str | None = None
    metrics_sha256: str | None = None


class DoneMarker(Doc, kw_only=True):
    """Contents of ``.done``: points at the manifest it completes, by checksum."""

    task_id: str
    attempt: int
    manifest_key: str
    manifest_sha256: str


class RetryManifest(Doc, kw_only=True):
    """A retry: tasks resubmitted whole (``items`` empty), or an item retry plan (slurmctl.retry):
    new retry tasks ``task_ids``, each holding the items ``items[task]``, whose records are read
    from the batches of the tasks in ``origin`` (source task -> its failed items retried here)."""

    job_id: str
    number: int
    created_at: float
    reason: str
    task_ids: list[str]
    items: dict[str, list[int]] = msgspec.field(default_factory=dict)  # task_id -> item ids to retry
    origin: dict[str, list[int]] = msgspec.field(default_factory=dict)  # source task -> item ids
    sources: list[str] = msgspec.field(default_factory=list)  # tasks whose failures were planned
    categories: dict[str, int] = msgspec.field(default_factory=dict)  # items retried per category
    causes: dict[str, int] = msgspec.field(default_factory=dict)  # "category: Type" -> items retried
    skipped: dict[str, int] = msgspec.field(default_factory=dict)  # why items were not retried -> count
    round: int = 0  # the highest attempt number the plan starts (2: first retry)
    delay_s: float = 0.0
    not_before: float = 0.0  # unix time before which the retry tasks are not submitted


class AggregationManifest(Doc, kw_only=True):
    job_id: str
    created_at: float
    output_path: str
    output_format: str
    output_sha256: str
    output_bytes: int
    rows: int
    items_ok: int
    items_failed: int
    tasks: int
    sources: list[dict[str, Any]] = msgspec.field(default_factory=list)
    unpublished: list[str] = msgspec.field(default_factory=list)  # retry tasks left out (no result)
    fan_in: int = 0  # the merge tree (slurmctl.aggregate): inputs per node
    levels: list[int] = msgspec.field(default_factory=list)  # nodes per level, the root's last
    nodes_run: int = 0  # nodes this run merged (the others were valid already)
    columns: list[dict[str, Any]] = msgspec.field(default_factory=list)  # schema, null counts, min/max
