"""The worker's item loop over runs of items, on the real local backend: rows in item order across
chunk boundaries, per-item failures, a stop signal mid-task then resume on another node from the
store's checkpoint segments (more on segments in test_worker_segments.py)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from slurmctl.errors import EXIT_OK, EXIT_RESUME
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.worker.checkpoint import read_segment
from slurmctl.worker.runtime import Worker
from tests.e2e.cli import slurmctl, write_job

# Item n: fails if n % 7 == 3, no row if n % 11 == 5, two rows if n % 13 == 0, an unencodable row if
# n % 17 == 9 (fails its item only), else one row. With STOP_AT set, asks the worker to stop at that item.
HANDLER = """
import os, signal

def handle(record, ctx):
    n = record["n"]
    assert ctx.item_id == n, (ctx.item_id, n)
    if n == int(os.environ.get("TEST_STOP_AT", "-1")):
        os.kill(os.getpid(), signal.SIGUSR1)
    if n % 7 == 3:
        raise ValueError(f"item {n} is bad")
    if n % 11 == 5:
        return None
    if n % 13 == 0:
        return [{"n": n, "k": 0}, {"n": n, "k": 1}]
    if n % 17 == 9:
        return {"n": n, "bad": object()}
    return {"n": n}
"""


def expected(n_items: int) -> tuple[list[dict], set[int]]:
    rows: list[dict] = []
    failed: set[int] = set()
    for n in range(n_items):
        if n % 7 == 3 or (n % 17 == 9 and n % 11 != 5 and n % 13 != 0):
            failed.add(n)
        elif n % 11 == 5:
            continue
        elif n % 13 == 0:
            rows += [{"n": n, "k": 0, "_item_id": n}, {"n": n, "k": 1, "_item_id": n}]
        else:
            rows.append({"n": n, "_item_id": n})
    return rows, failed


def module(tmp: Path) -> str:
    """A handler module name of this test's own (handlers are imported into the test process)."""
    return "h_" + "".join(c if c.isalnum() else "_" for c in tmp.name)


def prepare(tmp: Path, n_items: int, mode: str = "item") -> tuple[Path, str]:
    (tmp / f"{module(tmp)}.py").write_text(HANDLER)
    with open(tmp / "in.jsonl", "w") as f:
        for i in range(n_items):
            f.write(json.dumps({"n": i}) + "\n")
    job = write_job(
        tmp,
        f"name: t\ninput: {{path: in.jsonl}}\nhandler: {{function: '{module(tmp)}:handle', mode: {mode}}}\n"
        f"batch: {{items: {n_items}}}\noutput: {{format: jsonl}}\n",
    )
    root = tmp / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    assert r.code == 0, r.err
    return root, r.out.strip().splitlines()[-1]


def published(root: Path, job_id: str) -> tuple[dict, list[dict], list[dict]]:
    backend = open_backend({"kind": "local", "root": str(root)})
    done = json.loads(backend.objects.get(keys.done_marker(job_id, "t0000000")))
    manifest = json.loads(backend.objects.get(done["manifest_key"]))
    data = backend.objects.get(manifest["data_key"]).decode()
    assert data == "" or data.endswith("\n")
    rows = [json.loads(line) for line in data.splitlines()]
    errors = []
    if manifest["errors_key"]:
        errors = [json.loads(x) for x in backend.objects.get(manifest["errors_key"]).decode().splitlines()]
    return manifest, rows, errors


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    def use(name: str) -> Path:
        path = tmp_path / name
        monkeypatch.setenv("SLURMCTL_SCRATCH", str(path))
        return path

    use("scratch-a")
    return use


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def worker(root: Path, job_id: str) -> Worker:
    return Worker(open_backend({"kind": "local", "root": str(root)}), job_id)


@pytest.mark.parametrize("mode", ["item", "batch"])
def test_rows_in_item_order_with_failures(tmp_path, scratch, mode):
    n_items = 5000  # several chunks and several 1,000-record batch calls
    root, job_id = prepare(tmp_path, n_items, mode)
    if mode == "batch":  # the same rules through a batch handler
        (tmp_path / f"{module(tmp_path)}.py").write_text(
            HANDLER
            + "\n_item = handle\n"
            + "def handle(records, ctx):\n"
            + "    out = []\n"
            + "    for r in records:\n"
            + "        if r['n'] % 7 == 3:\n"
            + "            out.append({'n': r['n'], 'bad': object()})\n"  # fails its item only
            + "            continue\n"
            + "        ctx.item_id = r['n']\n"
            + "        out.append(_item(r, ctx))\n"
            + "    return out\n"
        )
    assert worker(root, job_id).run_task("t0000000") == EXIT_OK
    manifest, rows, errors = published(root, job_id)
    want_rows, want_failed = expected(n_items)
    assert [e["item_id"] for e in errors] == sorted(want_failed), errors[:1]
    assert rows == want_rows
    assert manifest["items_ok"] == n_items - len(want_failed)
    assert manifest["items_failed"] == len(want_failed)
    assert manifest["rows"] == len(want_rows)
    assert manifest["items_resumed"] == 0
    assert manifest["handler_seconds"] > 0
    assert sum(manifest["failure_categories"].values()) == len(want_failed)


