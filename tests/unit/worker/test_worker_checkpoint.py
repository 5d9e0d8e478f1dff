"""The item checkpoint (format 2: one row per run of items): resume, crash between commits, errors,
item order, the per-item view, format-1 files written by the previous version, damaged files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from worker_helpers import V1_SCHEMA

from slurmctl.errors import StateError
from slurmctl.worker.checkpoint import FORMAT, PAGE_SIZE, Checkpoint
from slurmctl.worker.runtime import pending_runs


def rows_block(ids: range) -> bytes:
    return b"".join(json.dumps({"n": i, "_item_id": i}).encode() + b"\n" for i in ids)


def err(item_id: int, category: str = "permanent") -> tuple[int, str, str, str, str, int]:
    return (item_id, category, "ValueError", f"bad {item_id}", "Traceback ...", 1)


def test_runs_counts_rows_in_item_order_and_errors(tmp_path):
    ck = Checkpoint(tmp_path / "c.sqlite")
    # Recorded out of order (a resumed attempt fills a gap): published in item order all the same.
    ck.record_run(10, 19, rows_block(range(10, 20)), 10, [])
    ck.record_run(0, 4, rows_block(range(0, 3)), 3, [err(3), err(4, "transient")])
    ck.record_run(5, 9, b"", 0, [])  # items that returned no rows
    assert ck.counts() == (18, 2, 13)
    assert b"".join(ck.iter_rows()) == rows_block(range(0, 3)) + rows_block(range(10, 20))
    assert [e["item_id"] for e in ck.iter_errors()] == [3, 4]
    assert ck.error_categories() == {"permanent": 1, "transient": 1}
    assert ck.done_ranges() == [(0, 19)]
    view = ck.db.execute("SELECT item_id, ok FROM items ORDER BY item_id").fetchall()
    assert view == [(i, 0 if i in (3, 4) else 1) for i in range(20)]
    assert ck.db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    assert ck.db.execute("PRAGMA user_version").fetchone()[0] == FORMAT
    ck.close()


def test_commit_thresholds(tmp_path):
    ck = Checkpoint(tmp_path / "c.sqlite", commit_items=100, commit_s=3600)
    other = sqlite3.connect(tmp_path / "c.sqlite")
    committed = "SELECT count(*) FROM items"
    ck.record_run(0, 49, rows_block(range(50)), 50, [])
    assert not ck.commit_if_due()  # neither 100 items nor an hour
    assert other.execute(committed).fetchone()[0] == 0
    ck.record_run(50, 99, rows_block(range(50, 100)), 50, [])  # 100 items pending: commits
    assert other.execute(committed).fetchone()[0] == 100
    ck.record_run(100, 100, b"", 0, [])
    assert ck.commit_if_due(force=True)
    assert not ck.commit_if_due(force=True)  # nothing pending
    assert other.execute(committed).fetchone()[0] == 101
    other.close()
    ck.close()
    by_bytes = Checkpoint(tmp_path / "b.sqlite", commit_items=10**9, commit_s=3600, commit_bytes=1000)
    by_bytes.record_run(0, 0, b"x" * 999 + b"\n", 1, [])  # 1,000 bytes pending: commits
    assert Checkpoint.count(tmp_path / "b.sqlite") == 1
    by_bytes.close()


def test_crash_between_commits_keeps_exactly_the_committed_runs(tmp_path):
    path = tmp_path / "c.sqlite"
    # A real process that commits one run, buffers another, and dies without closing (as SIGKILL).
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from slurmctl.worker.checkpoint import Checkpoint
        ck = Checkpoint(Path({str(path)!r}), commit_items=10**9, commit_s=3600)
        ck.record_run(0, 99, b'{{"a":1}}\\n' * 100, 100, [])
        ck.commit_if_due(force=True)
        ck.record_run(100, 199, b'{{"a":2}}\\n' * 100, 100, [(150, "permanent", "E", "m", "tb", 1)])
        os._exit(9)
        """
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 9, p.stderr
    assert Checkpoint.count(path) == 100
    ck = Checkpoint(path)
    assert ck.done_ranges() == [(0, 99)]
    assert ck.counts() == (100, 0, 100)
    assert list(ck.iter_errors()) == []  # the error of the lost run was lost with it
    # The resumed attempt handles exactly the items the crash lost.
    assert pending_runs(0, 300, ck.done_ranges()) == [(100, 300)]
    ck.close()


def test_pending_runs():
    assert pending_runs(0, 10, []) == [(0, 10)]
    assert pending_runs(0, 10, [(0, 9)]) == []
    assert pending_runs(100, 10, [(100, 103), (106, 106)]) == [(104, 106), (107, 110)]
    assert pending_runs(100, 10, [(0, 50), (108, 200)]) == [(100, 108)]
    assert pending_runs(5, 3, [(0, 4), (8, 9)]) == [(5, 8)]


