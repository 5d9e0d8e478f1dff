"""aggregate.when: auto — the local runner, or the watch loop of another executor, merges into
output.path once the last task publishes."""

from __future__ import annotations

import json
import subprocess

import pyarrow.parquet as pq

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.executors.base import Executor, worker_command
from slurmctl.lifecycle import Facts, set_job_state
from slurmctl.model.states import JobState
from slurmctl.storage import keys
from slurmctl.watch import watch
from tests.e2e.cli import slurmctl, submit_wait, write_job

HANDLER = "def handle(record, ctx):\n    return {'n': record['n'], 'w': 'x' * (record['n'] % 3)}\n"


def test_when_auto_merges_when_the_last_task_publishes(tmp_path):
    (tmp_path / "h.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(300)))
    job = write_job(
        tmp_path,
        "name: t\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 20}\n"
        "output: {format: parquet, path: out/all.parquet}\naggregate: {when: auto, fan_in: 4}\n",
    )
    job_id, r = submit_wait(job, tmp_path / "root")
    assert r.code == 0, r.err
    out = tmp_path / "out" / "all.parquet"
    assert sorted(pq.read_table(out).column("n").to_pylist()) == list(range(300))
    manifest = json.loads((tmp_path / "root" / "jobs" / job_id / "output" / "manifest.json").read_text())
    assert manifest["levels"] == [4, 1] and manifest["nodes_run"] == 5
    status = slurmctl("results", job_id, "--status", root=tmp_path / "root")
    assert "output: written (output/.done)" in status.out


def test_when_auto_needs_an_output_path(tmp_path):
    base = "name: t\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')
    r = slurmctl("validate", str(write_job(tmp_path, base + "aggregate: {when: auto}\n")), root=tmp_path)
    assert r.code == 2 and "aggregate.when: auto needs output.path" in r.err
    job = write_job(
        tmp_path, base + "output: {path: o.jsonl}\nexecutor: {kind: slurm}\naggregate: {when: auto}\n"
    )
    r = slurmctl("validate", str(job), root=tmp_path)
    assert r.code == 0, r.err


class WorkerExecutor(Executor):
    """A scheduler whose first poll runs every task with the real worker, one process each."""

    kind = "test"
    ran = False

    def submit(self, task_ids):
        return ""

    def cancel(self):
        pass

    def dry_run(self, task_ids):
        return ""

    def poll(self):
        if not self.ran:
            self.ran = True
            for tid in self.job.task_ids():
                subprocess.run(worker_command(self.backend, self.job.job_id, "--task", tid), check=True)
        return Facts()


def test_when_auto_merges_in_the_watch_loop_of_a_scheduler(tmp_path):
    """Not the local executor (whose runner merges): ``submit --wait`` / ``status --watch`` merge."""
    (tmp_path / "h.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(60)))
    job = write_job(
        tmp_path,
        "name: t\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 20}\n"
        "output: {format: parquet, path: out/all.parquet}\naggregate: {when: auto, fan_in: 2}\n"
        "executor: {kind: slurm}\n",
    )
    backend, j = prepare(load_config(job), root_override=str(tmp_path / "root"))
    set_job_state(backend, j.job_id, JobState.SUBMITTED)
    final = watch(WorkerExecutor(backend, j), min_s=0.05, max_s=0.1, progress_s=0.05)
    assert final.state == "succeeded"
    out = tmp_path / "out" / "all.parquet"
    assert sorted(pq.read_table(out).column("n").to_pylist()) == list(range(60))
    assert backend.objects.exists(keys.output_done(j.job_id))
