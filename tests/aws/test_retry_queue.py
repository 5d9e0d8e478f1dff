"""Item retry tasks through the SQS retry queue (moto server): the planner's store side sends one
message per retry task, delayed by the backoff; a pilot (in this process) takes the due ones of
its job and claims them through the lifecycle; a duplicate message changes nothing; another job's
message goes back, a gone job's is deleted; a delay over 900 s is re-queued."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.errors import EXIT_OK
from slurmctl.lifecycle import Lifecycle
from slurmctl.model.states import JobState, TaskState
from slurmctl.retry.queue import Inbox, delay
from slurmctl.retry.store import plan_retries
from slurmctl.storage import keys
from slurmctl.storage.aws.bootstrap import ensure_queues
from slurmctl.storage.aws.queue import SqsWorkQueue
from slurmctl.storage.aws.settings import AwsSettings
from slurmctl.worker.runtime import Worker
from tests.unit.retry.test_store import HANDLER

pytestmark = pytest.mark.aws


def drain(q: SqsWorkQueue) -> list[dict[str, Any]]:
    """Every visible message's body (each hidden for 300 s: read once)."""
    out: list[dict[str, Any]] = []
    while batch := q.receive(max_messages=10, visibility_s=300):
        out += [m.body for m in batch]
    return out


def delayed(q: SqsWorkQueue) -> int:
    attrs = q.sqs.get_queue_attributes(QueueUrl=q.url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"])


def test_pilots_take_retry_tasks_from_sqs(moto_spec: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    settings = AwsSettings.from_spec(moto_spec)
    ensure_queues(settings)
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.chdir(tmp_path)
    mod = "rq_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    (tmp_path / f"{mod}.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(40)))
    job_file = {
        "name": "rq",
        "input": {"path": "in.jsonl"},
        "handler": {"function": f"{mod}:handle"},
        "batch": {"items": 10},
        "retry": {"attempts": {"transient": 2}, "backoff": {"base_s": 3, "cap_s": 3, "jitter": "none"}},
        "executor": {"kind": "slurm", "mode": "pilot", "workers": 1},
        "backend": {
            k: moto_spec[k]
            for k in ("kind", "bucket", "table_prefix", "queue_prefix", "region", "endpoint_url")
        },
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job_file))
    backend, job = prepare(load_config(tmp_path / "job.yaml"))
    job_id = job.job_id
    lc = Lifecycle.of(backend, job_id, job.config)
    lc.set_job(JobState.SUBMITTED)
    for i in range(4):
        assert Worker(backend, job_id).run_task(f"t{i:07d}") == EXIT_OK
    q = SqsWorkQueue(settings, "retry")

    _, doc = plan_retries(backend, job_id)
    assert doc is not None and doc.task_ids == ["t0000004"] and doc.delay_s == 3.0
    assert delayed(q) == 1  # one message, delayed by the backoff: not visible yet
    assert Inbox(backend, job_id).take() == []
    backend.state.create(keys.JOBS_TABLE, keys.job_state("other-1"), {"state": "running"})
    q.send({"job": "other-1", "task": "t0000000", "not_before": 0})  # another job's: goes back
    q.send({"job": "gone-1", "task": "t0000000", "not_before": 0})  # no such job: deleted
    time.sleep(max(0.0, doc.not_before - time.time()) + 1.0)
    # The pilot takes the message (deleted) and runs the retry task: one attempt.
    assert Worker(backend, job_id).run_pilot(0, 1, idle_poll_s=0.1) == EXIT_OK
    st = lc.task("t0000004")
    assert st.state == TaskState.SUCCEEDED and st.attempt == 1
    assert [b["job"] for b in drain(q)] == ["other-1"]

    # A duplicate message is harmless: taken, the task is published already.
    q.send({"job": job_id, "task": "t0000004", "not_before": 0})
    assert Worker(backend, job_id).run_pilot(0, 1, idle_poll_s=0.1) == EXIT_OK
    assert lc.task("t0000004").attempt == 1 and drain(q) == []

    # A not-before more than 900 s ahead: re-queued with the longest delay, not taken.
    assert delay(time.time() + 5000, time.time()) == 900
    q.send({"job": job_id, "task": "t0000009", "not_before": time.time() + 5000})
    assert Inbox(backend, job_id).take() == []
    assert delayed(q) == 1 and drain(q) == []
