"""``ctx``: what a handler may know about where it runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurmctl.obs.metrics import Custom


@dataclass
class TaskContext:
    """Passed to handlers as ``ctx``.

    ``job_id``, ``task_id``, ``attempt``: where this call runs; ``item_id``: the item being handled
    (None in batch mode); ``logger``: a logger whose lines carry those ids and the item
    (docs/observability.md); ``metrics``: the task's own counters, gauges and histograms
    (``ctx.metrics.counter("pages")``), rolled up by ``slurmctl metrics JOB``; ``scratch_dir``: a
    node-local directory private to this task attempt, removed when the task is published;
    ``resources``: the task's resources from the job file (cpus, mem_gb, gres); ``rate_limits``:
    reserved for the shared rate limiter (named token buckets), empty until a job declares limits.
    """

    job_id: str
    task_id: str
    attempt: int
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    scratch_dir: Path
    resources: dict[str, Any] = field(default_factory=dict)
    item_id: int | None = None
    rate_limits: dict[str, Any] = field(default_factory=dict)
    metrics: Custom = field(default_factory=Custom)
