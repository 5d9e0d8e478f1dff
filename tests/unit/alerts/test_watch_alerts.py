"""The watch loop of non-local executors (``status --watch`` / ``submit --wait`` for Slurm)
evaluates the job's alerts: a condition fired before (here: the backend's file system is "full" at a
threshold of 0.01 %) is resolved by its last look once the job ends."""

from __future__ import annotations

import json

from slurmctl.alerts.config import resolve
from slurmctl.alerts.evaluate import Evaluator
from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.lifecycle import set_job_state
from slurmctl.model.states import JobState
from slurmctl.watch import watch
from tests.alert_servers import hook_argv, hook_lines
from tests.unit.core.test_watch import Clock, RecordingExecutor


def test_the_watch_loop_resolves_what_fired(tmp_path) -> None:
    hook = tmp_path / "hook.jsonl"
    (tmp_path / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3)))
    (tmp_path / "job.yaml").write_text(
        "name: w\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
        "alerts:\n  interval_s: 0.1\n  rules: {resources: {disk_ratio: 0.0001}}\n"
        f"  channels: [{{kind: command, argv: {json.dumps(hook_argv(hook))}}}]\n"
    )
    backend, job = prepare(load_config(tmp_path / "job.yaml"), root_override=str(tmp_path / "root"))
    clock = Clock()
    ex = RecordingExecutor(backend, job, clock, finish_after=3)
    set_job_state(backend, job.job_id, JobState.SUBMITTED)
    cfg = resolve(job.config)
    assert cfg is not None
    Evaluator(backend, job.job_id, cfg, job.config).run_once()
    assert [(a["condition"], a["event"]) for a in hook_lines(hook) if a["condition"] == "disk/backend"] == [
        ("disk/backend", "trigger")
    ]
    p = watch(ex, min_s=1.0, max_s=8.0, progress_s=0.5, sleep=clock.sleep, clock=clock)
    assert p.state == "succeeded"
    assert [(a["condition"], a["event"]) for a in hook_lines(hook) if a["condition"] == "disk/backend"] == [
        ("disk/backend", "trigger"),
        ("disk/backend", "resolve"),
    ]
