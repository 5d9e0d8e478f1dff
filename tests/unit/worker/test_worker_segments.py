"""Checkpoint segments in the store, end to end on the real local backend: a task stopped mid-way
resumes elsewhere from the union of its segments, a damaged or foreign segment is ignored (its items
run again), runs shipped by two attempts over the same items never double an item, an earlier
attempt's file on the node joins the union, and publication deletes the segments."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from test_worker_runs import expected, prepare, published

from slurmctl.errors import EXIT_OK, EXIT_RESUME
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.worker.checkpoint import FORMAT, Checkpoint, read_segment
from slurmctl.worker.runtime import Worker

TASK = "t0000000"
N_ITEMS, STOP_AT = 3000, 1234


def stopped_task(tmp: Path, monkeypatch) -> tuple[Path, str]:
    """A task stopped by a signal after item STOP_AT, with a segment shipped after every chunk."""
    root, job_id = prepare(tmp, N_ITEMS)
    monkeypatch.setenv("TEST_STOP_AT", str(STOP_AT))
    w = Worker(open_backend({"kind": "local", "root": str(root)}), job_id, checkpoint_s=0.0)
    w.stop.install()
    assert w.run_task(TASK) == EXIT_RESUME
    monkeypatch.setenv("TEST_STOP_AT", "-1")
    return root, job_id


def segments(root: Path, job_id: str) -> list[Path]:
    return sorted((root / keys.checkpoint_prefix(job_id, TASK)).glob("*.seg"))


def items_of(path: Path) -> list[int]:
    with open(path, "rb") as f:
        return [i for run, _ in read_segment(f) for i in range(run[0], run[1] + 1)]


def foreign_segment(tmp: Path, root: Path, job_id: str, runs: list[tuple[int, int]]) -> Path:
    """A segment another attempt shipped: the handler's rows for ``runs`` (inclusive), each row
    marked ``other``, under its own writer token."""
    want_rows, want_failed = expected(N_ITEMS)
    ck = Checkpoint(tmp / "foreign" / "c.sqlite")
    for a, b in runs:
        rows = [json.dumps({**r, "other": True}).encode() for r in want_rows if a <= r["_item_id"] <= b]
        errs = [
            (i, "permanent", "ValueError", "other", "tb", 1, "node1", None, 0.0)
            for i in sorted(want_failed)
            if a <= i <= b
        ]
        ck.record_run(a, b, b"".join(r + b"\n" for r in rows), len(rows), errs)
    dest = root / keys.checkpoint_segment(job_id, TASK, runs[0][0], "0ther0ne")
    segment = ck.write_segment(dest)
    assert segment is not None
    ck.close()
    return dest


def check_exactly_once(root: Path, job_id: str) -> tuple[dict, list[dict]]:
    """The published result holds every item's rows exactly once (from whichever attempt)."""
    manifest, rows, errors = published(root, job_id)
    want_rows, want_failed = expected(N_ITEMS)
    for row in rows:
        row.pop("other", None)
    assert rows == want_rows
    assert [e["item_id"] for e in errors] == sorted(want_failed)
    return manifest, rows


def test_segments_ship_each_item_once_and_resume_elsewhere(tmp_path, scratch, monkeypatch, restore_signals):
    root, job_id = stopped_task(tmp_path, monkeypatch)
    shipped = [items_of(p) for p in segments(root, job_id)]
    assert len(shipped) > 3  # one per chunk: the snapshot ships only what is new
    assert sorted(i for items in shipped for i in items) == list(range(STOP_AT + 1))
    scratch("scratch-b")  # another node: only the store carries progress
    w = Worker(open_backend({"kind": "local", "root": str(root)}), job_id)
    assert w.run_task(TASK) == EXIT_OK
    manifest, _ = check_exactly_once(root, job_id)
    assert manifest["items_resumed"] == STOP_AT + 1
    assert segments(root, job_id) == []  # published: the segments are deleted


