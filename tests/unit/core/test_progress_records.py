"""Progress records: `status` reads one record per group of tasks, and its answer is exactly what
a scan of every task record gives — through every transition, under concurrent workers, and after
a crash between a task write and its group's (repaired by settle)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.lifecycle import Facts, Lifecycle, create_tasks
from slurmctl.model import progress as prog
from slurmctl.model.core import TaskStatus
from slurmctl.model.states import JobState
from slurmctl.status import progress
from slurmctl.storage import keys

TASKS = 2 * prog.GROUP_SIZE + 7  # three groups, the last one partial


def make_job(tmp_path: Any, tasks: int = TASKS, max_attempts: int = 3) -> tuple[Lifecycle, Any]:
    (tmp_path / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(tasks)))
    (tmp_path / "job.yaml").write_text(
        "name: pr\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 1}\n"
        f"retry: {{max_attempts: {max_attempts}}}\n"
    )
    backend, job = prepare(load_config(tmp_path / "job.yaml"), root_override=str(tmp_path / "r"))
    return Lifecycle.of(backend, job.job_id, job.config), job


def same(lc: Lifecycle, now: float = 1e10) -> Any:
    """progress() from the groups, asserted equal to progress() from every task record."""
    fast = progress(lc.backend, lc.job_id, now=now)
    exact = progress(lc.backend, lc.job_id, now=now, exact_scan=True)
    assert fast == exact
    return fast


def count_progress_writes(lc: Lifecycle, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    keys_written: list[str] = []
    state = lc.backend.state
    update = state.update

    def counting(table: str, key: str, change: Any, **kw: Any) -> Any:
        if table == keys.PROGRESS_TABLE:
            keys_written.append(key)
        return update(table, key, change, **kw)

    monkeypatch.setattr(state, "update", counting)
    return keys_written


def test_status_reads_the_groups_and_matches_a_full_scan_through_every_transition(tmp_path):
    lc, job = make_job(tmp_path)
    groups = lc.backend.state.scan(keys.PROGRESS_TABLE, keys.progress_prefix(lc.job_id))
    assert [g.key for g in groups] == [keys.progress_group(lc.job_id, g) for g in range(3)]
    p = same(lc)
    assert p.tasks == TASKS and p.task_states["pending"] == TASKS
    ids = job.task_ids()
    lc.queue(ids)
    assert same(lc).task_states["queued"] == TASKS
    for i, tid in enumerate(ids[:300]):
        lc.claim(tid, owner=f"h:{i}", items=1, lease_s=60, honour_leases=True)
    lc.renew(ids[0], owner="h:0", lease_s=60, done=1, failed=0)
    for i, tid in enumerate(ids[1:200], start=1):
        lc.succeeded(tid, owner=f"h:{i}", items_done=1, items_failed=i % 2)
    long_error = "boom " * 100
    for i, tid in enumerate(ids[200:260], start=200):
        lc.failed(tid, owner=f"h:{i}", error=long_error, exit_code=1)
    lc.interrupted(ids[260], owner="h:260", exit_code=75)
    p = same(lc)
    assert p.task_states == {
        "pending": 0,
        "queued": TASKS - 300 + 1,
        "running": 300 - 261 + 1,
        "succeeded": 199,
        "failed": 60,
        "cancelled": 0,
    }
    assert p.items_done == 199 + 1 and p.items_failed == 100
    assert p.failed_tasks[0] == {"task_id": ids[200], "attempt": 1, "error": long_error[: prog.ERROR_CHARS]}
    lc.cancel()
    assert same(lc).task_states["cancelled"] == TASKS - 199 - 60


def test_bulk_operations_write_each_group_once(tmp_path, monkeypatch):
    lc, job = make_job(tmp_path)
    written = count_progress_writes(lc, monkeypatch)
    lc.queue(job.task_ids())
    assert sorted(written) == [keys.progress_group(lc.job_id, g) for g in range(3)]
    written.clear()
    statuses = [TaskStatus(task_id=t, items_total=1) for t in job.task_ids()]
    create_tasks(lc.backend, lc.job_id, statuses)  # a resumed submission: records exist (queued)
    assert len(written) == 3
    assert same(lc).task_states["queued"] == TASKS  # an existing record is entered as it is


def test_a_group_left_behind_by_a_crash_is_repaired_by_settle(tmp_path):
    lc, job = make_job(tmp_path)
    lc.queue(job.task_ids())
    tid = job.task_ids()[300]
    # The crash between the two writes: the task record moves on, its group does not.
    lc.backend.state.update(
        keys.TASKS_TABLE, keys.task_state(lc.job_id, tid), lambda v: {**v, "state": "succeeded"}
    )
    fast = progress(lc.backend, lc.job_id, now=1e10)
    assert fast.task_states["succeeded"] == 0
    assert progress(lc.backend, lc.job_id, now=1e10, exact_scan=True).task_states["succeeded"] == 1
    lc.settle(Facts())  # what every watch poll and `slurmctl resubmit` run
    assert same(lc).task_states["succeeded"] == 1
    assert (
        lc.repair_progress(lc.backend.state.scan(keys.TASKS_TABLE, keys.task_states_prefix(lc.job_id))) == 0
    )  # nothing behind any more


def test_a_missing_group_is_rebuilt_by_refresh_job(tmp_path):
    lc, job = make_job(tmp_path)
    lc.queue(job.task_ids())
    lc.set_job(JobState.SUBMITTED)
    lc.backend.state.delete(keys.PROGRESS_TABLE, keys.progress_group(lc.job_id, 1))
    assert progress(lc.backend, lc.job_id).tasks == TASKS - prog.GROUP_SIZE
    lc.refresh_job()
    assert same(lc).tasks == TASKS


def test_entries_are_applied_by_version_only():
    old = prog.entry(3, {"state": "running", "error": "x"})
    new = prog.entry(4, {"state": "failed", "error": "e" * 500})
    assert old[8] is None and new[8] == "e" * prog.ERROR_CHARS  # error text only when failed
    value = prog.merge(None, {"t0000001": new})
    assert prog.merge(value, {"t0000001": old}) is None  # an older entry never wins
    assert prog.merge(value, {"t0000001": new}) is None  # idempotent
    assert prog.merge(value, {"t0000002": old}) == {"entries": {"t0000001": new, "t0000002": old}}


def test_a_full_group_of_failed_tasks_fits_a_dynamodb_item():
    value = None
    for i in range(prog.GROUP_SIZE):
        failed = {"state": "failed", "attempt": 3, "items_done": 10**6, "items_failed": 10**6}
        failed |= {"items_total": 10**6, "started_at": 1.8e9 + 0.123456, "finished_at": 1.8e9 + 0.654321}
        failed |= {"error": ("\u00e9", "\U0001f600", '"')[i % 3] * 1000, "failures": 3}
        value = prog.merge(value, {f"t{i:07d}": prog.entry(10**6, failed)})
    size = len(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())
    assert size < 400_000 // 4, size  # DynamoDB's item limit, with room to spare
    for e in value["entries"].values():
        assert 0 < len(json.dumps(e[8])) <= prog.ERROR_CHARS + 2


WORKER = textwrap.dedent(
    """
    import random, sys
    from slurmctl.lifecycle import Busy, Lifecycle
    from slurmctl.storage.open import open_backend
    root, job_id, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    lc = Lifecycle(open_backend({"kind": "local", "root": root}), job_id)
    rnd = random.Random(seed)
    ids = [f"t{i:07d}" for i in range(n)]
    rnd.shuffle(ids)
    me = f"w{seed}"
    for tid in ids:
        try:
            st = lc.claim(tid, owner=me, items=1, lease_s=60, honour_leases=True)
        except Busy:
            continue
        if st is None:
            continue
        lc.renew(tid, owner=me, lease_s=60, done=1, failed=0)
        r = rnd.random()
        if r < 0.7:
            lc.succeeded(tid, owner=me, items_done=1, items_failed=0)
        elif r < 0.85:
            lc.failed(tid, owner=me, error="handler raised", exit_code=1)
        elif r < 0.95:
            lc.interrupted(tid, owner=me, exit_code=75)
    """
)


def test_exact_under_concurrent_workers(tmp_path):
    tasks = prog.GROUP_SIZE + 44  # two groups every worker writes into
    lc, job = make_job(tmp_path, tasks=tasks)
    lc.queue(job.task_ids())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "r"), lc.job_id, str(tasks), str(seed)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    p = same(lc)
    assert sum(p.task_states.values()) == tasks and p.task_states["succeeded"] > 0
    assert p.task_states["pending"] == 0


def test_a_job_missing_a_group_is_not_judged_from_the_others(tmp_path):
    lc, job = make_job(tmp_path, tasks=prog.GROUP_SIZE + 3)
    lc.queue(job.task_ids())
    lc.set_job(JobState.SUBMITTED)
    for tid in job.task_ids():
        lc.claim(tid, owner="h:1", items=1, lease_s=60, honour_leases=True)
        lc.succeeded(tid, owner="h:1", items_done=1, items_failed=0)
    lc.backend.state.delete(keys.PROGRESS_TABLE, keys.progress_group(lc.job_id, 0))
    p = progress(lc.backend, lc.job_id)
    assert p.tasks == 3 and p.state == "submitted"  # not "succeeded" from the 3 tasks it sees
    lc.refresh_job()
    assert same(lc).state == "succeeded"


def test_a_transition_that_finds_its_write_done_still_brings_the_group_up(tmp_path):
    """A DynamoDB write whose answer was lost is retried by botocore and then reads as "nothing to
    change": the entry must reach the group all the same."""
    lc, job = make_job(tmp_path, tasks=3)
    tid = job.task_ids()[1]
    lc.queue([tid])
    lc.claim(tid, owner="h:1", items=1, lease_s=60, honour_leases=True)
    lc.backend.state.update(  # the write applied, its answer lost: the group did not follow
        keys.TASKS_TABLE, keys.task_state(lc.job_id, tid), lambda v: {**v, "state": "succeeded"}
    )
    lc.succeeded(tid, owner="h:1", items_done=1, items_failed=0)  # the retry: nothing to change
    assert same(lc).task_states["succeeded"] == 1