def test_snapshot_and_copy_resume_elsewhere(tmp_path):
    ck = Checkpoint(tmp_path / "a" / "c.sqlite", commit_items=10**9, commit_s=3600)
    ck.record_run(0, 9, rows_block(range(10)), 10, [])
    ck.snapshot(tmp_path / "snap.sqlite")  # commits what is pending first
    ck.record_run(10, 19, rows_block(range(10, 20)), 10, [])  # after the snapshot: not in it
    Checkpoint.copy(tmp_path / "snap.sqlite", tmp_path / "b" / "c.sqlite")
    other = Checkpoint(tmp_path / "b" / "c.sqlite")
    assert other.done_ranges() == [(0, 9)]
    assert b"".join(other.iter_rows()) == rows_block(range(10))
    other.close()
    ck.close()


def test_overlapping_runs_are_refused_at_publication(tmp_path):
    ck = Checkpoint(tmp_path / "c.sqlite")
    ck.record_run(0, 9, rows_block(range(10)), 10, [])
    ck.record_run(5, 14, rows_block(range(5, 15)), 10, [])
    with pytest.raises(StateError, match="overlap at item 5"):
        list(ck.iter_rows())
    ck.close()


def write_v1(path: Path) -> None:
    """A format-1 checkpoint as the previous version left it: items 0-6 and 9-10 done."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    two = '{"w":"a","_item_id":1}\n{"w":"b","_item_id":1}'
    db.executemany(
        "INSERT INTO items VALUES (?,?,?,?)",
        [
            (0, 1, 1, '{"n":0,"_item_id":0}'),
            (1, 1, 2, two),
            (2, 1, 0, ""),  # handler returned None
            (3, 0, 0, ""),  # failed
            (4, 1, 1, '{"n":4,"_item_id":4}'),
            (5, 1, 1, '{"n":5,"_item_id":5}'),
            (6, 1, 1, '{"n":6,"_item_id":6}'),
            (9, 1, 1, '{"n":9,"_item_id":9}'),
            (10, 0, 0, ""),
        ],
    )
    db.executemany("INSERT INTO errors VALUES (?,?,?,?,?,?)", [err(3), err(10, "transient")])
    db.commit()
    db.close()


def test_format_1_file_is_converted_and_resumes(tmp_path):
    path = tmp_path / "old.sqlite"
    write_v1(path)
    assert Checkpoint.count(path) == 9
    ck = Checkpoint(path)
    assert ck.db.execute("PRAGMA user_version").fetchone()[0] == FORMAT
    assert ck.done_ranges() == [(0, 6), (9, 10)]
    assert pending_runs(0, 12, ck.done_ranges()) == [(7, 9), (11, 12)]
    assert ck.counts() == (7, 2, 7)
    expected = (
        '{"n":0,"_item_id":0}\n{"w":"a","_item_id":1}\n{"w":"b","_item_id":1}\n'
        '{"n":4,"_item_id":4}\n{"n":5,"_item_id":5}\n{"n":6,"_item_id":6}\n{"n":9,"_item_id":9}\n'
    )
    assert b"".join(ck.iter_rows()).decode() == expected
    assert [(e["item_id"], e["category"]) for e in ck.iter_errors()] == [(3, "permanent"), (10, "transient")]
    # The resumed attempt fills the gaps; the rows come out in item order.
    ck.record_run(7, 8, b'{"n":7}\n{"n":8}\n', 2, [])
    ck.record_run(11, 11, b'{"n":11}\n', 1, [])
    text = b"".join(ck.iter_rows()).decode()
    assert text.splitlines()[6:9] == ['{"n":7}', '{"n":8}', '{"n":9,"_item_id":9}']
    assert text.endswith('{"n":11}\n')
    ck.close()
    # Converted once: opening again changes nothing.
    again = Checkpoint(path)
    assert again.done_ranges() == [(0, 11)]
    assert again.counts() == (10, 2, 10)
    again.close()


def test_format_1_conversion_splits_long_runs(tmp_path, monkeypatch):
    import slurmctl.worker.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "_MIGRATE_RUN_ITEMS", 4)
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.executemany("INSERT INTO items VALUES (?,?,?,?)", [(i, 1, 1, json.dumps({"i": i})) for i in range(10)])
    db.commit()
    db.close()
    ck = Checkpoint(path)
    assert ck.db.execute("SELECT first_id, last_id FROM chunks ORDER BY 1").fetchall() == [
        (0, 3),
        (4, 7),
        (8, 9),
    ]
    assert b"".join(ck.iter_rows()).decode().splitlines() == [json.dumps({"i": i}) for i in range(10)]
    ck.close()


def test_newer_format_is_refused_with_a_clear_message(tmp_path, caplog):
    path = tmp_path / "new.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {FORMAT + 1}")
    db.close()
    with pytest.raises(StateError, match=f"format {FORMAT + 1}") as e:
        Checkpoint(path)
    assert "delete it" in str(e.value)
    assert Checkpoint.count(path) == 0
    assert f"format {FORMAT + 1}, newer" in caplog.text


def test_garbage_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    assert Checkpoint.count(path) == 0
    with pytest.raises(StateError, match="unreadable") as e:
        Checkpoint(path)
    assert str(path) in str(e.value)
    with pytest.raises(StateError, match="unreadable"):
        Checkpoint.copy(path, tmp_path / "dest.sqlite")