def test_damaged_and_foreign_segments_are_ignored_and_their_items_run_again(
    tmp_path,
    scratch,
    monkeypatch,
    restore_signals,
    caplog,
):
    root, job_id = stopped_task(tmp_path, monkeypatch)
    stored = segments(root, job_id)
    damaged = stored[len(stored) // 2]
    lost = len(items_of(damaged))
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped
    damaged.write_bytes(bytes(data))
    truncated = stored[1]
    lost += len(items_of(truncated))
    truncated.write_bytes(truncated.read_bytes()[:-40])
    (damaged.parent / "999999999999-junk.seg").write_bytes(b"not a segment" * 100)
    scratch("scratch-b")
    w = Worker(open_backend({"kind": "local", "root": str(root)}), job_id)
    assert w.run_task(TASK) == EXIT_OK
    manifest, _ = check_exactly_once(root, job_id)
    assert manifest["items_resumed"] == STOP_AT + 1 - lost  # their items ran again, the rest did not
    assert f"checkpoint segment {keys.checkpoint_prefix(job_id, TASK)}" in caplog.text
    assert "sha256 does not match" in caplog.text and "not a slurmctl checkpoint segment" in caplog.text


def test_overlapping_segments_of_two_attempts_never_double_an_item(
    tmp_path,
    scratch,
    monkeypatch,
    restore_signals,
):
    """Another attempt (one that had lost its lease, say) shipped runs over items this one shipped
    too, and runs further on: the union takes each item from one run only."""
    root, job_id = stopped_task(tmp_path, monkeypatch)
    beyond = (STOP_AT + 1, STOP_AT + 300)
    foreign_segment(tmp_path, root, job_id, [(900, 1100), beyond])
    scratch("scratch-b")
    w = Worker(open_backend({"kind": "local", "root": str(root)}), job_id)
    assert w.run_task(TASK) == EXIT_OK
    manifest, _ = check_exactly_once(root, job_id)
    assert manifest["items_resumed"] == STOP_AT + 1 + 300
    _, rows, _ = published(root, job_id)
    other = {r["_item_id"] for r in rows if r.get("other")}
    assert other and other <= set(range(beyond[0], beyond[1] + 1))  # 900-1100 overlapped: not taken


def test_earlier_attempt_on_this_node_joins_the_union(
    tmp_path, scratch, monkeypatch, restore_signals, caplog
):
    """The node's own checkpoint of the stopped attempt (further on than a store that lost some
    segments) and another attempt's segment beyond it are both used; a node-local file of another
    format is ignored with a warning."""
    root, job_id = stopped_task(tmp_path, monkeypatch)
    for path in segments(root, job_id)[::2]:
        path.unlink()  # as if never shipped: the node's own file still has those runs
    foreign_segment(tmp_path, root, job_id, [(STOP_AT + 1, STOP_AT + 300)])
    old = tmp_path / "scratch-a" / f"slurmctl-{os.getuid()}" / job_id / TASK / "a9" / "checkpoint.sqlite"
    old.parent.mkdir(parents=True)
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE chunks (first_id INTEGER PRIMARY KEY, last_id INTEGER)")
        db.execute("INSERT INTO chunks VALUES (0, 2999)")
        db.execute("PRAGMA user_version = 2")
    w = Worker(open_backend({"kind": "local", "root": str(root)}), job_id)
    assert w.run_task(TASK) == EXIT_OK  # same scratch: the same node
    manifest, _ = check_exactly_once(root, job_id)
    assert manifest["items_resumed"] == STOP_AT + 1 + 300
    assert f"has format 2; this slurmctl reads format {FORMAT} only" in caplog.text


def test_snapshot_traffic_is_the_new_work(tmp_path, scratch):
    """With a snapshot after every chunk, the segments together hold each recorded run once:
    their bytes are about the rows', not a whole-checkpoint copy per snapshot."""
    root, job_id = prepare(tmp_path, N_ITEMS)
    backend = open_backend({"kind": "local", "root": str(root)})
    sizes: list[int] = []
    put_file = backend.objects.put_file

    def counting_put_file(key: str, path: Path) -> object:  # the store's own put, measured
        if key.endswith(".seg"):
            sizes.append(path.stat().st_size)
        return put_file(key, path)

    backend.objects.put_file = counting_put_file  # type: ignore[method-assign]
    w = Worker(backend, job_id, checkpoint_s=0.0)
    assert w.run_task(TASK) == EXIT_OK
    manifest, _, errors = published(root, job_id)
    assert len(sizes) > 3
    # Rows once, plus the errors once (tracebacks), plus a few dozen bytes per run and segment.
    error_bytes = sum(len(json.dumps(e)) for e in errors)
    assert sum(sizes) < manifest["data_bytes"] + error_bytes + 100 * len(sizes) * 20
