"""CSV/TSV and Parquet input, and expand_inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from partition_helpers import batch_lines, read_rejects

from slurmctl.errors import InputError
from slurmctl.partition import CsvOptions, expand_inputs, partition


def test_csv_rows_become_objects_and_bad_rows_are_rejected(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(
        b"\xef\xbb\xbfid,name,note\r\n"  # 1 header, with a byte-order mark
        b"1,ann,plain\r\n"  # 2
        b'2,bob,"two\r\nlines, quoted"\r\n'  # 3-4: one record over two lines
        b"3,cy\r\n"  # 5 too few fields
        b"\r\n"  # 6 blank
        b"4,d\xe9,latin1\r\n"  # 7 not UTF-8
        b'5,eve,"say ""hi"""\r\n'  # 8
        b"6,fay,x,extra\r\n"  # 9 too many fields
        b"7,gus," + b"z" * 200 + b"\r\n"  # 10 larger than max_record_bytes
        b"8,hal,last"  # 11 no final newline
    )
    s = partition([src], tmp_path / "out", items_per_batch=2, max_record_bytes=100)
    records = [json.loads(x) for x in batch_lines(tmp_path / "out", s)]
    assert records == [
        {"id": "1", "name": "ann", "note": "plain"},
        {"id": "2", "name": "bob", "note": "two\r\nlines, quoted"},
        {"id": "5", "name": "eve", "note": 'say "hi"'},
        {"id": "8", "name": "hal", "note": "last"},
    ]
    assert [(b.first_line, b.last_line) for b in s.batches] == [(2, 3), (8, 11)]
    rejects = read_rejects(s)
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (5, "expected 3 fields (as in the header), found 2"),
        (7, "not valid UTF-8"),
        (9, "expected 3 fields (as in the header), found 4"),
        (10, "record larger than max_record_bytes (100): the line is 207 bytes; skipped"),
    ]
    assert rejects[0]["excerpt"] == "3,cy"
    assert s.inputs[0]["blank_lines"] == 1


def test_tsv_and_explicit_header(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text("x\ty\n1\t2\n")
    s = partition([tmp_path / "a.tsv"], tmp_path / "o1")
    assert [json.loads(x) for x in batch_lines(tmp_path / "o1", s)] == [{"x": "1", "y": "2"}]
    (tmp_path / "b.csv").write_text("1;2\n3;4\n")
    s = partition(
        [tmp_path / "b.csv"], tmp_path / "o2", csv_options=CsvOptions(delimiter=";", header=["p", "q"])
    )
    assert [json.loads(x) for x in batch_lines(tmp_path / "o2", s)] == [
        {"p": "1", "q": "2"},
        {"p": "3", "q": "4"},
    ]
    s = partition([tmp_path / "b.csv"], tmp_path / "o3", csv_options=CsvOptions(delimiter=";", header=False))
    assert next(json.loads(x) for x in batch_lines(tmp_path / "o3", s)) == {"col1": "1", "col2": "2"}


def test_csv_duplicate_header_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(InputError, match=r"d\.csv:1: the CSV header repeats column name\(s\) 'a'"):
        partition([tmp_path / "d.csv"], tmp_path / "out")


def test_parquet_rows_become_objects(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import datetime

    table = pa.table(
        {
            "id": list(range(25)),
            "name": [f"n{i}" for i in range(25)],
            "when": [datetime.datetime(2024, 1, 1, 0, 0, i) for i in range(25)],
            "tags": [["a"] * (i % 3) for i in range(25)],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=10)
    s = partition([tmp_path / "t.parquet"], tmp_path / "out", items_per_batch=7)
    records = [json.loads(x) for x in batch_lines(tmp_path / "out", s)]
    assert records[3] == {"id": 3, "name": "n3", "when": "2024-01-01T00:00:03", "tags": []}
    assert [r["id"] for r in records] == list(range(25))
    assert [(b.first_line, b.last_line) for b in s.batches] == [(1, 7), (8, 14), (15, 21), (22, 25)]
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="cannot read it as Parquet"):
        partition([tmp_path / "bad.parquet"], tmp_path / "o2")


def test_expand_inputs_sorts_each_pattern_and_reports_misses(tmp_path: Path) -> None:
    for name in ["part-10.jsonl", "part-2.jsonl", "sub/part-1.jsonl", "other.csv"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    assert expand_inputs("part-*.jsonl", tmp_path) == [tmp_path / "part-10.jsonl", tmp_path / "part-2.jsonl"]
    assert expand_inputs(["other.csv", "**/*.jsonl"], tmp_path) == [
        tmp_path / "other.csv",
        tmp_path / "part-10.jsonl",
        tmp_path / "part-2.jsonl",
        tmp_path / "sub/part-1.jsonl",
    ]
    assert expand_inputs(str(tmp_path / "other.csv"), Path("/nonexistent")) == [tmp_path / "other.csv"]
    with pytest.raises(InputError, match="matches no files"):
        expand_inputs(["other.csv", "*.parquet"], tmp_path)
    with pytest.raises(InputError, match="not found"):
        expand_inputs("nope.jsonl", tmp_path)
    with pytest.raises(InputError, match="is a directory"):
        expand_inputs("sub", tmp_path)
    with pytest.raises(InputError, match="no input given"):
        expand_inputs([], tmp_path)