def test_stop_signal_then_resume_on_another_node(tmp_path, scratch, monkeypatch, restore_signals):
    n_items, stop_at = 3000, 1234
    root, job_id = prepare(tmp_path, n_items)
    monkeypatch.setenv("TEST_STOP_AT", str(stop_at))
    w = worker(root, job_id)
    w.stop.install()
    assert w.run_task("t0000000") == EXIT_RESUME
    assert w.stop.signal == signal.SIGUSR1
    stored: list[int] = []  # the items of the store's segments
    for segment in (root / keys.checkpoint_prefix(job_id, "t0000000")).glob("*.seg"):
        with open(segment, "rb") as f:
            stored += [i for run, _ in read_segment(f) for i in range(run[0], run[1] + 1)]
    assert sorted(stored) == list(range(stop_at + 1))  # the item that saw the signal finished, no more
    monkeypatch.setenv("TEST_STOP_AT", "-1")
    scratch("scratch-b")  # another node: only the store's snapshot carries progress
    assert worker(root, job_id).run_task("t0000000") == EXIT_OK
    manifest, rows, errors = published(root, job_id)
    want_rows, want_failed = expected(n_items)
    assert rows == want_rows  # exactly once, in item order
    assert [e["item_id"] for e in errors] == sorted(want_failed)
    assert manifest["items_resumed"] == stop_at + 1
    assert manifest["attempt"] == 2


SHAPES = {
    "no_ctx": "def handle(record):\n    return {'n': record['n']}\n",
    "generator": (
        "def handle(record, ctx):\n"
        "    for k in range(record['n'] % 3):\n"
        "        yield {'n': record['n'], 'k': k}\n"
    ),
    "generator_no_ctx": (
        "def handle(record):\n    yield from ({'n': record['n'], 'k': k} for k in range(record['n'] % 3))\n"
    ),
    "raising_generator": (
        "def handle(record):\n"
        "    yield {'n': record['n'], 'k': 0}\n"
        "    if record['n'] % 5 == 0:\n"
        "        raise KeyError(record['n'])\n"
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_handler_shapes(tmp_path, scratch, shape):
    n_items = 300
    root, job_id = prepare(tmp_path, n_items)
    (tmp_path / f"{module(tmp_path)}.py").write_text(SHAPES[shape])
    assert worker(root, job_id).run_task("t0000000") == EXIT_OK
    manifest, rows, errors = published(root, job_id)
    if shape == "no_ctx":
        want = [{"n": n, "_item_id": n} for n in range(n_items)]
    elif shape == "raising_generator":  # a generator that raises fails its item: none of its rows kept
        want = [{"n": n, "k": 0, "_item_id": n} for n in range(n_items) if n % 5]
    else:
        want = [{"n": n, "k": k, "_item_id": n} for n in range(n_items) for k in range(n % 3)]
    assert rows == want
    failed = [n for n in range(n_items) if n % 5 == 0] if shape == "raising_generator" else []
    assert [e["item_id"] for e in errors] == failed
    assert manifest["items_ok"] + manifest["items_failed"] == n_items


SLOW = """
import sqlite3, time

def handle(record, ctx):
    time.sleep(0.15)
    if record["n"] == 9:  # ~1.4 s in: what has this attempt committed so far?
        with sqlite3.connect(ctx.scratch_dir.parent / "checkpoint.sqlite") as db:
            committed = db.execute("SELECT count(*) FROM items").fetchone()[0]
        (ctx.scratch_dir.parent.parent.parent / "committed_at_9").write_text(str(committed))
    return {"n": record["n"]}
"""


def test_slow_handler_commits_item_by_item_from_the_start(tmp_path, scratch):
    """A handler taking a while per item must not wait for a big chunk: the worker starts with
    one-item chunks, so commits (every commit_s = 1 s) and heartbeat progress keep flowing."""
    root, job_id = prepare(tmp_path, 12)
    (tmp_path / f"{module(tmp_path)}.py").write_text(SLOW)
    assert worker(root, job_id).run_task("t0000000") == EXIT_OK
    marker = next((tmp_path / "scratch-a").rglob("committed_at_9"))
    assert 1 <= int(marker.read_text()) <= 9
