"""The partitioner on JSON Lines input: batching, rejects, determinism, errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from partition_helpers import batch_lines, make_jsonl, read_rejects, tree

from slurmctl.errors import ConfigError, InputError, StateError
from slurmctl.partition import PartitionSummary, partition
from slurmctl.partition import jsonl as jsonl_mod
from slurmctl.partition import verdicts as verdicts_mod


def test_count_batches_hold_every_record_in_order(tmp_path: Path) -> None:
    lines = make_jsonl(tmp_path / "in.jsonl", 2500)
    s = partition([tmp_path / "in.jsonl"], tmp_path / "out", items_per_batch=1000)
    assert [b.items for b in s.batches] == [1000, 1000, 500]
    assert [b.first_item for b in s.batches] == [0, 1000, 2000]
    assert [(b.first_line, b.last_line) for b in s.batches] == [(1, 1000), (1001, 2000), (2001, 2500)]
    assert batch_lines(tmp_path / "out", s) == lines
    assert s.total_items == 2500 and s.rejected == 0 and s.rejects_path is None
    assert not (tmp_path / "out" / "rejects.jsonl").exists()
    assert s.inputs == [
        {
            "path": str(tmp_path / "in.jsonl"),
            "format": "jsonl",
            "compression": None,
            "size_bytes": (tmp_path / "in.jsonl").stat().st_size,
            "records": 2500,
            "rejected": 0,
            "blank_lines": 0,
        }
    ]


@pytest.mark.parametrize(("ipb", "bpb"), [(None, 5000), (None, 1), (30, 5000), (1000, 3000)])
def test_size_batches_are_maximal_and_within_the_limit(tmp_path: Path, ipb: int | None, bpb: int) -> None:
    lines = make_jsonl(tmp_path / "in.jsonl", 700)
    s = partition([tmp_path / "in.jsonl"], tmp_path / "out", items_per_batch=ipb, bytes_per_batch=bpb)
    assert batch_lines(tmp_path / "out", s) == lines
    pos = 0
    for b in s.batches:
        sizes = [len(x) + 1 for x in lines[pos : pos + b.items]]
        assert b.bytes == sum(sizes)
        assert b.bytes <= bpb or b.items == 1  # a record bigger than the limit goes alone
        if ipb is not None:
            assert b.items <= ipb
        pos += b.items
        if pos < len(lines) and (ipb is None or b.items < ipb):
            assert b.bytes + len(lines[pos]) + 1 > bpb  # the next record did not fit


def test_same_input_gives_byte_identical_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_jsonl(tmp_path / "in.jsonl", 3000)
    with open(tmp_path / "in.jsonl", "ab") as fh:
        fh.write(b"oops\n\n{}\n")
    a = partition([tmp_path / "in.jsonl"], tmp_path / "a", items_per_batch=128)
    monkeypatch.setattr(jsonl_mod, "BLOCK_BYTES", 1000)  # block boundaries must not matter
    b = partition([tmp_path / "in.jsonl"], tmp_path / "b", items_per_batch=128)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert [x.sha256 for x in a.batches] == [x.sha256 for x in b.batches]
    assert a.batches == b.batches


def test_every_reject_kind_is_reported_with_its_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"a": 1}\n'  # 1 ok
        b"\n"  # 2 blank: skipped, counted
        b'{"a": }\n'  # 3 bad JSON
        b'"caf\xe9"\n'  # 4 latin-1, not UTF-8
        b"   \t \n"  # 5 blank
        b'{"big": "' + b"x" * 300 + b'"}\n'  # 6 larger than max_record_bytes
        b"NaN\n"  # 7 not JSON (Python's json would accept it)
        b'{"a": 1} {"b": 2}\n'  # 8 two values on one line
        b"[1, 2]\r\n"  # 9 ok, CRLF
        b'"\\ud83d\\ude00"\n'  # 10 ok: a surrogate pair escape
        b'{"c":\r3}\n'  # 11 ok: CR is whitespace; replaced by a space
        b"7"  # 12 ok, no final newline
    )
    s = partition([src], tmp_path / "out", max_record_bytes=100)
    accepted = [b'{"a": 1}', b"[1, 2]", b'"\\ud83d\\ude00"', b'{"c": 3}', b"7"]
    assert batch_lines(tmp_path / "out", s) == accepted
    rejects = read_rejects(s)
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects] == [
        (3, "not valid JSON"),
        (4, "not valid UTF-8"),
        (6, "record larger than max_record_bytes (100)"),
        (7, "not valid JSON"),
        (8, "not valid JSON"),
    ]
    assert all(r["source"] == str(src) and len(r["excerpt"]) <= 200 for r in rejects)
    assert rejects[1]["excerpt"] == '"caf\\xe9"'
    assert s.rejected == 5 and s.inputs[0]["blank_lines"] == 2 and s.total_items == 5
    assert [(b.first_line, b.last_line) for b in s.batches] == [(1, 12)]


@pytest.mark.parametrize("blank", [b"", b"\n"])  # a blank line sends the block down the line-by-line path
def test_null_and_bare_scalars_are_items(tmp_path: Path, blank: bytes) -> None:
    values = [b"null", b"0", b"-1.5e3", b'"s"', b"true", b"false", b"[]", b"{}", b"null"]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(values[:4]) + b"\n" + blank + b"\n".join(values[4:]))  # no final newline
    s = partition([src], tmp_path / "out", items_per_batch=4)
    assert batch_lines(tmp_path / "out", s) == values
    assert [json.loads(x) for x in batch_lines(tmp_path / "out", s)][:5] == [None, 0, -1500.0, "s", True]
    assert s.total_items == 9 and s.rejected == 0 and s.inputs[0]["blank_lines"] == len(blank)
    assert [(b.first_item, b.items) for b in s.batches] == [(0, 4), (4, 4), (8, 1)]
    assert s.batches[-1].last_line == 9 + len(blank)


def test_huge_record_is_skipped_without_reading_it_into_memory(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    with open(src, "wb") as fh:
        fh.write(b'{"first": 1}\n{"huge": "')
        chunk = b"y" * (1 << 20)
        for _ in range(50):
            fh.write(chunk)
        fh.write(b'"}\n{"last": 2}\n')
    # Peak RSS of the child's own address space: VmHWM, not getrusage's ru_maxrss. Linux carries
    # ru_maxrss across execve(), and subprocess spawns with vfork(), so a child's ru_maxrss starts at the
    # *parent's* peak: run after tests that grew pytest past 100 MB, the old check failed for pytest's
    # memory, not the partitioner's. VmHWM belongs to the mm that exec creates.
    script = (
        "import re; from pathlib import Path; from slurmctl.partition import partition;"
        f"s = partition([Path({str(src)!r})], Path({str(tmp_path / 'out')!r}), max_record_bytes=16 * 2**20);"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1);"
        "print(s.total_items, s.rejected, hwm)"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    items, rejected, peak_kib = map(int, out)
    assert (items, rejected) == (2, 1)
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB for a 50 MB line"
    (reject,) = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == 2 and str(50 * 2**20 + 12) in reject["reason"]
    assert reject["excerpt"].startswith('{"huge": "yyy') and len(reject["excerpt"]) == 200


@pytest.mark.parametrize(("ipb", "bpb"), [(7, None), (None, 700), (50, 2000)])
def test_worker_processes_give_byte_identical_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ipb: int | None, bpb: int | None
) -> None:
    src = tmp_path / "in.jsonl"
    clean = make_jsonl(tmp_path / "clean.jsonl", 600)
    crlf = [x + b"\r\n" for x in clean[:200]]  # a run of CRLF lines: blocks normalised on the fast path
    src.write_bytes(
        b"\xef\xbb\xbf"
        + b"".join(x + b"\n" for x in clean[:300])
        + b'\n  \n{oops\nnull\n"caf\xe9"\n'
        + b"".join(crlf)
        + b'{"big": "'
        + b"x" * 3000
        + b'"}\n'  # over max_record_bytes: rejected while reading
        + b'{"a":\r1}\n'
        + b"\n".join(clean[300:])  # no final newline
    )
    monkeypatch.setattr(jsonl_mod, "BLOCK_BYTES", 1500)  # many blocks, many verdicts
    kw = {"items_per_batch": ipb, "bytes_per_batch": bpb, "max_record_bytes": 1000}
    serial = partition([src], tmp_path / "serial", workers=0, **kw)
    asked: list[bool] = []  # the real workers' verdicts, counted
    real_result = verdicts_mod.Verdict.result

    def counted(self: verdicts_mod.Verdict) -> bool:
        asked.append(real_result(self))
        return asked[-1]

    monkeypatch.setattr(verdicts_mod.Verdict, "result", counted)
    parallel = partition([src], tmp_path / "parallel", workers=2, **kw)
    assert asked.count(True) > 10 and asked.count(False) >= 2  # clean blocks and examined ones
    assert tree(tmp_path / "parallel") == tree(tmp_path / "serial")
    assert parallel == PartitionSummary(**{**serial.__dict__, "rejects_path": parallel.rejects_path})
    assert parallel.total_items == 600 + 200 + 2 and parallel.rejected == 3
    assert parallel.inputs[0]["blank_lines"] == 2


def test_a_worker_that_fails_is_an_input_error(tmp_path: Path) -> None:
    from slurmctl.partition.verdicts import VerdictPool

    with VerdictPool(1, 100) as pool:
        verdict = pool.ask(tmp_path / "gone.jsonl", 0, 10)
        with pytest.raises(InputError, match=r"cannot validate .*gone\.jsonl in a worker process") as err:
            verdict.result()
    assert "No such file" in str(err.value) and err.value.hint and "workers=0" in err.value.hint
    with pytest.raises(ConfigError, match="workers must be a non-negative integer"):
        partition([tmp_path / "gone.jsonl"], tmp_path / "out", workers=-1)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_input_gives_the_same_batches(tmp_path: Path, suffix: str) -> None:
    make_jsonl(tmp_path / "in.jsonl", 1500)
    data = (tmp_path / "in.jsonl").read_bytes()
    packed = gzip.compress(data) if suffix == ".gz" else zstandard.ZstdCompressor().compress(data)
    (tmp_path / f"c.jsonl{suffix}").write_bytes(packed)
    plain = partition([tmp_path / "in.jsonl"], tmp_path / "p", items_per_batch=400)
    comp = partition([tmp_path / f"c.jsonl{suffix}"], tmp_path / "c", items_per_batch=400)
    assert tree(tmp_path / "p") == tree(tmp_path / "c")
    assert comp.inputs[0]["compression"] == {".gz": "gzip", ".zst": "zstd"}[suffix]
    assert [b.sha256 for b in plain.batches] == [b.sha256 for b in comp.batches]


def test_batches_span_files_in_the_given_order(tmp_path: Path) -> None:
    a = make_jsonl(tmp_path / "a.jsonl", 150)
    (tmp_path / "b.jsonl").write_bytes(b"")
    c = make_jsonl(tmp_path / "c.ndjson", 100, start=1000)
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.ndjson"]
    s = partition(files, tmp_path / "out", items_per_batch=100)
    assert batch_lines(tmp_path / "out", s) == a + c
    b1 = s.batches[1]
    assert (b1.source, b1.first_line, b1.last_source, b1.last_line) == (str(files[0]), 101, str(files[2]), 50)
    assert [i["records"] for i in s.inputs] == [150, 0, 100]


def test_errors_are_input_errors_that_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"\n  \n")
    with pytest.raises(InputError, match="holds no records"):
        partition([tmp_path / "empty.jsonl"], tmp_path / "o1")
    (tmp_path / "bad.jsonl").write_bytes(b"nope\n")
    with pytest.raises(InputError, match="all 1 input records were rejected"):
        partition([tmp_path / "bad.jsonl"], tmp_path / "o2")
    with pytest.raises(InputError, match="not found"):
        partition([tmp_path / "missing.jsonl"], tmp_path / "o3")
    (tmp_path / "x.txt").write_text("{}\n")
    with pytest.raises(InputError, match="cannot tell the format"):
        partition([tmp_path / "x.txt"], tmp_path / "o4")
    assert partition([tmp_path / "x.txt"], tmp_path / "o5", input_format="jsonl").total_items == 1
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(b"{}\n" * 1000)[:-20])
    with pytest.raises(InputError, match=r"t\.jsonl\.gz: cannot decompress"):
        partition([tmp_path / "t.jsonl.gz"], tmp_path / "o6")
    (tmp_path / "g.jsonl").write_bytes(gzip.compress(b"{}\n"))
    with pytest.raises(InputError, match="gzip-compressed but its name"):
        partition([tmp_path / "g.jsonl"], tmp_path / "o7")
    with pytest.raises(ConfigError):
        partition([tmp_path / "x.txt"], tmp_path / "o8", input_format="jsonl", items_per_batch=0)


def test_completed_partition_is_a_no_op_and_refuses_other_inputs(tmp_path: Path) -> None:
    make_jsonl(tmp_path / "in.jsonl", 500)
    first = partition([tmp_path / "in.jsonl"], tmp_path / "out", items_per_batch=100)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    again = partition([tmp_path / "in.jsonl"], tmp_path / "out", items_per_batch=100)
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == mtimes
    with pytest.raises(StateError, match="other inputs or options"):
        partition([tmp_path / "in.jsonl"], tmp_path / "out", items_per_batch=50)


def test_progress_reports_bytes_of_all_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_jsonl(tmp_path / "a.jsonl", 800)
    make_jsonl(tmp_path / "b.jsonl", 800)
    total = sum((tmp_path / n).stat().st_size for n in ("a.jsonl", "b.jsonl"))
    monkeypatch.setattr(jsonl_mod, "BLOCK_BYTES", 4096)
    calls: list[tuple[int, int]] = []
    partition(
        [tmp_path / "a.jsonl", tmp_path / "b.jsonl"],
        tmp_path / "out",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert len(calls) > 10 and all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total


def _canonical(events: list) -> list[tuple]:
    """Returns the events as (kind, line, bytes/reason) records, runs flattened and blank counts merged,
    after checking that a run's zero-copy buffer starts with exactly its records."""
    from slurmctl.partition.records import Blank, Reject, Run

    out: list[tuple] = []
    for ev in events:
        if isinstance(ev, Run):
            lines = ev.lines
            if lines is None:  # a clean block found by the C scanner: its records are the lines there
                lines = bytes(ev.blob[ev.start : ev.end]).split(b"\n")[:-1]
                assert len(lines) == ev.count
            elif ev.blob is not None:
                joined = b"".join(line + b"\n" for line in lines)
                assert bytes(ev.blob[ev.start : ev.start + len(joined)]) == joined
            out.extend(("record", ev.line_of(k), line) for k, line in enumerate(lines))
        elif isinstance(ev, Reject):
            out.append(("reject", ev.line, ev.reason, ev.excerpt))
        elif isinstance(ev, Blank):
            if out and out[-1][0] == "blank":
                out[-1] = ("blank", out[-1][1] + ev.count)
            else:
                out.append(("blank", ev.count))
    return out


