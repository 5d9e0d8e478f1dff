"""The coordinator: job file → job record → partitioned batches → task manifests → executor.

Every step is re-runnable: ``prepare`` writes the job record first (state ``created``), the
partitioner resumes from its own state file, task manifests and records are created only where
absent, and the job moves to ``partitioned`` only when all of them exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurmctl.clusters import apply_profile, resolve
from slurmctl.config.models import JobConfig
from slurmctl.errors import ConfigError, ConflictError, InputError, JobNotFoundError, StateError
from slurmctl.lifecycle import create_job, create_tasks, job_status, set_job_state
from slurmctl.model.core import Batch, Job, JobStatus, Task, TaskStatus, task_id
from slurmctl.model.states import JobState
from slurmctl.obs.logs import bind
from slurmctl.storage import keys
from slurmctl.storage.base import Backend
from slurmctl.storage.open import open_backend

if TYPE_CHECKING:
    from slurmctl.partition import BatchInfo

Progress = Callable[[int, int], None]

log = logging.getLogger("slurmctl.coordinator")


def new_job_id(name: str) -> str:
    """``<name>-<UTC yyyymmdd-HHMMSS>-<4 hex>``: sortable, readable, safe as a path and a Slurm name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:32].strip("-.") or "job"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def config_dict(config: JobConfig) -> dict[str, Any]:
    out = config.model_dump(mode="json")
    if config.alerts is not None:  # as written: it goes over the user's alert file key by key
        out["alerts"] = config.alerts.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return out


def load_job(backend: Backend, job_id: str) -> Job:
    try:
        data = backend.objects.get(keys.job_manifest(job_id))
    except Exception as exc:
        if backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id)) is None:
            raise JobNotFoundError.in_backend(job_id, backend.description) from exc
        raise
    return Job.from_json(data, where=f"job {job_id}")


def prepare(
    config: JobConfig,
    *,
    root_override: str | None = None,
    progress: Progress | None = None,
    job_id: str | None = None,
) -> tuple[Backend, Job]:
    """Create the job and partition its input. Returns the backend and the job manifest.

    Raises InputError for unreadable/empty input or more rejects than ``input.max_rejects``
    (the job then stays ``failed`` with the rejects file kept for inspection)."""
    from slurmctl.partition import CsvOptions, expand_inputs, partition

    cfg = config_dict(config)
    profile = resolve(config.executor.cluster) if config.executor.kind == "slurm" else None
    if profile is not None:
        cfg = apply_profile(cfg, profile[1])
        cfg["executor"]["cluster"] = profile[0]
    backend = open_backend(cfg["backend"], root_override, check=True)  # fails fast, before any write
    cfg["backend"] = backend.spec
    inputs = expand_inputs(config.input.path, Path.cwd())
    job_id = job_id or new_job_id(config.name)
    bind(job=job_id)  # the lines logged from here on name the job
    out_dir = backend.objects.local_path(keys.batches_prefix(job_id) + "x")
    reference = _reference_batches(config, out_dir, inputs)
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    status = JobStatus(
        job_id=job_id,
        name=config.name,
        state=JobState.CREATED,
        executor=config.executor.kind,
        max_attempts=config.retry.max_attempts,
    )
    # Re-running prepare for the same id carries on from where it stopped (partitioning resumes).
    try:
        create_job(backend, status)
    except ConflictError:
        current = job_status(backend, job_id)
        if current.state == JobState.PARTITIONED:
            return backend, load_job(backend, job_id)  # interrupted before submission: submit it
        if current.state != JobState.CREATED:
            raise StateError(
                f"job {job_id} is {current.state.value}: its submission is not interrupted",
                hint=f"`slurmctl resubmit {job_id}` runs what is left of a submitted job",
            ) from None
    backend.objects.put(keys.job_config(job_id), cfg_bytes)

    with _staging_dir(out_dir, job_id) as staging:
        try:
            summary = partition(
                inputs,
                staging,
                items_per_batch=config.batch.items,
                bytes_per_batch=int(config.batch.mb * 1e6) if config.batch.mb else None,
                input_format=config.input.format,
                max_record_bytes=int(config.input.max_record_mb * 2**20),
                progress=progress,
                csv_options=CsvOptions(delimiter=config.input.csv.delimiter, header=config.input.csv.header),
                reference=reference,
            )
        except InputError as exc:
            set_job_state(backend, job_id, JobState.FAILED, message=str(exc))
            raise
        rejects_at = str(summary.rejects_path)
        if summary.rejects_path is not None and out_dir is None:  # remote store: keep them there
            backend.objects.put_file(keys.rejects(job_id), summary.rejects_path)
            rejects_at = f"{keys.rejects(job_id)} in {backend.description}"
        if summary.rejected > config.input.max_rejects:
            examples = _reject_examples(summary.rejects_path)
            msg = (
                f"{summary.rejected} malformed record(s) rejected (input.max_rejects is "
                f"{config.input.max_rejects}); first ones:\n" + "\n".join(examples)
            )
            set_job_state(backend, job_id, JobState.FAILED, message=msg)
            raise InputError(
                msg,
                hint=f"all rejects are in {rejects_at}; fix the input, or raise input.max_rejects "
                "to run the good records",
            )

        batches: list[Batch] = []
        for b in summary.batches:
            batch = batch_manifest(job_id, b)
            if out_dir is None and batch.key is not None:  # remote store: upload the staged batch
                backend.objects.put_file(batch.key, staging / f"{b.batch_id}.jsonl")
            batches.append(batch)
    job = Job(
        job_id=job_id,
        name=config.name,
        created_at=time.time(),
        config=cfg,
        config_sha256=hashlib.sha256(cfg_bytes).hexdigest(),
        backend=backend.spec,
        executor=config.executor.kind,
        total_items=summary.total_items,
        rejected=summary.rejected,
        tasks=len(batches),
        inputs=summary.inputs,
    )
    with backend.deferred_sync():
        for b in batches:
            tid = task_id(b.index)
            task = Task(task_id=tid, job_id=job_id, index=b.index, batch=b)
            backend.objects.put(keys.task_manifest(job_id, tid), task.to_json())
    create_tasks(
        backend, job_id, (TaskStatus(task_id=task_id(b.index), items_total=b.items) for b in batches)
    )
    save_job(backend, job)
    set_job_state(backend, job_id, JobState.PARTITIONED, total_items=job.total_items, tasks=job.tasks)
    log.info("job %s partitioned: %d tasks, %d items", job_id, job.tasks, job.total_items)
    return backend, job


