"""The retry manifests as workers and readers need them: light (msgspec documents only), so a
worker can find the item retry tasks of its job."""

from __future__ import annotations

from slurmctl.model.manifests import RetryManifest
from slurmctl.storage import keys
from slurmctl.storage.base import ObjectStore


def manifests(objects: ObjectStore, job_id: str) -> list[RetryManifest]:
    """Every retry manifest of the job, by number."""
    out = [
        RetryManifest.from_json(objects.get(key), where=key)
        for key in objects.list(keys.retries_prefix(job_id))
    ]
    return sorted(out, key=lambda m: m.number)


def retry_task_ids(objects: ObjectStore, job_id: str) -> list[str]:
    """The item retry tasks of the job, in the order they were planned."""
    return [tid for m in manifests(objects, job_id) if m.items for tid in m.task_ids]


def retry_not_before(objects: ObjectStore, job_id: str) -> dict[str, float]:
    """The item retry tasks of the job, in the order they were planned, each with its not-before
    time (unix time)."""
    return {tid: m.not_before for m in manifests(objects, job_id) if m.items for tid in m.task_ids}
