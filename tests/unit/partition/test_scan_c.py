"""The C scanner (partition/_scan.c) against the Python rules, and reference batches end to end.

The scanner may refuse a line the Python rules (``validity.record_problem``) accept (the caller then
asks them), but it must never accept a line they refuse: that would put a bad record into a batch.
The partitioner's output must be the same bytes with the scanner or without it, copying or referring.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from partition_helpers import batch_bytes, batch_lines, read_rejects

from slurmctl.coordinator import batch_manifest
from slurmctl.model.core import Batch
from slurmctl.partition import jsonl as jsonl_mod
from slurmctl.partition import partition
from slurmctl.partition.validity import MAX_NESTING, record_problem
from slurmctl.worker.batchfile import InputChangedError, copy_reference

_scan = jsonl_mod._scan
needs_c = pytest.mark.skipif(
    _scan is None and os.environ.get("CI") != "true", reason="the C scanner is not built (no C compiler)"
)


def test_the_c_scanner_is_built_where_ci_runs() -> None:
    """scripts/bootstrap installs with a C compiler; in CI the fast path must really be exercised."""
    if os.environ.get("CI") == "true":
        assert jsonl_mod.C_SCANNER, "slurmctl.partition._scan is not built: see setup.py / scripts/bootstrap"
    elif _scan is None:
        pytest.skip("the C scanner is not built (no C compiler)")


def c_accepts(line: bytes, max_record: int = 1 << 30) -> bool:
    """Returns whether the C scanner takes ``line`` (no terminator) as a clean record."""
    assert _scan is not None
    bad, n = _scan.scan_jsonl(line + b"\n", 0, len(line) + 1, max_record)
    assert (bad, n) in ((-1, 1), (0, 0))
    return bad == -1


@needs_c
@pytest.mark.parametrize(
    ("line", "ok"),
    [
        (b'{"a":1}', True),
        (b' \t[1, 2.5e-3, -0, true, false, null, "x"] ', True),
        (b'"\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/\\b\\f\\r\\t"', True),
        (b'"\\ud800"', False),  # a lone surrogate escape: json reads it, the worker's decoder does not
        (b'"\\udc00\\ud800"', False),
        (b"1e308", True),
        (b"1.7976931348623157e308", True),  # the largest double
        (b"1.7976931348623158079372897140530341507994e308", False),  # rounds to infinity
        (b"1.7976931348623158079372897140530341507993e308", True),  # just below: rounds down
        (b"0.1e310", False),  # 1e309: beyond the range
        (b"0.01e310", False),  # 1e308, but in a form the scanner leaves to Python
        (b"1e999", False),
        (b"9" * 4300, True),
        (b"-" + b"9" * 4300, False),  # msgspec counts the sign
        ('{"é":"😀"}'.encode(), True),
        (b"", False),  # blank: the Python path counts it
        (b"  ", False),
        (b"NaN", False),
        (b"Infinity", False),
        (b"01", False),
        (b"1.", False),
        (b".5", False),
        (b"-", False),
        (b"1e", False),
        (b"+1", False),
        (b"[1,]", False),
        (b'{"a":1,}', False),
        (b'{"a" 1}', False),
        (b"{1:2}", False),
        (b"1 2", False),
        (b"{}{}", False),
        (b"[1", False),
        (b"2]", False),
        (b"tru", False),
        (b"nulll", False),
        (b'"abc', False),
        (b'"\\x"', False),
        (b'"\\u12G4"', False),
        (b'"a\tb"', False),  # a raw control character inside a string
        (b'"\x00"', False),
        (b'"\xff"', False),  # not UTF-8
        (b'"\xc0\xaf"', False),  # overlong
        (b'"\xe0\x80\xaf"', False),  # overlong
        (b'"\xed\xa0\x80"', False),  # an encoded surrogate
        (b'"\xf4\x90\x80\x80"', False),  # above U+10FFFF
        (b'"\xc3"', False),  # truncated sequence
        (b"\xef\xbb\xbf{}", False),  # a BOM inside the data
        (b"{}\r", False),  # any CR: the Python path handles CRLF files
        (b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1), False),  # deeper than a record may be
        (b"[" * MAX_NESTING + b"]" * MAX_NESTING, True),
    ],
)
def test_c_scanner_verdicts(line: bytes, ok: bool) -> None:
    assert c_accepts(line) is ok
    if ok:
        assert record_problem(line) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_tokens = st.sampled_from(
    [
        *(b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"0", b"1", b"-", b".", b"e", b"+", b" "),
        *(b"\t", b"true", b"false", b"null", b"a", b"\xc3\xa9", b"\xc3", b"\xed\xa0\x80"),
        *(b"\x7f", b"\x01", b"\r", b"\\ud800", b"\\udc00", b"e308", b"e999", b"9" * 300, b"[" * 300),
    ]
)


@needs_c
@settings(max_examples=400, deadline=None)
@given(value=_json, ensure_ascii=st.booleans(), compact=st.booleans())
def test_c_scanner_accepts_what_json_dumps_writes(value: object, ensure_ascii: bool, compact: bool) -> None:
    """So clean data takes the fast path (a refusal would only cost time, but all of it)."""
    seps = (",", ":") if compact else (", ", ": ")
    line = json.dumps(value, ensure_ascii=ensure_ascii, separators=seps, allow_nan=False).encode()
    assert c_accepts(line)


@needs_c
@settings(max_examples=1500, deadline=None)
@given(
    line=st.one_of(
        st.lists(_tokens, max_size=24).map(b"".join),
        st.binary(max_size=24),
        st.tuples(_json, st.integers(0, 200), st.binary(max_size=3)).map(
            # a valid line with a few bytes replaced or inserted
            lambda t: (lambda b: b[: t[1] % (len(b) + 1)] + t[2] + b[t[1] % (len(b) + 1) + 1 :])(
                json.dumps(t[0], ensure_ascii=False).encode()
            )
        ),
    ).filter(lambda b: b"\n" not in b)
)
def test_c_scanner_never_accepts_what_python_refuses(line: bytes) -> None:
    if c_accepts(line):
        assert record_problem(line) is None, line


@needs_c
def test_scan_reports_the_first_bad_line_and_the_lines_before_it() -> None:
    assert _scan is not None
    buf = b'{"a":1}\n[2]\n{bad\n3\n'
    assert _scan.scan_jsonl(buf, 0, len(buf), 100) == (12, 2)
    assert _scan.scan_jsonl(buf, 17, len(buf), 100) == (-1, 1)
    assert _scan.scan_jsonl(buf, 0, 12, 100) == (-1, 2)
    assert _scan.scan_jsonl(buf, 0, len(buf), 6) == (0, 0)  # over max_record
    assert _scan.scan_jsonl(b"1\n2", 0, 3, 100) == (2, 1)  # a line without its newline is refused
    with pytest.raises(ValueError, match="outside a buffer"):
        _scan.scan_jsonl(buf, 0, len(buf) + 1, 100)


@needs_c
def test_nth_newline() -> None:
    assert _scan is not None
    buf = b"a\nbb\n\nccc\n"
    assert [_scan.nth_newline(buf, 0, len(buf), n) for n in (1, 2, 3, 4, 5)] == [2, 5, 6, 10, -1]
    assert _scan.nth_newline(buf, 2, len(buf), 1) == 5
    assert _scan.nth_newline(buf, 0, 5, 3) == -1
    with pytest.raises(ValueError):
        _scan.nth_newline(buf, 0, len(buf), 0)


def _mixed_input(path: Path, n: int) -> None:
    """Clean stretches, then rejects, blanks, a CRLF stretch, a record with a CR inside, non-ASCII."""
    rows = []
    for i in range(n):
        if i % 733 == 11:
            rows.append(b"{broken\n")
        elif i % 911 == 3:
            rows.append(b"\n")
        elif 2000 <= i < 2040:
            rows.append(json.dumps({"i": i}).encode() + b"\r\n")
        elif i == 3001:
            rows.append(b'{"i":\r3001}\n')
        else:
            rows.append(json.dumps({"i": i, "s": "é" * (i % 5), "p": "x" * (i % 37)}).encode() + b"\n")
    path.write_bytes(b"".join(rows))


@pytest.mark.parametrize("bpb", [None, 700])
def test_same_batches_with_or_without_c_copying_or_referring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bpb: int | None
) -> None:
    src = tmp_path / "in.jsonl"
    _mixed_input(src, 6000)
    kw = {"items_per_batch": 40, "bytes_per_batch": bpb}
    monkeypatch.setattr(jsonl_mod, "BLOCK_BYTES", 1 << 14)
    results = {}
    for c in (False, True) if _scan is not None else (False,):
        for reference in (False, True):
            with monkeypatch.context() as m:
                if not c:
                    m.setattr(jsonl_mod, "_scan", None)
                out = tmp_path / f"out-{c}-{reference}"
                s = partition([src], out, reference=reference, **kw)
                results[c, reference] = (s, out)
    base_s, base_out = results[False, False]
    expected = [batch_bytes(base_out, b) for b in base_s.batches]
    for (c, reference), (s, out) in results.items():
        assert [batch_bytes(out, b) for b in s.batches] == expected, (c, reference)
        assert batch_lines(out, s) == batch_lines(base_out, base_s)
        assert read_rejects(s) == read_rejects(base_s)
        assert (s.total_items, s.rejected, s.inputs) == (base_s.total_items, base_s.rejected, base_s.inputs)
        refs = [b for b in s.batches if b.ref_path]
        if reference:
            # a batch refers to the input exactly when its lines are all records (no reject or blank
            # between them) with no CR; the others are files
            lines = src.read_bytes().split(b"\n")
            for b in s.batches:
                span = lines[b.first_line - 1 : b.last_line]
                pure = all(
                    line.strip() and b"\r" not in line and record_problem(line) is None for line in span
                )
                assert (b.ref_path is not None) == pure, b
            assert len(refs) > len(s.batches) // 2
        else:
            assert refs == []


def _reference_batch(tmp_path: Path) -> tuple[Path, Batch]:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(b'{"i":%d}\n' % i for i in range(100)))
    s = partition([src], tmp_path / "out", items_per_batch=30, reference=True)
    b = s.batches[1]
    assert b.ref_path == str(src) and b.ref_offset is not None
    batch = batch_manifest("j", b)
    assert batch.key is None and batch.ref_path == b.ref_path
    return src, batch


def test_copy_reference_gives_the_batch_bytes(tmp_path: Path) -> None:
    src, batch = _reference_batch(tmp_path)
    copy_reference(batch, tmp_path / "b.jsonl")
    data = (tmp_path / "b.jsonl").read_bytes()
    assert data == b"".join(b'{"i":%d}\n' % i for i in range(30, 60))
    assert hashlib.sha256(data).hexdigest() == batch.sha256
    with open(src, "ab") as fh:  # appending to the input leaves earlier batches valid
        fh.write(b'{"i":100}\n')
    copy_reference(batch, tmp_path / "b.jsonl")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda p: p.write_bytes(p.read_bytes().replace(b'{"i":42}', b'{"i":24}')), "another sha256"),
        (lambda p: p.write_bytes(p.read_bytes()[:400]), "bytes short"),
        (lambda p: p.unlink(), "cannot open it"),
    ],
)
def test_a_changed_input_is_named_with_what_to_do(tmp_path: Path, change, says: str) -> None:
    src, batch = _reference_batch(tmp_path)
    change(src)
    with pytest.raises(InputChangedError) as info:
        copy_reference(batch, tmp_path / "b.jsonl")
    text = str(info.value)
    assert says in text and str(src) in text and "b0000001" in text and "input.staging: copy" in text
