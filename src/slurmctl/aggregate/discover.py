"""Discovery: which task results are published, and are they complete?

One listing of ``jobs/<job>/results/`` (a directory walk on the local backend; ListObjectsV2 pages
of 1,000 keys on S3) finds every ``.done`` marker; then, per published task, its marker and the
result manifest the marker names (checked against the marker's sha256; it holds the task's item
range), and for an item retry task its task manifest (its item ids); on a remote store 16 of these
reads are in flight at once. No request is made for a task that has no marker.

What must hold before a merge starts (the result files' own checksums, row counts and item ids
are checked by the merge nodes that read them): every task of the job is published; each result
accounts for every item of its batch (ok + failed = items); the tasks' item ranges are disjoint and
cover items 0..total-1. Retry tasks (slurmctl.retry) come after the job's tasks, in plan order; one
with no published result (failed, not run yet, waiting) leaves its items their earlier outcome.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec

from slurmctl.coordinator import load_job
from slurmctl.errors import ChecksumMismatchError, ObjectNotFoundError, ResultsError
from slurmctl.model.core import Task, task_id
from slurmctl.model.manifests import DoneMarker, ResultManifest
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

REMOTE_READERS = 16  # reads at once on a remote store (S3: ~10-40 ms a GET)


class Source(msgspec.Struct, array_like=True):
    """One published task result, as the aggregation plan lists it."""

    task_id: str
    attempt: int
    data_key: str
    sha256: str
    rows: int
    first_item: int
    items: int
    item_ids: list[int] | None  # a retry task's items; None: first_item .. first_item+items-1
    items_failed: int
    errors_key: str | None
    errors_sha256: str | None


@dataclass
class Discovery:
    sources: list[Source]  # the job's tasks in item order, then the published retry tasks
    unpublished: list[str]  # retry tasks without a published result
    requests: int  # listings and reads made (what discovery costs on a remote store)
    problems: list[str] = field(default_factory=list)


def _shown(names: list[str]) -> str:
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def discover(backend: Backend, job_id: str) -> Discovery:
    """Every published result of the job, checked as the module docstring says. Raises
    ResultsError naming the missing and the broken results, with what to do about them."""
    from slurmctl.retry.tasks import retry_task_ids

    job = load_job(backend, job_id)
    objects = backend.objects
    retry_tasks = retry_task_ids(objects, job_id)
    requests = 2 + len(retry_tasks) // 1000  # the job manifest, the retry manifests' listing
    suffix = "/.done"
    listed = 0
    done: set[str] = set()
    for key in objects.list(keys.results_root(job_id)):
        listed += 1
        if key.endswith(suffix):
            done.add(key[len(keys.results_root(job_id)) : -len(suffix)])
    requests += 1 + listed // 1000
    missing: list[str] = []
    unpublished: list[str] = []
    published: list[tuple[int, str]] = []
    for k, tid in enumerate([task_id(i) for i in range(job.tasks)] + retry_tasks):
        if tid in done:
            published.append((k, tid))
        else:
            (missing if k < job.tasks else unpublished).append(tid)

    def read(kt: tuple[int, str]) -> Source | str:
        """The task's source, or why its result is broken."""
        k, tid = kt
        try:
            marker = DoneMarker.from_json(objects.get(keys.done_marker(job_id, tid)), where=f"{tid}/.done")
            m = ResultManifest.from_json(
                objects.get_verified(marker.manifest_key, marker.manifest_sha256), where=marker.manifest_key
            )
            item_ids = None
            if k >= job.tasks:  # a retry task: its items are listed in its task manifest
                item_ids = Task.from_json(
                    objects.get(keys.task_manifest(job_id, tid)), where=tid
                ).batch.item_ids
        except ObjectNotFoundError as exc:
            return f"{tid} ({exc.key} is missing)"
        except ChecksumMismatchError as exc:
            return f"{tid} ({exc.key} does not match the sha256 its .done names)"
        if m.items_ok + m.items_failed != m.items or (item_ids is not None and len(item_ids) != m.items):
            return (
                f"{tid} (its result accounts for {m.items_ok + m.items_failed} items, "
                f"its batch has {m.items if item_ids is None else len(item_ids)})"
            )
        return Source(
            tid,
            m.attempt,
            m.data_key,
            m.data_sha256,
            m.rows,
            m.first_item,
            m.items,
            item_ids,
            m.items_failed,
            m.errors_key,
            m.errors_sha256,
        )

    requests += 2 * len(published) + sum(1 for k, _ in published if k >= job.tasks)
    if objects.local_path(keys.job_manifest(job_id)) is None:  # a remote store: reads in parallel
        with ThreadPoolExecutor(max_workers=REMOTE_READERS) as pool:
            found = list(pool.map(read, published))
    else:
        found = [read(kt) for kt in published]
    sources = [f for f in found if isinstance(f, Source)]
    broken = [f for f in found if isinstance(f, str)]
    if missing or broken:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {job.tasks} task(s) have no published result: {_shown(missing)}")
        if broken:
            parts.append(f"{len(broken)} published result(s) are damaged: {_shown(broken)}")
        raise ResultsError(
            f"job {job_id}: " + "; ".join(parts),
            hint=f"`slurmctl status {job_id}` shows why tasks are unpublished; a damaged result's task "
            f"runs again after its .done is removed and `slurmctl resubmit {job_id}`; results are "
            "merged once every task is published",
        )
    originals = sorted(sources[: job.tasks], key=lambda s: s.first_item)
    covered = sum(s.items for s in originals)
    if covered != job.total_items:
        raise ResultsError(f"job {job_id}: tasks cover {covered} items, the input had {job.total_items}")
    expected_next = 0
    for s in originals:
        if s.first_item != expected_next:
            raise ResultsError(
                f"job {job_id}: item ids {expected_next}..{s.first_item - 1} belong to no task"
            )
        expected_next = s.first_item + s.items
    return Discovery(originals + sources[job.tasks :], unpublished, requests)
