"""Automatic item retries in the watch loop and AutoRetry: finished retry tasks are never submitted
again, a cancelled job gets no plan, a failed job a last one, a planner error turns planning off."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pytest

from slurmctl import control
from slurmctl.aggregate import aggregate as merge
from slurmctl.coordinator import load_job
from slurmctl.errors import EXIT_OK, StateError
from slurmctl.failures.analyze import analyze
from slurmctl.lifecycle import Facts, Lifecycle
from slurmctl.model.states import JobState, TaskState
from slurmctl.retry.command import retry_tasks
from slurmctl.retry.store import AutoRetry, manifests, plan_retries
from slurmctl.status import progress
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.watch import watch
from slurmctl.worker.runtime import Worker
from tests.e2e.cli import slurmctl
from tests.unit.retry.test_store import prepare


class Ex:
    """An executor stand-in: records what is submitted; ``on_poll`` runs at each scheduler poll."""

    plans_item_retries = False

    def __init__(self, backend, job_id, lc, on_poll=lambda: None) -> None:
        self.job, self.backend, self.lifecycle = load_job(backend, job_id), backend, lc
        self.calls: list[list[str]] = []
        self.on_poll = on_poll

    def submit(self, ids):
        self.calls.append(list(ids))
        return ""

    def deciding(self):
        return False

    def poll(self):
        self.on_poll()
        return Facts()


def _sleep_at_most(n: int):
    count = [0]

    def sleep(_s: float) -> None:
        count[0] += 1
        assert count[0] <= n, "the watch loop did not return"

    return sleep


def _setup(tmp_path: Path, monkeypatch, tasks: int = 4):
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    root, job_id = prepare(tmp_path)
    backend = open_backend({"kind": "local", "root": str(root)})
    lc = Lifecycle(backend, job_id)
    lc.set_job(JobState.SUBMITTED)
    for i in range(tasks):
        assert Worker(backend, job_id).run_task(f"t{i:07d}") == EXIT_OK
    return backend, job_id, lc


def test_a_finished_retry_task_is_not_submitted_again(tmp_path, monkeypatch):
    backend, job_id, lc = _setup(tmp_path, monkeypatch)
    _, doc = plan_retries(backend, job_id, now=1000.0, rng=lambda: 0.5)
    assert doc is not None and doc.task_ids == ["t0000004"]
    assert Worker(backend, job_id).run_task("t0000004") == EXIT_OK
    lc.refresh_job()
    assert AutoRetry(backend, job_id).waiting == {}
    ex = Ex(backend, job_id, lc)
    p = watch(ex, sleep=_sleep_at_most(3))
    assert ex.calls == [] and p.state == "succeeded"


def test_a_cancelled_job_gets_no_retry_plan(tmp_path, monkeypatch):
    backend, job_id, lc = _setup(tmp_path, monkeypatch)
    lc.cancel("user cancelled")
    assert plan_retries(backend, job_id)[1] is None
    ex = Ex(backend, job_id, lc)
    p = watch(ex, sleep=_sleep_at_most(3))
    assert ex.calls == [] and p.state == "cancelled" and manifests(backend, job_id) == []
    # By hand it still plans.
    assert plan_retries(backend, job_id, by_hand=True, dry_run=True)[0].tasks


def test_a_job_that_fails_gets_a_last_planning_pass(tmp_path, monkeypatch):
    """After the watch's first planning pass, three tasks succeed with failed items and t0000003
    fails as a whole: the job is failed. Its failed items are still planned, and submitted."""
    backend, job_id, lc = _setup(tmp_path, monkeypatch, tasks=0)

    def run_tasks() -> None:
        if lc.task("t0000003").state == TaskState.PENDING:
            for i in range(3):
                assert Worker(backend, job_id).run_task(f"t{i:07d}") == EXIT_OK
            for _ in range(lc.max_attempts):
                lc.claim("t0000003", owner="w:1", items=10, lease_s=60, honour_leases=True)
                lc.failed("t0000003", owner="w:1", error="boom", exit_code=1)

    monkeypatch.setattr("slurmctl.retry.plan.Policy.delay", lambda *a, **k: 0.0)  # no backoff wait
    ex = Ex(backend, job_id, lc, on_poll=run_tasks)
    with contextlib.suppress(AssertionError):  # the job stays submitted: the stand-in runs nothing
        watch(ex, sleep=_sleep_at_most(5), min_s=0.0)
    assert ex.calls[0] == ["t0000004"]


def test_a_planner_error_turns_item_retries_off(tmp_path, monkeypatch, caplog):
    backend, job_id, lc = _setup(tmp_path, monkeypatch)
    data = (tmp_path / "in.jsonl").read_bytes()
    (tmp_path / "in.jsonl").write_bytes(data.replace(b'{"n": 3}', b'{"n": 9}'))
    auto = AutoRetry(backend, job_id)
    with caplog.at_level(logging.ERROR):
        assert auto.step(force=True) == []
        assert auto.step(force=True) == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "changed after the job was submitted" in errors[0], errors
    ex = Ex(backend, job_id, lc)
    assert watch(ex, sleep=_sleep_at_most(3)).state == "succeeded"  # the watch carries on


def test_dry_runs_write_nothing(tmp_path, monkeypatch):
    """A dry run reads the task records without repairing progress records that are behind."""
    backend, job_id, _ = _setup(tmp_path, monkeypatch)
    for rec in backend.state.scan(keys.PROGRESS_TABLE, keys.progress_prefix(job_id)):
        backend.state.delete(keys.PROGRESS_TABLE, rec.key)
    assert plan_retries(backend, job_id, by_hand=True, dry_run=True)[0].tasks
    with pytest.raises(StateError, match="nothing to retry"):
        list(retry_tasks(backend, job_id, category=None, force=False, dry_run=True))
    assert backend.state.scan(keys.PROGRESS_TABLE, keys.progress_prefix(job_id)) == []


def test_results_leave_out_a_retry_task_with_no_result(tmp_path, monkeypatch):
    """A retry task not run yet does not block the merge: its items keep their earlier outcome
    (failed), and the command says so."""
    backend, job_id, _ = _setup(tmp_path, monkeypatch)
    _, doc = plan_retries(backend, job_id, now=1000.0, rng=lambda: 0.5)
    assert doc is not None and doc.task_ids == ["t0000004"]
    m = merge(backend, job_id, tmp_path / "out.jsonl")
    assert (m.items_ok, m.items_failed, m.tasks, m.unpublished) == (32, 8, 4, ["t0000004"])
    r = slurmctl(
        "results", job_id, "-o", str(tmp_path / "o2.jsonl"), "--allow-failed-items", root=tmp_path / "root"
    )
    assert r.code == 0, r.err
    assert "1 retry task(s) have no published result" in r.err and "t0000004" in r.err


def test_purge_keep_results_keeps_the_retried_items(tmp_path, monkeypatch):
    backend, job_id, lc = _setup(tmp_path, monkeypatch)
    plan_retries(backend, job_id, now=1000.0, rng=lambda: 0.5)
    assert Worker(backend, job_id).run_task("t0000004") == EXIT_OK
    lc.refresh_job()
    before = merge(backend, job_id, tmp_path / "a.jsonl")
    assert (before.items_ok, before.items_failed, before.tasks) == (35, 5, 5)
    control.purge(backend, control.plan_purge(backend, job_id, keep_results=True), keep_results=True)
    after = merge(backend, job_id, tmp_path / "b.jsonl")
    assert (after.items_ok, after.items_failed, after.tasks) == (35, 5, 5)
    r = slurmctl("inspect", job_id, root=tmp_path / "root")
    assert r.code == 0 and json.loads(r.out)["status"] is None, r.err
    assert "purged with --keep-results" in r.err


def test_analyze_and_status_agree_while_a_retry_is_pending(tmp_path, monkeypatch):
    backend, job_id, _ = _setup(tmp_path, monkeypatch)
    plan_retries(backend, job_id, now=1000.0, rng=lambda: 0.5)
    assert progress(backend, job_id).items_failed == analyze(backend, job_id).failed_items == 8
    assert Worker(backend, job_id).run_task("t0000004") == EXIT_OK
    assert progress(backend, job_id).items_failed == analyze(backend, job_id).failed_items == 5


def test_the_runners_planning_pass_waits_for_a_finished_task(tmp_path, monkeypatch):
    """``wave`` (the local runner): a first pass plans what finished before it started; the next
    one only after the caller said ``wave`` tasks finished."""
    backend, job_id, _ = _setup(tmp_path, monkeypatch)
    monkeypatch.setattr("slurmctl.retry.store.PASS_SHARE", 0.0)  # (no bound by the pass's own time)
    auto = AutoRetry(backend, job_id, every_s=0.0, wave=2)
    auto.step()
    assert [m.task_ids for m in manifests(backend, job_id)] == [["t0000004"]]
    assert Worker(backend, job_id).run_task("t0000004") == EXIT_OK
    auto.step()
    assert len(manifests(backend, job_id)) == 1  # no task finished as far as it knows
    auto.finished()
    auto.step()
    assert len(manifests(backend, job_id)) == 1  # one of a wave of two
    auto.finished()
    auto.step()
    assert manifests(backend, job_id)[-1].sources == ["t0000004"]
