"""The one definition of a valid record, shared by the partitioner and the worker.

A line is a record iff it is UTF-8, nests arrays/objects at most ``MAX_NESTING`` levels deep, and the
worker's decoder (``record_decoder()``) reads it; then it decodes to the value ``json.loads`` gives
(docs/partitioning.md, "Records and rejects"). The partitioner rejects every other line with
``record_problem``'s reason; its fast paths (the C scanner ``_scan.c``, ``jsonl._fast_block``) send
any line they are unsure of to ``record_problem`` and never accept one it refuses. The worker reads
batch lines with ``record_decoder()``. Kept free of the partitioner's imports: a worker imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

# Deeper records are rejected. The worker's decoder recurses once per level on the interpreter's
# stack (Python's default recursion limit is 1000, shared with the frames above it), so a line's
# fate would otherwise depend on where it is decoded; 512 leaves the worker ~490 frames of margin.
MAX_NESTING = 512
# Python's default limit on the digits of an integer read from text (sys.get_int_max_str_digits()).
# The worker's decoder (msgspec) applies it to the literal with its sign: "-" and 4300 digits is refused.
MAX_INT_DIGITS = 4300

_DECODER: tuple[Callable[[bytes], Any], type[Exception]] | None = None


def _decoder() -> tuple[Callable[[bytes], Any], type[Exception]]:
    global _DECODER
    if _DECODER is None:  # msgspec is imported on first use (~20 ms): the C scanner rarely needs it
        import msgspec

        _DECODER = (msgspec.json.Decoder().decode, msgspec.DecodeError)
    return _DECODER


def record_decoder() -> Callable[[bytes], Any]:
    """Returns the decoder a worker reads a batch line with: bytes -> the record (msgspec: ~7x faster
    than ``json.loads`` on a small record). It raises ``msgspec.DecodeError`` for a line that is not a
    valid record; every line the partitioner accepts decodes to the value ``json.loads`` gives."""
    return _decoder()[0]


def nesting_reason() -> str:
    """Returns the reject reason of a line nested deeper than ``MAX_NESTING``."""
    return f"nested more than {MAX_NESTING} levels of arrays/objects (the most a record may have)"


@cache
def _pattern(name: str) -> re.Pattern[Any]:
    """Returns a compiled pattern (compiled on first use: ~4 ms a worker does not need)."""
    if name == "nesting":  # what nesting depends on: an escape (its character never ends a string),
        return re.compile(rb'\\.|["\[\]{}]', re.S)  # a quote, a bracket
    # One escape sequence. In a line json reads, every backslash starts one (inside a string), so
    # scanning them left to right pairs each with its own escape ("\\\\ud800" is a backslash, then text).
    return re.compile(r"\\(?:u([0-9A-Fa-f]{4})|.)", re.S)


def nests_deeper_than_limit(record: bytes) -> bool:
    """Returns whether ``record`` opens more than ``MAX_NESTING`` arrays/objects inside one another
    (an empty ``[]`` is a level; brackets inside strings do not count). Linear, iterative: any line
    is fine. Exact for a line that is otherwise valid JSON. Pure."""
    if record.count(b"[") + record.count(b"{") <= MAX_NESTING:  # the common case: two C scans
        return False
    depth = 0
    in_string = False
    for m in _pattern("nesting").finditer(record):
        c = m.group()
        if c == b'"':
            in_string = not in_string
        elif in_string or len(c) == 2:
            continue
        elif c == b"[" or c == b"{":
            depth += 1
            if depth > MAX_NESTING:
                return True
        else:
            depth -= 1
    return False


class _Refused(ValueError):
    """A value json reads but the worker's decoder does not; the message is the reject reason."""


def _number(literal: str, value: float) -> float:
    if value in (float("inf"), float("-inf")):
        shown = literal if len(literal) <= 40 else literal[:37] + "..."
        raise _Refused(f"number out of range: {shown} is beyond the range of a 64-bit float (about 1.8e308)")
    return value


def _float(literal: str) -> float:
    return _number(literal, float(literal))


def _int(literal: str) -> int:
    if len(literal) > MAX_INT_DIGITS:
        raise _Refused(
            f"number out of range: an integer written with {len(literal)} characters "
            f"(the most is {MAX_INT_DIGITS}, a minus sign included)"
        )
    return int(literal)


def _constant(name: str) -> None:
    # NaN/Infinity are not JSON (RFC 8259); the json module accepts them, so refuse them explicitly.
    raise _Refused(f"not valid JSON: {name} is not valid JSON")


def _lone_surrogate(text: str) -> str | None:
    """Returns the reason for the first \\uD800-\\uDFFF escape of ``text`` not in a high-low pair."""
    pending = None  # a high-surrogate escape waiting for its low half
    for m in _pattern("escape").finditer(text):
        cp = int(m.group(1), 16) if m.group(1) else -1
        if pending is not None:
            if pending.end() == m.start() and 0xDC00 <= cp <= 0xDFFF:
                pending = None
                continue
            break
        if 0xD800 <= cp <= 0xDBFF:
            pending = m
        elif 0xDC00 <= cp <= 0xDFFF:
            pending = m
            break
    if pending is None:
        return None
    return (
        f"not valid Unicode: lone UTF-16 surrogate {pending.group().lower()} at column {pending.start() + 1} "
        "(half of a pair: it encodes no character)"
    )


def record_problem(record: bytes) -> str | None:
    """Returns why ``record`` (one line, no terminator) is not a valid record, or None if it is.

    Valid: UTF-8, at most ``MAX_NESTING`` levels deep, and read by the worker's decoder. The reason
    names what is wrong and where (a column, or the offending number). Pure.
    """
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8: byte 0x{record[exc.start]:02x} at column {exc.start + 1}"
    if nests_deeper_than_limit(record):
        return nesting_reason()
    decode, decode_error = _decoder()
    try:
        decode(record)
        return None
    except decode_error as exc:
        return _why_refused(text, exc)
    except RecursionError:  # not at MAX_NESTING levels, unless called from very deep in the stack
        return nesting_reason()


def _why_refused(text: str, exc: Exception) -> str:
    """Returns a reject reason for a line the decoder refused with ``exc``: json's description of a
    syntax error, else the number or escape json reads but the decoder does not."""
    try:
        json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _Refused as refused:
        return str(refused)
    except json.JSONDecodeError as bad:
        return f"not valid JSON: {bad.msg} at column {bad.colno}"
    except ValueError as bad:
        return f"not valid JSON: {bad}"
    except RecursionError:
        return nesting_reason()
    return _lone_surrogate(text) or f"not valid JSON for the worker's decoder: {exc}"
