"""The storage layout: every object key and state key is built here and nowhere else.

Object keys (the same on a local root and in an S3 bucket)::

    jobs/<job>/job.json                         job manifest (immutable description + task groups)
    jobs/<job>/config.json                      the resolved job config as submitted
    jobs/<job>/batches/<batch>.jsonl            input batches (one JSON value per line)
    jobs/<job>/batches/rejects.jsonl            records the partitioner rejected, with line numbers
    jobs/<job>/tasks/<task>.json                task manifest (which batch, sha256, item range)
    jobs/<job>/results/<task>/a<N>.jsonl        rows written by attempt N
    jobs/<job>/results/<task>/a<N>.errors.jsonl failed items of attempt N (type, message, traceback)
    jobs/<job>/results/<task>/a<N>.manifest.json result manifest of attempt N (rows, sha256, timings)
    jobs/<job>/results/<task>/a<N>.log.jsonl.gz the log of attempt N (gzipped JSON lines)
    jobs/<job>/results/<task>/a<N>.metrics.json the metrics summary of attempt N
    jobs/<job>/results/<task>/.done             written last, create-if-absent: names the one attempt
                                                whose result is published (manifest key + sha256)
    jobs/<job>/checkpoints/<task>/<first>-<w>.seg  checkpoint segment: runs of items committed on a
                                                node since its previous segment (first = its first
                                                item id, 12 digits; w = the writing attempt's token)
    jobs/<job>/retries/<n>.json                 retry manifests
    jobs/<job>/slurm/<group>.sbatch             generated sbatch scripts
    jobs/<job>/logs/...                         executor and worker logs
    jobs/<job>/logs/live/<task>.a<N>.jsonl      the log of attempt N while it runs (local backend)
    jobs/<job>/aggregate/plan.json              the merge tree, written before any node runs
    jobs/<job>/aggregate/L<k>/n<i>.<fmt>        output of node i of level k (the root's: the output)
    jobs/<job>/aggregate/L<k>/n<i>.manifest.json  its manifest (rows, sha256, schema, stats)
    jobs/<job>/aggregate/L<k>/n<i>.done         written last: names the manifest by sha256
    jobs/<job>/output/manifest.json             aggregation manifest of the merged output
    jobs/<job>/output/.done                     success marker: written after the output manifest

State keys (tables ``jobs``, ``tasks``, ``progress`` and ``alerts``)::

    jobs:      <job>
    tasks:     <job>/<task>
    progress:  <job>/g<group>      one record per GROUP_SIZE tasks (slurmctl.model.progress)
    alerts:    <job>/alerts        the job's alert conditions and deliveries (slurmctl.alerts.state)
"""

from __future__ import annotations

from slurmctl.errors import ConfigError

JOBS_TABLE = "jobs"
TASKS_TABLE = "tasks"
PROGRESS_TABLE = "progress"
ALERTS_TABLE = "alerts"


def check_job_id(job_id: str) -> str:
    """``job_id`` if it can name a job: one path segment, printable, no leading "-". Every key of
    a job is built through it, so a bad id fails here (ConfigError, exit 2) before any I/O."""
    if (
        job_id in ("", ".", "..")
        or job_id[0] == "-"
        or "/" in job_id
        or "\\" in job_id
        or not job_id.isprintable()
    ):
        raise ConfigError(
            f"{job_id!r} is not a job id",
            hint="a job id is one name without '/', control characters or a leading '-'; "
            "`slurmctl jobs` lists them",
        )
    return job_id


def _job(job_id: str) -> str:
    return f"jobs/{check_job_id(job_id)}"


def job_prefix(job_id: str) -> str:
    return f"{_job(job_id)}/"


def jobs_root() -> str:
    return "jobs/"


def job_manifest(job_id: str) -> str:
    return f"{_job(job_id)}/job.json"


def job_config(job_id: str) -> str:
    return f"{_job(job_id)}/config.json"


def batches_prefix(job_id: str) -> str:
    return f"{_job(job_id)}/batches/"


def batch(job_id: str, batch_id: str) -> str:
    return f"{_job(job_id)}/batches/{batch_id}.jsonl"


def rejects(job_id: str) -> str:
    return f"{_job(job_id)}/batches/rejects.jsonl"


