"""Per-attempt logs and metrics in the shape the worker writes them (``a<N>.log.jsonl.gz``,
``a<N>.metrics.json`` beside a task's results), made from a real job's published results: the
dashboard tests read them without depending on the code that writes them."""

from __future__ import annotations

import gzip
import json
import time

from slurmctl.storage import keys
from slurmctl.storage.base import Backend


def add_task_files(
    backend: Backend,
    job_id: str,
    *,
    limit: str | None = "api",
    mem_mb: int = 200,
    queue_wait_s: float = 3.0,
) -> list[str]:
    """For each published attempt of ``job_id``: a metrics file and a gzip JSON-lines log (one
    line per item, an ERROR line with ``exc`` for each failed item). Returns the tasks done."""
    from slurmctl.model.manifests import DoneMarker, ResultManifest

    prefix = keys.result_prefix(job_id, "").rstrip("/") + "/"
    tasks = sorted(
        {k[len(prefix) :].split("/")[0] for k in backend.objects.list(prefix) if k.endswith("/.done")}
    )
    for i, tid in enumerate(tasks):
        marker = DoneMarker.from_json(backend.objects.get(keys.done_marker(job_id, tid)))
        m = ResultManifest.from_json(backend.objects.get(marker.manifest_key))
        host = m.worker.split(":", 1)[0]
        failed: dict[int, dict] = {}
        if m.errors_key:
            for line in backend.objects.get(m.errors_key).splitlines():
                e = json.loads(line)
                failed[e["item_id"]] = e
        ctx = {
            "job": job_id,
            "task": tid,
            "attempt": m.attempt,
            "worker": m.worker,
            "host": host,
            "slurm_job_id": None,
        }
        lines = [
            {
                "ts": _iso(m.started_at),
                "level": "INFO",
                "logger": "slurmctl.worker",
                "msg": f"task {tid} attempt {m.attempt} started",
                "item": None,
                **ctx,
            }
        ]
        for k in range(m.items):
            item = m.first_item + k
            rec = {
                "ts": _iso(m.started_at + (m.finished_at - m.started_at) * k / max(m.items, 1)),
                "level": "DEBUG",
                "logger": "handler",
                "msg": f"item {item} handled",
                "item": item,
                **ctx,
            }
            if item in failed:
                e = failed[item]
                rec.update(
                    level="ERROR",
                    msg=f"item {item} failed: {e['type']}: {e['message']}",
                    exc=e.get("traceback") or "",
                )
            lines.append(rec)
        lines.append(
            {
                "ts": _iso(m.finished_at),
                "level": "INFO",
                "logger": "slurmctl.worker",
                "msg": f"task {tid} published {m.items_ok} ok, {m.items_failed} failed",
                "item": None,
                **ctx,
            }
        )
        body = "".join(json.dumps(x) + "\n" for x in lines).encode()
        base = keys.result_prefix(job_id, tid) + f"a{m.attempt}"
        backend.objects.put(base + ".log.jsonl.gz", gzip.compress(body))
        wall = max(m.finished_at - m.started_at, 1e-3)
        metrics = {
            "format": 1,
            "job": job_id,
            "task": tid,
            "attempt": m.attempt,
            "host": host,
            "slurm_job_id": None,
            "started": _iso(m.started_at),
            "ended": _iso(m.finished_at),
            "wall_s": wall,
            "cpu_s": wall * (0.3 + 0.6 * (i % 3) / 2),
            "items_ok": m.items_ok,
            "items_failed": m.items_failed,
            "failed_by_category": m.failure_categories,
            "items_per_s": m.items / wall,
            "peak_rss_bytes": (60 + 40 * (i % 5)) * 2**20,
            "read_bytes": 4096 * m.items,
            "written_bytes": m.data_bytes,
            "queue_wait_s": queue_wait_s * (1 + i % 4),
            "ratelimit": {limit: {"tokens": m.items, "wait_s": 0.01 * m.items}} if limit else {},
            "store": {"calls": 6, "seconds": 0.02},
            "custom": {"counters": {"records": m.items}, "gauges": {}, "histograms": {}},
        }
        backend.objects.put(base + ".metrics.json", json.dumps(metrics).encode())
    return tasks


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
