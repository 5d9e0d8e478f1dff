"""Verify every published task result and merge them into one output file.

Verification, before anything is written: every task has a ``.done`` marker; the marker's manifest
matches its sha256; each result file matches the manifest's sha256 and row count; each task
accounts for every item of its batch (ok + failed = items); every row's ``_item_id`` lies in its
task's item range; no item id has rows in two tasks; and the tasks together cover items
0..total-1. Retry tasks (slurmctl.retry: tasks whose batch holds failed items of earlier tasks,
listed in the retry manifests) are verified the same way, their rows' ``_item_id`` among their
items; an item's latest outcome wins: a row from a retry task replaces the item's earlier failure,
and each item has rows from one task at most (checked by id). A retry task with no published
result (failed, not run yet, waiting) leaves its items their earlier outcome. Only then is the
output written (temp file, fsync, rename) with an aggregation manifest (sha256, rows) beside it
and in the store.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurmctl.coordinator import load_job
from slurmctl.errors import ChecksumMismatchError, ObjectNotFoundError, ResultsError, SlurmctlError
from slurmctl.fsutil import atomic_writer, fsync_dir, sha256_file
from slurmctl.model.core import Job, Task
from slurmctl.model.manifests import AggregationManifest, DoneMarker, ResultManifest
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

FORMATS = ("parquet", "sqlite", "csv", "jsonl")


@dataclass
class TaskResult:
    task: Task
    manifest: ResultManifest
    path: Path  # local file holding the rows (the store's file, or a verified copy)


def _published(backend: Backend, job: Job, tid: str, workdir: Path) -> TaskResult:
    objects = backend.objects
    task = Task.from_json(objects.get(keys.task_manifest(job.job_id, tid)), where=tid)
    marker = DoneMarker.from_json(objects.get(keys.done_marker(job.job_id, tid)), where=f"{tid}/.done")
    manifest = ResultManifest.from_json(
        objects.get_verified(marker.manifest_key, marker.manifest_sha256), where=marker.manifest_key
    )
    path = objects.local_path(manifest.data_key)
    if path is None:
        path = workdir / f"{tid}.jsonl"
        objects.get_file(manifest.data_key, path)
    actual = sha256_file(path)
    if actual != manifest.data_sha256:
        raise ChecksumMismatchError(manifest.data_key, manifest.data_sha256, actual)
    if manifest.items_ok + manifest.items_failed != task.batch.items:
        raise ResultsError(
            f"task {tid}: result accounts for {manifest.items_ok + manifest.items_failed} items, "
            f"its batch has {task.batch.items}"
        )
    return TaskResult(task, manifest, path)


def verify(backend: Backend, job_id: str, workdir: Path) -> tuple[list[TaskResult], list[str]]:
    """Check every task's published result. Returns the results (input order, then the retry
    tasks) and the retry tasks with none (failed, not run yet or waiting: their items keep their
    earlier outcome). Raises ResultsError naming what is missing or wrong."""
    job = load_job(backend, job_id)
    from slurmctl.model.core import task_id
    from slurmctl.retry.tasks import retry_task_ids

    retry_tasks = retry_task_ids(backend.objects, job_id)
    results: list[TaskResult] = []
    missing: list[str] = []
    unpublished: list[str] = []
    for k, tid in enumerate([task_id(i) for i in range(job.tasks)] + retry_tasks):
        try:
            results.append(_published(backend, job, tid, workdir))
        except ObjectNotFoundError:
            (missing if k < job.tasks else unpublished).append(tid)
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ResultsError(
            f"job {job_id}: {len(missing)} of {job.tasks} task(s) have no published result: {shown}",
            hint=f"`slurmctl status {job_id}` shows why; results are merged once every task is published",
        )
    originals = results[: job.tasks]
    covered = sum(r.task.batch.items for r in originals)
    if covered != job.total_items:
        raise ResultsError(f"job {job_id}: tasks cover {covered} items, the input had {job.total_items}")
    expected_next = 0
    for r in sorted(originals, key=lambda r: r.task.batch.first_item):
        if r.task.batch.first_item != expected_next:
            raise ResultsError(
                f"job {job_id}: item ids {expected_next}..{r.task.batch.first_item - 1} belong to no task"
            )
        expected_next = r.task.batch.first_item + r.task.batch.items
    return sorted(originals, key=lambda r: r.task.batch.first_item) + results[job.tasks :], unpublished


def _rows(result: TaskResult) -> Iterator[dict[str, Any]]:
    """Rows of one task, each checked against the task's items; row count checked at the end."""
    b = result.task.batch
    lo, hi = b.first_item, b.first_item + b.items
    allowed = frozenset(b.item_ids) if b.item_ids is not None else None
    n = 0
    with open(result.path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            item = row.get("_item_id")
            if not isinstance(item, int) or (
                item not in allowed if allowed is not None else not lo <= item < hi
            ):
                where = f"{lo}..{hi - 1}" if allowed is None else f"(retry items of {result.task.task_id})"
                raise ResultsError(
                    f"task {result.task.task_id}: row {n + 1} has _item_id {item!r} outside its items {where}"
                )
            n += 1
            yield row
    if n != result.manifest.rows:
        raise ResultsError(
            f"task {result.task.task_id}: {n} rows in the file, manifest says {result.manifest.rows}"
        )


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list)) else v