def test_item_retry_tasks_do_not_stand_in_for_missing_tasks(tmp_path):
    lc, job = make_job(tmp_path, tasks=3)
    lc.set_job(JobState.SUBMITTED)
    create_tasks(lc.backend, lc.job_id, [TaskStatus(task_id="t0000003")])  # an item retry task
    for tid in [*job.task_ids(), "t0000003"]:
        lc.claim(tid, owner="h:1", items=1, lease_s=60, honour_leases=True)
        lc.succeeded(tid, owner="h:1", items_done=1, items_failed=0)

    def drop_t0(v: Any) -> Any:
        return {**v, "entries": {k: e for k, e in v["entries"].items() if k != "t0000000"}}

    lc.backend.state.update(keys.PROGRESS_TABLE, keys.progress_group(lc.job_id, 0), drop_t0)
    p = progress(lc.backend, lc.job_id)
    assert (p.tasks, p.retry_tasks, p.state) == (3, 1, "submitted")  # t0000000 is missing


def test_a_job_without_progress_records_is_read_from_its_task_records(tmp_path):
    lc, _ = make_job(tmp_path, tasks=3)
    lc.set_job(JobState.SUBMITTED)
    lc.claim("t0000000", owner="h:1", items=1, lease_s=60, honour_leases=True)
    lc.succeeded("t0000000", owner="h:1", items_done=1, items_failed=0)
    for rec in lc.backend.state.scan(keys.PROGRESS_TABLE, keys.progress_prefix(lc.job_id)):
        lc.backend.state.delete(keys.PROGRESS_TABLE, rec.key)
    p = progress(lc.backend, lc.job_id, now=1e10)
    assert p == progress(lc.backend, lc.job_id, now=1e10, exact_scan=True)
    assert p.tasks == 3 and p.task_states["succeeded"] == 1 and p.items_done == 1