@contextlib.contextmanager
def _staging_dir(out_dir: Path | None, job_id: str) -> Iterator[Path]:
    """Where the partitioner writes: the store's batches directory on the local backend; for a
    remote store a new directory under $TMPDIR, removed when the block ends, however it ends (the
    batches are uploaded from it; an interrupted submission partitions again when resumed)."""
    if out_dir is not None:
        yield out_dir.parent
        return
    with tempfile.TemporaryDirectory(prefix=f"slurmctl-{job_id}-") as tmp:
        yield Path(tmp)


def batch_manifest(job_id: str, b: BatchInfo) -> Batch:
    """Returns the task manifest's record of the partitioner's batch ``b``: its object key, or for a
    reference batch (``b.ref_path``) no key and the input range."""
    return Batch(
        batch_id=b.batch_id,
        index=b.index,
        key=keys.batch(job_id, b.batch_id) if b.ref_path is None else None,
        ref_path=b.ref_path,
        ref_offset=b.ref_offset,
        first_item=b.first_item,
        items=b.items,
        bytes=b.bytes,
        sha256=b.sha256,
        source=str(b.source),
        first_line=b.first_line,
        last_line=b.last_line,
    )


def _reference_batches(config: JobConfig, out_dir: Path | None, inputs: list[Path]) -> bool:
    """Returns whether batches may refer to byte ranges of the input instead of copies (``input.staging``).

    ``auto`` says yes only where the workers can surely read the input: the local backend (``out_dir``
    is its batch directory) with the local executor, or with every input file on the same file system
    as the backend root (which Slurm workers must see already). Raises: ConfigError for ``reference``
    on a remote backend."""
    staging = config.input.staging
    if staging == "copy":
        return False
    if out_dir is None:
        if staging == "reference":
            raise ConfigError(
                "input.staging: reference needs the local backend (workers on a remote backend read "
                "their batches from the object store)",
                hint="use input.staging: auto or copy",
            )
        return False
    if staging == "reference" or config.executor.kind == "local":
        return True
    try:
        root = out_dir
        while not root.exists():
            root = root.parent
        dev = root.stat().st_dev
        return all(p.stat().st_dev == dev for p in inputs)
    except OSError:
        return False


def save_job(backend: Backend, job: Job) -> None:
    backend.objects.put(keys.job_manifest(job.job_id), job.to_json())


def _reject_examples(path: Path | None, limit: int = 5) -> list[str]:
    if path is None or not Path(path).exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            out.append(f"  {r['source']}:{r['line']}: {r['reason']}")
            if len(out) >= limit:
                break
    return out


def record_retry(backend: Backend, job_id: str, task_ids: list[str], reason: str) -> int:
    """Write the next retry manifest (which tasks were resubmitted, and why). Returns its number."""
    from slurmctl.model.manifests import RetryManifest

    number = sum(1 for _ in backend.objects.list(keys.retries_prefix(job_id)))
    while True:
        doc = RetryManifest(
            job_id=job_id, number=number, created_at=time.time(), reason=reason, task_ids=task_ids
        )
        try:
            backend.objects.put_if_absent(keys.retry_manifest(job_id, number), doc.to_json())
            return number
        except ConflictError:
            number += 1
