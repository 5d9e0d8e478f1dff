"""Item retries through the store, one worker at a time: the plan's manifest, retry batches and
task records; retry tasks report real item ids; merging keeps each item's latest outcome and
refuses an item with rows from two tasks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from slurmctl.aggregate import aggregate as merge
from slurmctl.errors import EXIT_OK, ResultsError
from slurmctl.failures.analyze import analyze
from slurmctl.lifecycle import Lifecycle, set_paused
from slurmctl.model.core import Task
from slurmctl.model.manifests import RetryManifest
from slurmctl.model.states import TaskState
from slurmctl.retry.store import PAUSED_POLL_S, AutoRetry, manifests, materialize, plan_retries
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.worker.batchfile import InputChangedError
from slurmctl.worker.runtime import Worker
from tests.e2e.cli import read_jsonl, slurmctl, write_job

# 40 items in 4 tasks of 10. n % 10 == 3: transient in the original tasks (13: in every task);
# n % 10 == 7: permanent. A retry task is one with an index >= 4.
HANDLER = """
from slurmctl.errors import PermanentItemError, TransientItemError

def handle(record, ctx):
    n = record["n"]
    assert ctx.item_id == n, (ctx.item_id, n)
    if n % 10 == 7:
        raise PermanentItemError(f"bad {n}")
    if n % 10 == 3 and (int(ctx.task_id[1:]) < 4 or n == 13):
        raise TransientItemError(f"busy {n}")
    return {"n": n, "task": ctx.task_id}