_block_lines = st.lists(
    st.one_of(
        st.sampled_from([b'{"a":1}', b"[1,2]", b"null", b'"x"', b"3.5", b'{"k":"\xc3\xa9"}']),
        st.sampled_from([b"", b" ", b"{", b"[1", b"2]", b"3,4", b"1 2", b"NaN", b'"\xff"', b" {}"]),
        st.just(b"{}\r{}"),
        st.binary(max_size=8).filter(lambda b: b"\n" not in b),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    lines=_block_lines,
    crlf=st.booleans(),
    tail=st.one_of(
        st.binary(max_size=20).filter(lambda b: b"\n" not in b),
        st.sampled_from([b"1", b"{}", b'"x"', b"null", b"\r", b" "]),  # valid on its own, or whitespace
    ),
    max_record=st.sampled_from([4, 16 * 2**20]),
)
def test_a_block_gives_the_same_events_whatever_follows_its_end(
    lines: list[bytes], crlf: bool, tail: bytes, max_record: int
) -> None:
    """The reader hands a block on as (buffer, end) with the next line's start after `end`; the fast
    path (one C-validated run) and the line-by-line path must agree, and ignore that tail."""
    block = b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines)
    exact, n_exact = jsonl_mod.scan_block(block, len(block), 0, 100, 7, max_record)
    with_tail, n_tail = jsonl_mod.scan_block(block + tail, len(block), 0, 100, 7, max_record)
    slow = jsonl_mod._slow_block(block, 0, 100, 7, max_record)
    assert n_exact == n_tail == len(lines)
    assert _canonical(exact) == _canonical(with_tail) == _canonical(slow)