def merge(
    backend: Backend, job_id: str, out_path: Path, fmt: str | None = None, *, force: bool = False
) -> AggregationManifest:
    """Verify and write the merged output. Idempotent: re-running rewrites the same content."""
    out_path = Path(out_path).expanduser().absolute()
    fmt = fmt or {".parquet": "parquet", ".sqlite": "sqlite", ".db": "sqlite", ".csv": "csv"}.get(
        out_path.suffix, "jsonl"
    )
    if fmt not in FORMATS:
        raise ResultsError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_path.parent, prefix=".slurmctl-probe-"):
            pass
    except OSError as exc:
        raise ResultsError(
            f"cannot write the output to {out_path}: {exc.strerror}",
            hint="choose a writable -o path; nothing was lost, the task results stay in the store",
        ) from exc
    with tempfile.TemporaryDirectory(prefix="slurmctl-results-") as tmp:
        results, unpublished = verify(backend, job_id, Path(tmp))  # input order, then retry tasks
        # Pass 1: every row's item id lies in its own task's items, and verify() proved the
        # original tasks' ranges disjoint and covering the input; an item a retry task holds may
        # have rows from one task only (its earlier tasks failed it), checked here by id.
        retried = frozenset(i for r in results if r.task.batch.item_ids for i in r.task.batch.item_ids)
        row_task: dict[int, str] = {}  # retried item -> the task its rows come from
        columns: dict[str, None] = {}
        rows = 0
        for r in results:
            tid = r.task.task_id
            for row in _rows(r):
                for k in row:
                    columns.setdefault(k, None)
                rows += 1
                item = row["_item_id"]
                if item in retried and row_task.setdefault(item, tid) != tid:
                    raise ResultsError(
                        f"job {job_id}: item {item} has rows in tasks {row_task[item]} and {tid}",
                        hint="a retry ran an item that had succeeded; its output would appear twice",
                    )
        cols = ["_item_id", *[c for c in columns if c != "_item_id"]]
        try:
            if fmt == "jsonl":
                with atomic_writer(out_path) as f:
                    for r in results:
                        with open(r.path, "rb") as src:
                            for line in src:
                                f.write(line)
            elif fmt == "csv":
                with atomic_writer(out_path) as fb:
                    f = _TextOut(fb)
                    w = csv.DictWriter(f, fieldnames=cols, extrasaction="raise")
                    w.writeheader()
                    for r in results:
                        for row in _rows(r):
                            w.writerow({k: _cell(v) for k, v in row.items()})
            elif fmt == "sqlite":
                _write_sqlite(out_path, cols, results)
            else:
                _write_parquet(out_path, results)
        except OSError as exc:
            raise ResultsError(f"cannot write the output to {out_path}: {exc.strerror}") from exc
        # Each failed item's latest failure (a later task's replaces an earlier one's), unless a
        # retry task that held it did not fail it.
        final: dict[int, dict[str, Any]] = {}
        for r in results:
            tid = r.task.task_id
            if r.task.batch.item_ids is not None:
                for i in r.task.batch.item_ids:
                    final.pop(i, None)
            if r.manifest.errors_key:
                data = backend.objects.get_verified(r.manifest.errors_key, r.manifest.errors_sha256 or "")
                for line in data.splitlines():
                    err = json.loads(line)
                    err["task_id"] = tid
                    final[err["item_id"]] = err
        failed = len(final)
        items = sum(r.task.batch.items for r in results if r.task.batch.item_ids is None)
        errors_path = out_path.with_name(out_path.name + ".errors.jsonl")
        if failed:
            with atomic_writer(errors_path) as f:
                for _, err in sorted(final.items()):
                    f.write((json.dumps(err) + "\n").encode())
        manifest = AggregationManifest(
            job_id=job_id,
            created_at=time.time(),
            output_path=str(out_path),
            output_format=fmt,
            output_sha256=sha256_file(out_path),
            output_bytes=out_path.stat().st_size,
            rows=rows,
            items_ok=items - failed,
            items_failed=failed,
            tasks=len(results),
            unpublished=unpublished,
            sources=[
                {"task_id": r.task.task_id, "attempt": r.manifest.attempt, "sha256": r.manifest.data_sha256}
                for r in results
            ],
        )
        data = manifest.to_json()
        backend.objects.put(keys.output_manifest(job_id), data)
        with atomic_writer(out_path.with_name(out_path.name + ".manifest.json")) as f:
            f.write(data)
    return manifest


class _TextOut:
    """A text adapter over the binary atomic writer (csv needs str writes)."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def write(self, s: str) -> int:
        return self.f.write(s.encode("utf-8"))


def _write_sqlite(out_path: Path, cols: list[str], results: list[TaskResult]) -> None:
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as db:
            quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
            db.execute(f"CREATE TABLE results ({quoted})")
            marks = ", ".join("?" for _ in cols)
            for r in results:
                batch = [tuple(_cell(row.get(c)) for c in cols) for row in _rows(r)]
                db.executemany(f"INSERT INTO results VALUES ({marks})", batch)
            db.execute("CREATE INDEX results_item ON results (_item_id)")
            db.commit()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_parquet(out_path: Path, results: list[TaskResult]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SlurmctlError(
            "Parquet output needs pyarrow", hint="pip install 'slurmctl[parquet]' or use -f jsonl/csv/sqlite"
        ) from exc
    tables = [pa.Table.from_pylist(list(_rows(r))) for r in results]
    tables = [t for t in tables if t.num_rows]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({"_item_id": []})
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
