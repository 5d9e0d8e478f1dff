"""The item checkpoint (format 4: one row per run of items): resume, crash between commits, errors,
item order, the per-item view, segments shipped to the store (each run once, union on restore,
damaged segments refused), files of other formats and damaged files refused."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slurmctl.errors import StateError
from slurmctl.worker.checkpoint import FORMAT, PAGE_SIZE, Checkpoint, ErrorRow, SegmentError, read_segment
from slurmctl.worker.runtime import pending_runs


def rows_block(ids: range) -> bytes:
    return b"".join(json.dumps({"n": i, "_item_id": i}).encode() + b"\n" for i in ids)


def err(item_id: int, category: str = "permanent") -> ErrorRow:
    return (
        item_id,
        category,
        "ValueError",
        f"bad {item_id}",
        "Traceback ...",
        1,
        "node1",
        "42",
        1.5e9 + item_id,
    )


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


def segment_runs(path: Path) -> list[tuple[int, int]]:
    with open(path, "rb") as f:
        return [(run[0], run[1]) for run, _ in read_segment(f)]


def test_segments_carry_each_committed_run_once(tmp_path):
    ck = Checkpoint(tmp_path / "a" / "c.sqlite", commit_items=10**9, commit_s=3600)
    assert ck.write_segment(tmp_path / "s0.seg") is None  # nothing recorded: nothing written
    assert not (tmp_path / "s0.seg").exists()
    ck.record_run(0, 9, rows_block(range(10)), 10, [])
    ck.record_run(10, 19, rows_block(range(10, 15)), 5, [err(i) for i in range(15, 20)])
    first = ck.write_segment(tmp_path / "s1.seg")  # commits what is pending first
    assert first is not None and (first.first_id, first.runs, first.items) == (0, (0, 10), 20)
    assert first.size == (tmp_path / "s1.seg").stat().st_size
    # Not marked shipped (the store refused it, say): the next segment carries the runs again.
    again = ck.write_segment(tmp_path / "s1b.seg")
    assert again is not None and again.runs == (0, 10)
    ck.mark_shipped(first)
    assert ck.write_segment(tmp_path / "none.seg") is None
    ck.record_run(20, 29, rows_block(range(20, 30)), 10, [])
    second = ck.write_segment(tmp_path / "s2.seg")
    assert second is not None and second.runs == (20,)
    assert segment_runs(tmp_path / "s2.seg") == [(20, 29)]  # only the new run: no full copy
    assert second.size < len(rows_block(range(20, 30))) + 200
    ck.close()


def test_segments_restore_the_union_of_runs_elsewhere(tmp_path):
    ck = Checkpoint(tmp_path / "a" / "c.sqlite", commit_items=10**9, commit_s=3600)
    segments = []
    for k, (a, b) in enumerate([(0, 99), (100, 149), (150, 299)]):
        ck.record_run(a, b, rows_block(range(a, b + 1, 2)), len(range(a, b + 1, 2)), [err(b)])
        seg = ck.write_segment(tmp_path / f"s{k}.seg")
        assert seg is not None
        ck.mark_shipped(seg)
        segments.append(tmp_path / f"s{k}.seg")
    ck.record_run(300, 309, rows_block(range(300, 310)), 10, [])  # committed, never shipped
    other = Checkpoint(tmp_path / "b" / "c.sqlite")
    for path in reversed(segments):  # any order: runs are placed by item id
        with open(path, "rb") as f:
            other.merge(read_segment(f))
    assert other.done_ranges() == [(0, 299)]
    assert b"".join(other.iter_rows()) == b"".join(
        rows_block(range(a, b + 1, 2)) for a, b in [(0, 99), (100, 149), (150, 299)]
    )
    assert [e["item_id"] for e in other.iter_errors()] == [99, 149, 299]
    assert other.write_segment(tmp_path / "x.seg") is None  # merged runs are in the store already
    other.close()
    ck.close()


def test_merge_keeps_runs_disjoint(tmp_path):
    """Two attempts shipped runs over the same items (one had lost its lease): the union takes a
    run only if it overlaps none taken, so no item is recorded twice and none is half-recorded."""
    ck = Checkpoint(tmp_path / "c.sqlite")
    ck.record_run(100, 199, rows_block(range(100, 200)), 100, [])
    other = [
        ((0, 49, 50, 0, rows_block(range(50))), []),
        ((50, 120, 71, 0, rows_block(range(50, 121))), []),  # overlaps 100..199: dropped
        ((150, 160, 11, 0, rows_block(range(150, 161))), []),  # inside 100..199: dropped
        ((190, 250, 61, 0, rows_block(range(190, 251))), []),  # overlaps the end: dropped
        ((200, 209, 9, 1, rows_block(range(200, 209))), [err(209)]),
    ]
    heads = ck.merge(other)
    assert heads == [(0, 49), (50, 120), (150, 160), (190, 250), (200, 209)]
    assert ck.done_ranges() == [(0, 49), (100, 209)]
    assert b"".join(ck.iter_rows()) == rows_block(range(50)) + rows_block(range(100, 209))
    assert [e["item_id"] for e in ck.iter_errors()] == [209]
    # Shipped marks follow what the store holds: the local run 100..199 is not in it.
    ck.set_shipped({(0, 49), (200, 209)})
    seg = ck.write_segment(tmp_path / "s.seg")
    assert seg is not None and seg.runs == (100,)
    ck.close()


def test_merge_is_all_or_nothing(tmp_path):
    ck = Checkpoint(tmp_path / "c.sqlite")

    def runs():
        yield (0, 9, 10, 0, rows_block(range(10))), []
        raise SegmentError("damaged")

    with pytest.raises(SegmentError):
        ck.merge(runs())
    assert ck.done_ranges() == []
    ck.close()


def damage_cases(good: bytes) -> dict[str, bytes]:
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    return {
        "empty": b"",
        "magic only": good[:8],
        "truncated in a run": good[: len(good) // 2],
        "digest cut short": good[:-1],
        "a byte flipped": bytes(flipped),
        "bytes appended": good + b"\0",
        "not a segment": b"SQLite format 3\0" + good[16:],
        "another format": good[:7] + bytes([FORMAT + 1]) + good[8:],
    }


@pytest.mark.parametrize("case", sorted(damage_cases(b"x" * 100)))
def test_damaged_segment_is_refused_before_any_run_is_used(tmp_path, case):
    ck = Checkpoint(tmp_path / "a.sqlite")
    ck.record_run(0, 99, rows_block(range(100)), 100, [err(5)])
    assert ck.write_segment(tmp_path / "good.seg") is not None
    ck.close()
    bad = tmp_path / "bad.seg"
    bad.write_bytes(damage_cases((tmp_path / "good.seg").read_bytes())[case])
    with open(bad, "rb") as f, pytest.raises(SegmentError) as e:
        read_segment(f)  # raises at once, not on the first run
    if case == "another format":
        assert f"segment format {FORMAT + 1}" in str(e.value)
    target = Checkpoint(tmp_path / "b.sqlite")
    with open(bad, "rb") as f, pytest.raises(SegmentError):
        target.merge(read_segment(f))
    assert target.done_ranges() == []
    target.close()


def test_segment_write_is_atomic(tmp_path):
    """A segment appears whole under its name or not at all (written beside it, then renamed)."""
    ck = Checkpoint(tmp_path / "c.sqlite")
    ck.record_run(0, 9, rows_block(range(10)), 10, [])
    dest = tmp_path / "out" / "s.seg"
    dest.parent.mkdir()
    dest.write_bytes(b"an older segment")
    seg = ck.write_segment(dest)
    assert seg is not None
    assert sorted(p.name for p in dest.parent.iterdir()) == ["s.seg"]  # no temp file left
    assert segment_runs(dest) == [(0, 9)]
    ck.close()


def test_overlapping_runs_are_refused_at_publication(tmp_path):
    ck = Checkpoint(tmp_path / "c.sqlite")
    ck.record_run(0, 9, rows_block(range(10)), 10, [])
    ck.record_run(5, 14, rows_block(range(5, 15)), 10, [])
    with pytest.raises(StateError, match="overlap at item 5"):
        list(ck.iter_rows())
    ck.close()


def write_old(path: Path, version: int) -> None:
    """A database of checkpoint format ``version`` (2: runs, as an earlier development version
    wrote them; 0: the same tables with no format number)."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE chunks (first_id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL, "
        "nrows INTEGER NOT NULL, nfailed INTEGER NOT NULL, rows BLOB NOT NULL)"
    )
    db.execute("INSERT INTO chunks VALUES (0, 9, 10, 0, ?)", (rows_block(range(10)),))
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


