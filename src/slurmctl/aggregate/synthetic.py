"""Published results of a job that no worker ran: for the aggregation tests and benchmarks.

``publish_job`` writes what a submission and its workers leave in the store (the job manifest,
one task manifest per task, each task's rows, result manifest and ``.done``) with the layout and
checksums of docs/architecture.md, so that a merge of 10,000 or 100,000 results can be measured
without running as many workers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import msgspec

from slurmctl.model.core import Batch, Job, Task, task_id
from slurmctl.model.manifests import DoneMarker, ResultManifest
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

Row = dict[str, Any]


def publish_job(
    backend: Backend,
    job_id: str,
    tasks: int,
    items_per_task: int,
    rows: Callable[[int, int], list[Row]] = lambda task, item: [{"x": item * 2, "s": f"r{item}"}],
    config: dict[str, Any] | None = None,
) -> Job:
    """A job of ``tasks`` published tasks of ``items_per_task`` items each; ``rows(task, item)``
    gives an item's rows (``_item_id`` is added first). Returns the job manifest."""
    objects = backend.objects
    encode = msgspec.json.Encoder().encode
    job = Job(
        job_id=job_id,
        name=job_id,
        created_at=time.time(),
        config=config or {"output": {"format": "jsonl", "path": None}, "handler": {"python_path": []}},
        config_sha256="",
        backend=backend.spec,
        executor="local",
        total_items=tasks * items_per_task,
        tasks=tasks,
    )
    objects.put(keys.job_manifest(job_id), job.to_json())
    for t in range(tasks):
        tid = task_id(t)
        first = t * items_per_task
        data = b"".join(
            encode({"_item_id": i, **r}) + b"\n"
            for i in range(first, first + items_per_task)
            for r in rows(t, i)
        )
        nrows = data.count(b"\n")
        batch = Batch(
            batch_id=f"b{t:07d}",
            index=t,
            key=keys.batch(job_id, f"b{t:07d}"),
            first_item=first,
            items=items_per_task,
            bytes=0,
            sha256="",
            source="synthetic",
            first_line=first + 1,
            last_line=first + items_per_task,
        )
        objects.put(
            keys.task_manifest(job_id, tid), Task(task_id=tid, job_id=job_id, index=t, batch=batch).to_json()
        )
        data_key = keys.result_data(job_id, tid, 1)
        objects.put(data_key, data)
        manifest = ResultManifest(
            job_id=job_id,
            task_id=tid,
            attempt=1,
            data_key=data_key,
            data_sha256=hashlib.sha256(data).hexdigest(),
            data_bytes=len(data),
            rows=nrows,
            items=items_per_task,
            items_ok=items_per_task,
            items_failed=0,
            first_item=first,
            batch_sha256="",
            started_at=0.0,
            finished_at=0.0,
            handler_seconds=0.0,
            worker="synthetic",
        ).to_json()
        mkey = keys.result_manifest(job_id, tid, 1)
        objects.put(mkey, manifest)
        marker = DoneMarker(
            task_id=tid, attempt=1, manifest_key=mkey, manifest_sha256=hashlib.sha256(manifest).hexdigest()
        )
        objects.put(keys.done_marker(job_id, tid), marker.to_json())
    return job
