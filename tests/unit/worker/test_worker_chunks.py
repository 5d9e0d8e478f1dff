"""One chunk driver for both handler modes: a lost lease stops the task mid-run and a long task
snapshots its checkpoint to the store, whether the handler takes one item or a batch of them. On
the real local backend, with the handler stealing its own task (what another worker's takeover
does to the task record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_worker_runs import module, prepare

from slurmctl.errors import EXIT_LEASE_LOST, EXIT_OK
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.worker.runtime import Worker

# The handler, per mode. On its STEAL_AT-th call it takes the task over in the store (another
# owner, as a worker that claims an expired lease does) and waits until this worker's heartbeat
# has seen it; on every call it notes how many calls so far and whether the store holds a
# checkpoint of the task yet.
COMMON = """
import json, threading, time
from pathlib import Path
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend

OUT = Path({out!r})
ROOT = {root!r}
STEAL_AT = {steal_at}
calls = []


seen = []


def note(ctx):
    calls.append(1)
    if not seen and any(Path(ROOT, "jobs", ctx.job_id, "checkpoints").rglob("*")):
        seen.append(len(calls))
    OUT.write_text(json.dumps({{"calls": len(calls), "seen": bool(seen)}}))
    if len(calls) == STEAL_AT:
        backend = open_backend({{"kind": "local", "root": ROOT}})
        def steal(value):
            return {{**value, "owner": "another-worker"}}

        backend.state.update(keys.TASKS_TABLE, keys.task_state(ctx.job_id, ctx.task_id), steal)
        beats = [t for t in threading.enumerate() if t.name.startswith("heartbeat")]
        deadline = time.monotonic() + 60
        while not any(getattr(t, "lost", False) for t in beats) and time.monotonic() < deadline:
            time.sleep(0.01)
"""
ITEM = """
def handle(record, ctx):
    note(ctx)
    return {"n": record["n"]}
"""
BATCH = """
def handle(records, ctx):
    note(ctx)
    return [{"n": r["n"]} for r in records]
"""


def setup(tmp: Path, n_items: int, mode: str, steal_at: int) -> tuple[Path, str, Path]:
    root, job_id = prepare(tmp, n_items, mode)
    out = tmp / "calls.json"
    code = COMMON.format(out=str(out), root=str(root), steal_at=steal_at) + (
        BATCH if mode == "batch" else ITEM
    )
    (tmp / f"{module(tmp)}.py").write_text(code)
    return root, job_id, out


@pytest.mark.parametrize("mode", ["item", "batch"])
def test_lost_lease_stops_the_task_mid_run_without_publishing(tmp_path, scratch, mode):
    n_items = 5000  # batch mode: 5 calls of 1,000 records
    steal_at = 2 if mode == "batch" else 100
    root, job_id, out = setup(tmp_path, n_items, mode, steal_at)
    w = Worker(open_backend({"kind": "local", "root": str(root)}), job_id, heartbeat_s=0.2)
    assert w.run_task("t0000000") == EXIT_LEASE_LOST
    calls = json.loads(out.read_text())["calls"]
    if mode == "batch":
        assert calls == steal_at  # the chunk that saw the lease go is the last one
    else:
        assert calls < 1000  # stopped within the chunk of items that saw it, not at the end
    assert not (root / keys.done_marker(job_id, "t0000000")).exists()
    assert not list((root / "jobs" / job_id / "results").rglob("*.jsonl"))


@pytest.mark.parametrize("mode", ["item", "batch"])
def test_long_task_snapshots_to_the_store_while_it_runs(tmp_path, scratch, mode):
    n_items = 5000
    root, job_id, out = setup(tmp_path, n_items, mode, steal_at=0)
    # checkpoint_s = 0: a snapshot after every chunk, so the handler's next call sees one.
    w = Worker(open_backend({"kind": "local", "root": str(root)}), job_id, checkpoint_s=0.0)
    assert w.run_task("t0000000") == EXIT_OK
    assert json.loads(out.read_text())["seen"]  # the last call saw a checkpoint in the store
    assert not any((root / "jobs" / job_id / "checkpoints").rglob("*.seg"))  # published: deleted