@pytest.mark.parametrize(("version", "found"), [(2, "format 2"), (0, "no format number")])
def test_other_formats_are_refused_with_a_clear_message(tmp_path, caplog, version, found):
    path = tmp_path / "old.sqlite"
    write_old(path, version)
    before = path.read_bytes()
    with pytest.raises(StateError, match=f"has {found}; this slurmctl reads format {FORMAT} only") as e:
        Checkpoint(path)
    assert str(path) in str(e.value) and e.value.exit_code == 5
    assert "delete it" in (e.value.hint or "")
    assert path.read_bytes() == before  # refused, not converted nor touched
    assert Checkpoint.count(path) == 0  # a worker ignores it: the items are run again
    assert f"has {found}; this slurmctl reads format {FORMAT} only" in caplog.text


def test_newer_format_is_refused_with_a_clear_message(tmp_path, caplog):
    path = tmp_path / "new.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {FORMAT + 1}")
    db.close()
    with pytest.raises(StateError, match=f"format {FORMAT + 1}") as e:
        Checkpoint(path)
    assert "delete it" in str(e.value)
    assert Checkpoint.count(path) == 0
    assert f"format {FORMAT + 1}; this slurmctl reads format {FORMAT} only" in caplog.text


def test_garbage_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    assert Checkpoint.count(path) == 0
    with pytest.raises(StateError, match="unreadable") as e:
        Checkpoint(path)
    assert str(path) in str(e.value)
    with pytest.raises(StateError, match="unreadable"):
        Checkpoint.copy(path, tmp_path / "dest.sqlite")
