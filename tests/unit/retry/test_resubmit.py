"""``slurmctl resubmit`` of a Slurm job (the Slurm executor with a stand-in client: no cluster):
retry tasks wait for their not-before time, and a paused job gets nothing submitted."""

from __future__ import annotations

import json
import time

import pytest

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.errors import EXIT_OK, StateError
from slurmctl.executors.slurm import SlurmExecutor
from slurmctl.lifecycle import Lifecycle, set_paused
from slurmctl.model.states import JobState, TaskState
from slurmctl.retry.store import manifests, plan_retries
from slurmctl.watch import resubmit_once
from slurmctl.worker.runtime import Worker
from tests.e2e.cli import slurmctl
from tests.unit.retry.test_store import HANDLER


class FakeClient:
    """The Slurm commands ``submit`` runs: sbatch is recorded (and answers a new array id)."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def config(self):
        return type("Config", (), {"max_array_size": 1001})()

    def sbatch(self, *, script_text: str) -> str:
        self.scripts.append(script_text)
        return str(9000 + len(self.scripts))


@pytest.fixture
def slurm_job(tmp_path, monkeypatch):
    """A Slurm job whose four tasks ran (failed items in each) and whose retry task t0000004 waits
    five minutes (backoff 600 s, half of it drawn)."""
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.chdir(tmp_path)
    mod = "rsub_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    (tmp_path / f"{mod}.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(40)))
    (tmp_path / "job.yaml").write_text(
        f"name: rsub\ninput: {{path: in.jsonl}}\nhandler: {{function: '{mod}:handle'}}\n"
        "batch: {items: 10}\nretry: {attempts: {transient: 2}, backoff: {base_s: 600, cap_s: 600}}\n"
        "executor: {kind: slurm}\n"
    )
    backend, job = prepare(load_config(tmp_path / "job.yaml"), root_override=str(tmp_path / "root"))
    lc = Lifecycle.of(backend, job.job_id, job.config)
    lc.set_job(JobState.SUBMITTED)
    for i in range(4):
        assert Worker(backend, job.job_id).run_task(f"t{i:07d}") == EXIT_OK
    _, doc = plan_retries(backend, job.job_id, now=time.time(), rng=lambda: 0.5)
    assert doc is not None and doc.task_ids == ["t0000004"]
    return backend, job, doc


def test_resubmit_leaves_a_retry_task_to_its_not_before_time(slurm_job, monkeypatch):
    backend, job, doc = slurm_job
    ex = SlurmExecutor(backend, job, client=FakeClient())
    again, message = resubmit_once(ex)
    assert again == [] and ex.client.scripts == [], message
    at = time.strftime("%H:%M:%S", time.localtime(doc.not_before))
    assert "1 retry task(s) wait for their backoff until " + at in message, message
    assert ex.lifecycle.task("t0000004").state == TaskState.PENDING
    # Once the time has passed, the next resubmit submits it.
    later = doc.not_before + 1.0
    monkeypatch.setattr("slurmctl.watch.time.time", lambda: later)
    again, message = resubmit_once(ex)
    assert again == ["t0000004"] and len(ex.client.scripts) == 1, message
    assert "--array-offset 4" in ex.client.scripts[0] and "wait" not in message


def test_resubmit_of_a_paused_job_submits_nothing(slurm_job, monkeypatch):
    backend, job, doc = slurm_job
    monkeypatch.setattr("slurmctl.watch.time.time", lambda: doc.not_before + 1.0)  # the retry is due
    set_paused(backend, job.job_id, True)
    ex = SlurmExecutor(backend, job, client=FakeClient())
    with pytest.raises(StateError, match="is paused") as e:
        resubmit_once(ex, failed=True)
    assert f"slurmctl resume {job.job_id}" in str(e.value) and ex.client.scripts == []
    assert ex.lifecycle.task("t0000004").state == TaskState.PENDING
    # The command: exit 5, the message and what to run; no Slurm command is needed to say so.
    r = slurmctl("resubmit", job.job_id, root=backend.spec["root"])
    assert r.code == 5 and "is paused" in r.err and f"slurmctl resume {job.job_id}" in r.err, r.err
    set_paused(backend, job.job_id, False)
    again, _ = resubmit_once(ex)
    assert again == ["t0000004"] and len(ex.client.scripts) == 1


def test_a_pilot_leaves_a_retry_task_to_its_not_before_time(slurm_job, monkeypatch):
    """A live pilot lists the retry tasks too: it does not claim one before its backoff has passed
    (nor wait for it: the watch loop submits it when it is due)."""
    backend, job, doc = slurm_job
    lc = Lifecycle.of(backend, job.job_id, job.config)
    assert Worker(backend, job.job_id).run_pilot(0, 1, idle_poll_s=0.01) == EXIT_OK
    st = lc.task("t0000004")
    assert st.state == TaskState.PENDING and st.attempt == 0
    monkeypatch.setattr("slurmctl.worker.runtime.time.time", lambda: doc.not_before + 1.0)
    assert Worker(backend, job.job_id).run_pilot(0, 1, idle_poll_s=0.01) == EXIT_OK
    assert lc.task("t0000004").state == TaskState.SUCCEEDED


def test_retry_by_hand_of_a_paused_job_changes_nothing(slurm_job):
    """`slurmctl retry` of a paused (running) job: exit 5 naming `slurmctl resume`, no retry
    manifest recorded, no fresh budget given; --dry-run still prints the plan."""
    backend, job, _ = slurm_job
    root = backend.spec["root"]
    before = len(list(manifests(backend, job.job_id)))
    set_paused(backend, job.job_id, True)
    for mode in (["--force"], ["--tasks", "--force"]):
        r = slurmctl("retry", job.job_id, *mode, root=root)
        assert r.code == 5 and "is paused" in r.err and f"slurmctl resume {job.job_id}" in r.err, r.err
    assert len(list(manifests(backend, job.job_id))) == before
    r = slurmctl("retry", job.job_id, "--force", "--dry-run", root=root)
    assert r.code == 0 and "dry run" in r.out, r.err
    set_paused(backend, job.job_id, False)