def task_manifest(job_id: str, task_id: str) -> str:
    return f"{_job(job_id)}/tasks/{task_id}.json"


def results_root(job_id: str) -> str:
    """The prefix of every task's published results (what discovery lists, once)."""
    return f"{_job(job_id)}/results/"


def result_prefix(job_id: str, task_id: str) -> str:
    return f"{_job(job_id)}/results/{task_id}/"


def result_data(job_id: str, task_id: str, attempt: int) -> str:
    return f"{_job(job_id)}/results/{task_id}/a{attempt}.jsonl"


def result_errors(job_id: str, task_id: str, attempt: int) -> str:
    return f"{_job(job_id)}/results/{task_id}/a{attempt}.errors.jsonl"


def result_manifest(job_id: str, task_id: str, attempt: int) -> str:
    return f"{_job(job_id)}/results/{task_id}/a{attempt}.manifest.json"


def result_log(job_id: str, task_id: str, attempt: int) -> str:
    return f"{_job(job_id)}/results/{task_id}/a{attempt}.log.jsonl.gz"


def result_metrics(job_id: str, task_id: str, attempt: int) -> str:
    return f"{_job(job_id)}/results/{task_id}/a{attempt}.metrics.json"


def results_prefix(job_id: str) -> str:
    return f"{_job(job_id)}/results/"


def live_log(job_id: str, task_id: str, attempt: int) -> str:
    """The log of a running attempt, line by line (read by ``slurmctl logs --follow``)."""
    return f"{_job(job_id)}/logs/live/{task_id}.a{attempt}.jsonl"


def live_logs_prefix(job_id: str) -> str:
    return f"{_job(job_id)}/logs/live/"


def done_marker(job_id: str, task_id: str) -> str:
    return f"{_job(job_id)}/results/{task_id}/.done"


def checkpoint_prefix(job_id: str, task_id: str) -> str:
    """The prefix of every checkpoint segment of a task."""
    return f"{_job(job_id)}/checkpoints/{task_id}/"


def checkpoint_segment(job_id: str, task_id: str, first_item: int, writer: str) -> str:
    """A checkpoint segment: its first item id (segments list in item order) and the token of the
    attempt that wrote it (two attempts never write the same key)."""
    return f"{_job(job_id)}/checkpoints/{task_id}/{first_item:012d}-{writer}.seg"


def retries_prefix(job_id: str) -> str:
    return f"{_job(job_id)}/retries/"


def retry_manifest(job_id: str, number: int) -> str:
    return f"{_job(job_id)}/retries/{number:04d}.json"


def sbatch_script(job_id: str, group_id: str) -> str:
    return f"{_job(job_id)}/slurm/{group_id}.sbatch"


def log_prefix(job_id: str) -> str:
    return f"{_job(job_id)}/logs/"


def output_manifest(job_id: str) -> str:
    return f"{_job(job_id)}/output/manifest.json"


def output_done(job_id: str) -> str:
    """The job's success marker: written last, once the output and its manifest are durable."""
    return f"{_job(job_id)}/output/.done"


def aggregate_prefix(job_id: str) -> str:
    return f"{_job(job_id)}/aggregate/"


def aggregate_plan(job_id: str) -> str:
    return f"{_job(job_id)}/aggregate/plan.json"


def aggregate_node(job_id: str, level: int, index: int, suffix: str) -> str:
    """A merge node's files: ``suffix`` is its output's (``.parquet`` ...), ``.manifest.json`` or
    ``.done``."""
    return f"{_job(job_id)}/aggregate/L{level:02d}/n{index:06d}{suffix}"


def job_state(job_id: str) -> str:
    return check_job_id(job_id)


def task_state(job_id: str, task_id: str) -> str:
    return f"{check_job_id(job_id)}/{task_id}"


def task_states_prefix(job_id: str) -> str:
    return f"{check_job_id(job_id)}/"


def progress_group(job_id: str, group: int) -> str:
    return f"{check_job_id(job_id)}/g{group:05d}"


def progress_prefix(job_id: str) -> str:
    return f"{check_job_id(job_id)}/"


def alerts_state(job_id: str) -> str:
    return f"{check_job_id(job_id)}/alerts"
