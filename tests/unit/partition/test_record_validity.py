"""One definition of a valid record, shared by the partitioner and the worker (docs/partitioning.md).

A line the partitioner accepts must be decoded by the worker's decoder (``slurmctl.worker.runtime.
_decode_line``) to the value ``json.loads`` gives; a line it rejects must have a reason that says
what is wrong. Every scanner path is checked: the C scanner, the pure-Python fast path (a block
whose lines msgspec validates as raw views) and the line-by-line path, and the CSV and Parquet
readers' batch lines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from partition_helpers import batch_lines, read_rejects

from slurmctl.partition import jsonl as jsonl_mod
from slurmctl.partition import partition
from slurmctl.partition.records import Reject, Run
from slurmctl.partition.validity import MAX_NESTING
from slurmctl.worker.runtime import _decode_line

DEEP_OK = b"[" * MAX_NESTING + b"]" * MAX_NESTING
DEEP_OBJ_OK = b'{"a":' * (MAX_NESTING - 1) + b"[]" + b"}" * (MAX_NESTING - 1)

# (line, None if accepted else a fragment of the reject reason)
TRICKY: list[tuple[bytes, str | None]] = [
    # nesting: at the limit and over
    (DEEP_OK, None),
    (DEEP_OBJ_OK, None),
    (b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1), f"nested more than {MAX_NESTING} levels"),
    (b'{"a":' * MAX_NESTING + b"{}" + b"}" * MAX_NESTING, f"nested more than {MAX_NESTING} levels"),
    (b"[" * 1000 + b"]" * 1000, f"nested more than {MAX_NESTING} levels"),
    (b"[" * 100_000 + b"]" * 100_000, f"nested more than {MAX_NESTING} levels"),
    (b'{"a":' * 1200 + b"1" + b"}" * 1200, f"nested more than {MAX_NESTING} levels"),
    (b"[" * 5000, f"nested more than {MAX_NESTING} levels"),  # unclosed, too: still a clear reason
    (b'["' + b"[" * 2000 + b'"]', None),  # brackets inside a string do not nest
    # surrogate escapes: valid pairs and lone halves
    (b'{"t":"\\ud83d\\ude00"}', None),
    (b'{"t":"\\uDBFF\\uDFFF"}', None),
    (b'{"t":"\\ud800"}', "lone UTF-16 surrogate \\ud800 at column 7"),
    (b'{"t":"x\\udc00y"}', "lone UTF-16 surrogate \\udc00 at column 8"),
    (b'{"t":"\\udc00\\ud800"}', "lone UTF-16 surrogate \\udc00"),
    (b'{"t":"\\ud800\\u0041"}', "lone UTF-16 surrogate \\ud800"),
    (b'{"\\ud800":1}', "lone UTF-16 surrogate \\ud800 at column 3"),
    (b'{"t":"\\\\ud800"}', None),  # an escaped backslash, then the text "ud800"
    (b'{"t":"\\\\\\ud800"}', "lone UTF-16 surrogate \\ud800 at column 9"),
    # numbers: huge, tiny, big integers, signed zero
    (b'{"x":1e999}', "1e999 is beyond the range of a 64-bit float"),
    (b'{"x":-1e999}', "-1e999 is beyond the range of a 64-bit float"),
    (b'{"x":1e309}', "beyond the range of a 64-bit float"),
    (b'{"x":1.7976931348623159e308}', "beyond the range of a 64-bit float"),
    (b"[" + b"9" * 309 + b".0]", "beyond the range of a 64-bit float"),
    (b"[" + b"9" * 210 + b"e99]", "beyond the range of a 64-bit float"),
    (b"[" + b"1" * 309 + b".0]", None),  # 1.1e308: within the range
    (b"[" + b"1" * 210 + b"e98]", None),
    (b'{"x":1e308}', None),
    (b'{"x":1.7976931348623157e308}', None),
    (b'{"x":100e306}', None),
    (b'{"x":0.01e310}', None),
    (b'{"x":1e-999}', None),
    (b'{"x":2e-324}', None),
    (b'{"x":5e-324}', None),
    (b'{"x":0e99999999999999999999}', None),
    (b'{"x":-0}', None),
    (b'{"x":-0.0}', None),
    (b'{"x":18446744073709551616}', None),  # 2**64: beyond 64 bits, a Python int
    (b'{"x":-9223372036854775809}', None),
    (b"[" + b"1" * 309 + b"]", None),  # an integer: no float range applies
    (b"[" + b"7" * 4300 + b"]", None),
    (b"[-" + b"7" * 4299 + b"]", None),
    (b"[" + b"7" * 4301 + b"]", "an integer written with 4301 characters"),
    (b"[-" + b"7" * 4300 + b"]", "an integer written with 4301 characters"),  # msgspec counts the sign
    (b"[0." + b"1" * 400 + b"]", None),
    # other corners
    (b'{"a":1,"a":2}', None),  # duplicate keys: the last one wins, in both decoders
    (b'{"e":"\\u00e9\\u0000\\n\\"\\/"}', None),
    ('{"é":"😀"}'.encode(), None),
    (b'\xef\xbb\xbf{"a":1}', "not valid JSON"),  # a BOM is dropped only at the start of a file
    (b'{"a":"\x00"}', "not valid JSON: Invalid control character"),
    (b'{"a":1}\x00', "not valid JSON: Extra data"),
    (b"NaN", "not valid JSON"),
    (b'{"a":-Infinity}', "not valid JSON"),
    (b'{"a":"\xff"}', "not valid UTF-8"),
]

GOOD = b'{"ok":1}'


def _ids(cases: list[tuple[bytes, str | None]]) -> list[str]:
    return [(line[:24] + (b"..." if len(line) > 24 else b"")).decode("utf-8", "replace") for line, _ in cases]


def _same(a: object, b: object) -> bool:
    """Equality that also tells -0.0 from 0.0 and an int from a float (repr does both)."""
    return repr(a) == repr(b)


def _block_verdict(line: bytes, c_scan: bool) -> str | None:
    """Returns None if ``scan_block`` accepts ``line`` (alone in its block), else the reject reason."""
    if c_scan and jsonl_mod._scan is None:
        pytest.skip("the C scanner is not built")
    buf = line + b"\n"
    events, n = jsonl_mod.scan_block(buf, len(buf), 0, 0, 1, 1 << 30, c_scan=c_scan)
    assert n == 1 and len(events) == 1
    (event,) = events
    if isinstance(event, Run):
        assert event.records == 1
        return None
    assert isinstance(event, Reject) and event.line == 1
    return event.reason


@pytest.mark.parametrize("c_scan", [True, False], ids=["c", "python"])
@pytest.mark.parametrize(("line", "why"), TRICKY, ids=_ids(TRICKY))
def test_every_path_gives_the_definitions_verdict(line: bytes, why: str | None, c_scan: bool) -> None:
    reason = _block_verdict(line, c_scan)
    if why is None:
        assert reason is None
        assert _same(_decode_line(line), json.loads(line))  # the worker reads what json.loads reads
    else:
        assert reason is not None and why in reason, reason
    assert jsonl_mod.record_problem(line) == reason


@pytest.mark.parametrize("c_scanner", [True, False], ids=["c", "python"])
def test_partition_rejects_with_line_and_reason_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, c_scanner: bool
) -> None:
    """All the tricky lines in one file, among good ones; and each alone among good ones (then a
    block holds no other bad line, so the pure-Python fast path must catch it)."""
    if not c_scanner:
        monkeypatch.setattr(jsonl_mod, "_scan", None)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(GOOD + b"\n" + line + b"\n" for line, _ in TRICKY) + GOOD + b"\n")
    s = partition([src], tmp_path / "all", items_per_batch=7)
    expected = [x for line, why in TRICKY for x in ([GOOD] if why else [GOOD, line])] + [GOOD]
    assert batch_lines(tmp_path / "all", s) == expected
    rejects = read_rejects(s)
    bad = [(2 * k + 2, why) for k, (_, why) in enumerate(TRICKY) if why]
    assert [r["line"] for r in rejects] == [line for line, _ in bad]
    for r, (_, why) in zip(rejects, bad, strict=True):
        assert why in r["reason"] and r["source"] == str(src)
    for k, (line, why) in enumerate(TRICKY):
        one = tmp_path / f"one{k}.jsonl"
        one.write_bytes(b"%s\n%s\n%s\n" % (GOOD, line, GOOD))
        s = partition([one], tmp_path / f"out{k}", items_per_batch=2)
        assert batch_lines(tmp_path / f"out{k}", s) == ([GOOD, GOOD] if why else [GOOD, line, GOOD])
        assert [(r["line"], why in r["reason"]) for r in read_rejects(s)] == ([(2, True)] if why else [])


def test_the_c_scanner_is_of_the_same_rules() -> None:
    """A build of _scan.c older than the rules (not rebuilt after an update) must not be used."""
    if jsonl_mod._scan is None:
        pytest.skip("the C scanner is not built")
    assert jsonl_mod._scan.MAX_DEPTH == MAX_NESTING
    assert jsonl_mod._scan_matches(jsonl_mod._scan)
    assert not jsonl_mod._scan_matches(object())


# Tricky pieces of JSON text, glued at random: most results are invalid, many are valid.
_pieces = st.sampled_from(
    [
        *(b"[", b"]", b"{", b"}", b",", b":", b'"', b'"a"', b"0", b"1", b"-", b".", b"e", b"E", b"+"),
        *(b"\\u", b"\\ud800", b"\\udbff", b"\\udc00", b"\\udfff", b"\\u0041", b"\\\\", b"\\n"),
        *(b"e308", b"e309", b"e-400", b"e999", b"1.7976931348623157", b"1.7976931348623159", b"9" * 40),
        *(b"1" * 300, b"null", b"true", b" ", b"\xc3\xa9", b"\xef\xbb\xbf", b"\x00", b"NaN", b"[" * 300),
    ]
)


@settings(max_examples=1500, deadline=None)
@given(pieces=st.lists(_pieces, max_size=16), wrap=st.integers(0, 2))
def test_accepted_lines_decode_in_the_worker_as_json_reads_them(pieces: list[bytes], wrap: int) -> None:
    line = b"".join(pieces)
    if wrap == 1:
        line = b'{"k":"' + line + b'"}'
    elif wrap == 2:
        line = b"[" + line + b"]"
    if not line.strip(b" \t"):
        return
    verdicts = {c: _block_verdict(line, c) for c in ((True, False) if jsonl_mod._scan else (False,))}
    reason = jsonl_mod.record_problem(line)
    assert set(verdicts.values()) == {reason}, verdicts
    if reason is None:
        value = _decode_line(line)
        assert _same(value, json.loads(line))
        assert _depth(value) <= MAX_NESTING
    else:
        assert reason.strip()


def _depth(value: object) -> int:
    """Returns how many arrays/objects ``value`` nests (0 for a scalar), without recursion."""
    top, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            top = max(top, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return top


def test_csv_lines_are_records_the_worker_decodes(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(
        b"a,b\n"
        + b"1,\xff\n"  # not UTF-8: rejected
        + '"\\ud800",😀\n'.encode()  # the text backslash-u-d-8-0-0, not an escape
        + b'"x\x00y","\tz"\n'
        + b"1e999,-0\n"  # CSV values are strings: no number range applies
    )
    s = partition([src], tmp_path / "out", items_per_batch=10)
    lines = batch_lines(tmp_path / "out", s)
    assert [_decode_line(x) for x in lines] == [
        {"a": "\\ud800", "b": "😀"},
        {"a": "x\x00y", "b": "\tz"},
        {"a": "1e999", "b": "-0"},
    ]
    assert all(jsonl_mod.record_problem(x) is None for x in lines)
    assert [(r["line"], r["reason"]) for r in read_rejects(s)] == [(2, "not valid UTF-8")]


def test_parquet_nan_and_infinity_become_null_and_every_line_decodes(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    floats = [math.nan, math.inf, -math.inf, -0.0, 1.7976931348623157e308, 5e-324]
    table = pa.table(
        {
            "f": pa.array(floats, pa.float64()),
            "i": pa.array([-(2**63), 2**63 - 1, 0, 1, 2, 3], pa.int64()),
            "u": pa.array([2**64 - 1, 0, 1, 2, 3, 4], pa.uint64()),
            "nested": pa.array([[[1.5, math.nan]], [], None, [[math.inf]], [[]], [[0.0]]]),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    s = partition([tmp_path / "t.parquet"], tmp_path / "out", items_per_batch=10)
    lines = batch_lines(tmp_path / "out", s)
    assert all(jsonl_mod.record_problem(x) is None for x in lines)
    records = [_decode_line(x) for x in lines]
    assert [r["f"] for r in records] == [None, None, None, -0.0, 1.7976931348623157e308, 5e-324]
    assert repr(records[3]["f"]) == "-0.0"
    assert [r["i"] for r in records][:2] == [-(2**63), 2**63 - 1]
    assert records[0]["u"] == 2**64 - 1
    assert [r["nested"] for r in records] == [[[1.5, None]], [], None, [[None]], [[]], [[0.0]]]
    assert s.rejected == 0