"""


def prepare(tmp: Path) -> tuple[Path, str]:
    mod = "rs_" + "".join(c if c.isalnum() else "_" for c in tmp.name)
    (tmp / f"{mod}.py").write_text(HANDLER)
    (tmp / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(40)))
    job = write_job(
        tmp,
        f"name: t\ninput: {{path: in.jsonl}}\nhandler: {{function: '{mod}:handle'}}\n"
        "batch: {items: 10}\nretry: {attempts: {transient: 2}, backoff: {base_s: 4, cap_s: 8}}\n",
    )
    root = tmp / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    assert r.code == 0, r.err
    return root, r.out.strip().splitlines()[-1]


def test_plan_record_run_and_merge(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    root, job_id = prepare(tmp_path)
    backend = open_backend({"kind": "local", "root": str(root)})
    for i in range(4):
        assert Worker(backend, job_id).run_task(f"t{i:07d}") == EXIT_OK

    p, doc = plan_retries(backend, job_id, now=1000.0, rng=lambda: 0.5)
    assert doc is not None and doc.number == 0
    assert doc.task_ids == ["t0000004"] and doc.items == {"t0000004": [3, 13, 23, 33]}
    assert doc.origin == {f"t{i:07d}": [10 * i + 3] for i in range(4)}
    assert doc.skipped == {"permanent": 4} and doc.categories == {"transient": 4}
    assert (doc.round, doc.delay_s, doc.not_before) == (2, 2.0, 1002.0)  # half of base_s
    task = Task.from_json(backend.objects.get(keys.task_manifest(job_id, "t0000004")))
    assert task.batch.item_ids == [3, 13, 23, 33] and task.batch.first_item == 0
    batch = backend.objects.get(task.batch.key or "")
    assert [json.loads(x)["n"] for x in batch.splitlines()] == [3, 13, 23, 33]
    lc = Lifecycle(backend, job_id)
    st = lc.task("t0000004")
    assert st is not None and st.state == TaskState.PENDING and st.items_total == 4

    # Nothing new to plan until the retry task finishes.
    assert plan_retries(backend, job_id)[1] is None
    assert Worker(backend, job_id).run_task("t0000004") == EXIT_OK
    done = json.loads(backend.objects.get(keys.done_marker(job_id, "t0000004")))
    manifest = json.loads(backend.objects.get(done["manifest_key"]))
    errors = [json.loads(x) for x in backend.objects.get(manifest["errors_key"]).splitlines()]
    assert [e["item_id"] for e in errors] == [13]  # the real id, not its position (1)

    # 13 ran twice: retry.attempts.transient (2) is used up; the plan records that, and no task.
    p, doc = plan_retries(backend, job_id)
    assert doc is not None and doc.task_ids == [] and doc.sources == ["t0000004"]
    assert doc.skipped == {"transient: attempts used up": 1}
    # By hand, dry run: no caps; --force adds the permanent failures.
    p, none = plan_retries(backend, job_id, by_hand=True, force=True, dry_run=True)
    assert none is None and p.tasks == [[7, 13, 17, 27, 37]]
    assert p.origin == {
        "t0000000": [7],
        "t0000001": [17],
        "t0000002": [27],
        "t0000003": [37],
        "t0000004": [13],
    }
    assert len(manifests(backend, job_id)) == 2  # the dry run wrote nothing

    # analyze-errors counts each item's latest failure: 13 once (in t0000004), 3, 23, 33 not at all.
    a = analyze(backend, job_id)
    assert a.failed_items == 5
    assert {(g.type, g.items, g.tasks) for g in a.groups} == {
        ("PermanentItemError", 4, 4),
        ("TransientItemError", 1, 1),
    }

    out = tmp_path / "out.jsonl"
    m = merge(backend, job_id, out)
    rows = read_jsonl(out)
    ids = [r["_item_id"] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == set(range(40)) - {7, 17, 27, 37, 13}
    assert {r["_item_id"]: r["task"] for r in rows if r["_item_id"] % 10 == 3} == {
        3: "t0000004",
        23: "t0000004",
        33: "t0000004",
    }
    errs = read_jsonl(out.with_name(out.name + ".errors.jsonl"))
    assert [(e["item_id"], e["task_id"]) for e in errs] == [
        (7, "t0000000"),
        (13, "t0000004"),
        (17, "t0000001"),
        (27, "t0000002"),
        (37, "t0000003"),
    ]
    assert (m.items_ok, m.items_failed, m.rows, m.tasks) == (35, 5, 35, 5)

    # A retry of an item that had succeeded (item 0) would put it in the output twice: refused.
    forged = RetryManifest(
        job_id=job_id,
        number=2,
        created_at=0.0,
        reason="test",
        task_ids=["t0000005"],
        items={"t0000005": [0]},
        origin={"t0000000": [0]},
    )
    backend.objects.put(keys.retry_manifest(job_id, 2), forged.to_json())
    materialize(backend, job_id, forged)
    lc.create_retry_tasks(forged)
    assert Worker(backend, job_id).run_task("t0000005") == EXIT_OK
    with pytest.raises(ResultsError, match="item 0 has rows in tasks t0000000 and t0000005"):
        merge(backend, job_id, out)


def test_an_input_changed_since_submission_is_refused(tmp_path, monkeypatch):
    """Retry batches copy records from reference batches (byte ranges of the input): if the input
    changed, the plan stops with InputChangedError instead of retrying other records."""
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    root, job_id = prepare(tmp_path)
    backend = open_backend({"kind": "local", "root": str(root)})
    task = Task.from_json(backend.objects.get(keys.task_manifest(job_id, "t0000000")))
    assert task.batch.key is None  # a reference batch
    assert Worker(backend, job_id).run_task("t0000000") == EXIT_OK
    data = (tmp_path / "in.jsonl").read_bytes()
    (tmp_path / "in.jsonl").write_bytes(data.replace(b'{"n": 3}', b'{"n": 9}'))
    with pytest.raises(InputChangedError, match="changed after the job was submitted"):
        plan_retries(backend, job_id)
    # The manifest (the commit point) was written; its tasks are not: the next pass finishes them
    # once the input is back.
    (tmp_path / "in.jsonl").write_bytes(data)
    assert Lifecycle(backend, job_id).task("t0000004") is None
    assert plan_retries(backend, job_id)[1] is None
    st = Lifecycle(backend, job_id).task("t0000004")
    assert st is not None and st.state == TaskState.PENDING


def test_auto_retry_holds_due_retry_tasks_while_the_job_is_paused(tmp_path, monkeypatch):
    """What the local runner and the watch loop start or submit comes from AutoRetry.step: nothing
    while the job is paused; the same tasks once it is resumed."""
    monkeypatch.setenv("SLURMCTL_SCRATCH", str(tmp_path / "scratch"))
    root, job_id = prepare(tmp_path)
    backend = open_backend({"kind": "local", "root": str(root)})
    for i in range(4):
        assert Worker(backend, job_id).run_task(f"t{i:07d}") == EXIT_OK
    _, doc = plan_retries(backend, job_id, now=time.time() - 100)  # its not-before time has passed
    assert doc is not None and doc.task_ids == ["t0000004"]
    set_paused(backend, job_id, True)
    auto = AutoRetry(backend, job_id)
    assert auto.step(force=True) == []
    assert auto.waiting == {"t0000004": doc.not_before}
    assert auto.next_due() == PAUSED_POLL_S
    set_paused(backend, job_id, False)
    assert auto.step() == ["t0000004"]
    assert auto.waiting == {} and auto.next_due() is None
