"""Reading JSON Lines input in large blocks, validating whole blocks in C when they are clean.

With the C scanner (``_scan.c``, built where a C compiler is): ``scan_jsonl`` checks every line of a
block without the GIL, possibly in a scan thread ahead of the parser; a clean stretch becomes one
block Run (``lines=None``, no object per line) and a line it refuses is judged by the Python rules
below (``_slow_block``). Without it, the pure-Python fast path:

The fast path (almost every block of real data): the block is ASCII or valid UTF-8 (one C call),
has no blank lines and is split once into lines; ``msgspec`` validates each line as exactly one JSON
value without building Python objects (it returns a raw view), and cheap screens of the whole block
rule out what a raw view does not check (numbers the worker's decoder refuses, nesting deeper than
``MAX_NESTING``: ``_all_records``). Only a block where that fails is re-examined line by line, to
find and classify the bad lines (``validity.record_problem``). The per-line verdict is the same in
both paths, so where a block boundary falls never changes the result.

With ``verdicts`` (see ``BlockVerdicts``), the fast path's validation of a block (the UTF-8 check and
msgspec, about a third of the partitioner's CPU) runs in worker processes that read the block from the
file themselves, a few blocks ahead of the parser; the parser only splits a block a worker found
clean, and examines any other block itself. A verdict only picks between the two paths, which give the
same events, so the output is byte-identical to a serial run.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .inputs import ByteStream
from .records import EXCERPT_BYTES, Blank, Event, Reject, Run, excerpt
from .validity import MAX_INT_DIGITS, MAX_NESTING, nests_deeper_than_limit, record_decoder, record_problem

_SCAN_RULES = 2  # the version of the rules _scan.c must implement (its RULES)


def _scan_matches(module: Any) -> bool:
    """Returns whether ``module`` is a build of _scan.c that implements these rules: a build older
    than the C source (not rebuilt after an update) would accept lines the rules refuse."""
    return (
        getattr(module, "RULES", None) == _SCAN_RULES
        and getattr(module, "MAX_DEPTH", MAX_NESTING + 1) <= MAX_NESTING
        and getattr(module, "MAX_INT_DIGITS", MAX_INT_DIGITS + 1) <= MAX_INT_DIGITS
    )


try:  # the C scanner (setup.py builds it when a compiler is there); else the pure-Python path below
    from . import _scan
except ImportError:  # pragma: no cover - depends on the build
    _scan = None
if _scan is not None and not _scan_matches(_scan):  # pragma: no cover - a stale build
    _scan = None
C_SCANNER = _scan is not None

BLOCK_BYTES = 4 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r"
_MSGSPEC: tuple[Callable[[bytes], object], type[Exception]] | None = None

# The fast path's screens. A raw view checks a line's syntax and escapes but not its numbers' range nor
# its depth. In the block's image under _NUMBER_IMAGE (digits -> "0", e/E -> "e", "+"/"-" deleted, any
# other byte -> " "), a number the worker's decoder may refuse shows as "0e000" (a digit, then an
# exponent of 3 or more digits) or as a run of 200 "0"s: an integer of more than 4300 digits, or a float
# reaching 1e308, which with an exponent of at most 2 digits (<= 99) needs an integer part of >= 210
# digits. Strings can look like that too (hex ids often hold "0e000"): that only costs the exact check.
# A line nested more than MAX_NESTING levels has more than 2 * MAX_NESTING bytes.
_NUMBER_IMAGE = bytes(48 if 48 <= c <= 57 else 101 if c in b"eE" else 32 for c in range(256))
_NUMBER_SHAPES = (b"0e000", b"0" * 200)


def _msgspec() -> tuple[Callable[[bytes], object], type[Exception]]:
    """Returns (decode a line to a raw view, msgspec.DecodeError); imported on first use (~20 ms),
    which with the C scanner is only for a line it refused."""
    global _MSGSPEC
    if _MSGSPEC is None:
        import msgspec

        _MSGSPEC = (msgspec.json.Decoder(msgspec.Raw).decode, msgspec.DecodeError)
    return _MSGSPEC


def oversize_reason(length: int, max_record: int) -> str:
    """Returns the reject reason of a line of ``length`` bytes (terminator excluded) over the limit."""
    return f"record larger than max_record_bytes ({max_record}): the line is {length} bytes; skipped"


def _all_records(buf: bytes, lines: list[bytes], longest: int) -> bool:
    """Returns whether every line of ``lines`` (each one JSON value by msgspec's raw view; ``buf``
    holds them and maybe more; none longer than ``longest``) is a valid record, i.e. also within the
    number range and the nesting limit. Exact."""
    image = buf.translate(_NUMBER_IMAGE, b"+-")
    if any(shape in image for shape in _NUMBER_SHAPES):
        try:  # decode every line as the worker does: ~4x the raw view's cost, but all in C
            deque(map(record_decoder(), lines), maxlen=0)
        except (_msgspec()[1], RecursionError):
            return False
    if longest > 2 * MAX_NESTING:
        return not any(nests_deeper_than_limit(line) for line in lines if len(line) > 2 * MAX_NESTING)
    return True


def _fast_block(
    buf: bytes, end: int, src: int, off: int, line: int, max_record: int, validate: bool = True
) -> Run | None:
    """Returns the block ``buf[:end]`` as one Run if every line is a valid record, else None (use the
    slow path). ``buf`` may go on past ``end`` with the start of the next line (no newline): it is
    never copied to cut that off.

    ``validate=False`` skips the UTF-8 and JSON checks: only for a block a worker has found clean.
    """
    if validate and not buf.isascii():  # the whole buffer: a superset, and one C call
        try:
            str(memoryview(buf)[:end], "utf-8")
        except UnicodeDecodeError:
            return None
    cr = False
    if buf.find(b"\r", 0, end) >= 0:
        block = buf[:end]  # a copy, but CRLF input is rare
        newlines = block.count(b"\n")
        # Uniform CRLF line ends and no other CR: drop the CRs so batch lines end in "\n" only.
        if block.count(b"\r\n") != newlines or block.count(b"\r") != newlines:
            return None
        buf = block.replace(b"\r\n", b"\n")
        end = len(buf)
        cr = True
    lines = buf.split(b"\n")
    lines.pop()  # b"" after the block's last newline, or the incomplete line after `end`
    longest = max(map(len, lines), default=0) if validate or max_record < end else 0
    if longest > max_record:
        return None
    if not validate:
        return Run(src, lines, line, off, cr, blob=buf, exact=not cr)
    raw_decode, decode_error = _msgspec()
    try:
        # Raises on the first blank or invalid line; consumes the iterator in C.
        deque(map(raw_decode, lines), maxlen=0)
    except (decode_error, RecursionError):  # RecursionError: nested ~1000 levels, over the limit
        return None
    if not _all_records(buf, lines, longest):  # past `end` in buf: the next line's start (a false alarm)
        return None
    return Run(src, lines, line, off, cr, blob=buf, exact=not cr)


def _slow_block(block: bytes, src: int, off: int, line: int, max_record: int) -> list[Event]:
    """Returns the events of a block that holds at least one blank, bad or oversized line."""
    events: list[Event] = []
    run: Run | None = None
    blanks = 0
    pos = 0
    for raw in block.split(b"\n")[:-1]:
        cr = raw.endswith(b"\r")
        record = raw[:-1] if cr else raw
        if not record.strip(_JSON_WHITESPACE):
            blanks += 1
            run = None
        else:
            if blanks:
                events.append(Blank(src, blanks))
                blanks = 0
            if len(record) > max_record:
                events.append(Reject(src, line, oversize_reason(len(raw), max_record), excerpt(raw)))
                run = None
                pos += len(raw) + 1
                line += 1
                continue
            problem = record_problem(record)
            if problem is None:
                exact = not cr
                if b"\r" in record:
                    # A CR outside a string is JSON whitespace, but a worker reading lines in text mode
                    # would split there; a space keeps the value and the line intact.
                    record = record.replace(b"\r", b" ")
                    exact = False
                if run is None or run.cr != cr or run.exact != exact:
                    run = Run(src, [], line, off + pos, cr, exact=exact)
                    events.append(run)
                run.lines.append(record)
            else:
                events.append(Reject(src, line, problem, excerpt(record)))
                run = None
        pos += len(raw) + 1
        line += 1
    if blanks:
        events.append(Blank(src, blanks))
    return events


def block_is_clean(path: str, off: int, length: int, max_record: int) -> bool:
    """Returns whether the ``length`` bytes at ``off`` in ``path`` take the fast path (every line a record).

    Runs in a worker process; keeps one descriptor per path open for the worker's life. False when
    the file is shorter than expected (then the parser examines the block itself). Pure apart from
    that cache; raises OSError when the file cannot be read.
    """
    fd = _worker_fds.get(path)
    if fd is None:
        fd = _worker_fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    block = os.pread(fd, length, off)
    return len(block) == length and _fast_block(block, length, 0, off, 1, max_record) is not None


_worker_fds: dict[str, int] = {}


class PendingVerdict(Protocol):
    def result(self) -> bool: ...


BlockVerdicts = Callable[[int, int], PendingVerdict]
"""``verdicts(offset, length)``: the pending ``block_is_clean`` of that byte range of the input."""


def scan_block(
    buf: bytes,
    end: int,
    src: int,
    off: int,
    line: int,
    max_record: int,
    clean: bool | None = None,
    c_scan: bool = True,
) -> tuple[list[Event], int]:
    """Classify every line of the block ``buf[:end]`` (complete lines, ending in "\\n") starting at
    ``line``/``off``; what follows ``end`` in ``buf`` is ignored.

    ``clean``: a worker's verdict on these same bytes (None: none; validate here).
    ``c_scan``: False to use the pure-Python path even where the C scanner is built.
    Returns: (events in input order, number of lines). Pure function of its arguments.
    """
    if c_scan and clean is None and _scan is not None:
        first = _prescan(buf, end, max_record)
        if first is not None:
            return _c_block(buf, end, src, off, line, max_record, first)
    run = None
    if clean is not False:
        run = _fast_block(buf, end, src, off, line, max_record, validate=clean is None)
    if run is not None:
        return ([run] if run.lines else []), len(run.lines)
    block = buf[:end] if end < len(buf) else buf
    return _slow_block(block, src, off, line, max_record), block.count(b"\n")


def _prescan(buf: bytes, end: int, max_record: int) -> tuple[int, int] | None:
    """The part of ``_c_block`` that depends on the block alone (run in a scan thread: the C scanner
    releases the GIL). Returns the first ``scan_jsonl`` result, or None for a block with a CR (the
    pure-Python path takes those)."""
    assert _scan is not None
    if buf.find(b"\r", 0, end) >= 0:
        return None
    return _scan.scan_jsonl(buf, 0, end, max_record)


def _c_block(
    buf: bytes,
    end: int,
    src: int,
    off: int,
    line: int,
    max_record: int,
    first_scan: tuple[int, int],
) -> tuple[list[Event], int]:
    """``scan_block`` with the C scanner, for a block without carriage returns: the clean stretches
    become block Runs (no per-line objects at all), and only a line the scanner refuses is examined by
    the Python rules (``_slow_block``, ``record_problem``), which give the verdict, the reject reason
    or the blank count.
    The events are those of the pure-Python path, cut differently into Runs (the batches do not depend
    on how records are grouped into Runs). ``first_scan``: ``_prescan``'s result for this block."""
    assert _scan is not None
    events: list[Event] = []
    first, pos = line, 0
    bad, n = first_scan
    while True:
        stop = end if bad < 0 else bad
        if n:
            events.append(Run(src, None, line, off + pos, blob=buf, exact=True, start=pos, end=stop, count=n))
            line += n
        if bad < 0:
            break
        nl = buf.index(b"\n", bad, end) + 1
        events.extend(_slow_block(buf[bad:nl], src, off + bad, line, max_record))
        line += 1
        pos = nl
        if pos >= end:
            break
        bad, n = _scan.scan_jsonl(buf, pos, end, max_record)
    return events, line - first


def read_jsonl(
    stream: ByteStream,
    src: int,
    start_off: int,
    start_line: int,
    max_record: int,
    block_bytes: int | None = None,
    verdicts: BlockVerdicts | None = None,
    lookahead: int = 4,
    threads: int = 0,
) -> Iterator[list[Event]]:
    """Yield the events of a JSON Lines stream, block by block, from ``start_off``/``start_line``.

    Memory is bounded by ``block_bytes + max_record_bytes`` (plus ``lookahead`` blocks with
    ``verdicts``): a line longer than ``max_record`` is rejected and skipped while reading, never held
    whole. ``verdicts`` (uncompressed input only: offsets are file offsets) validates blocks in
    workers; the events are the same with or without it. ``threads`` (with the C scanner, without
    ``verdicts``): threads that scan the next blocks while this one is handed on; same events.

    Raises: InputError for unreadable/corrupt compressed input; OSError from a worker.
    """
    pieces = _pieces(stream, start_off, max_record, block_bytes or BLOCK_BYTES)
    line = start_line
    if verdicts is None and threads and _scan is not None:
        yield from _read_threaded(pieces, src, start_line, max_record, threads)
        return
    if verdicts is None:
        for buf, end, off, oversize in pieces:
            if oversize is None:
                events, nlines = scan_block(buf, end, src, off, line, max_record)
                line += nlines
                yield events
            else:
                yield [Reject(src, line, oversize_reason(oversize, max_record), excerpt(buf))]
                line += 1
        return
    ahead: deque[tuple[bytes, int, int, int | None, PendingVerdict | None]] = deque()
    while True:
        piece = next(pieces, None)
        if piece is not None:
            buf, end, off, oversize = piece
            ahead.append((buf, end, off, oversize, verdicts(off, end) if oversize is None else None))
        if not ahead or (piece is not None and len(ahead) < lookahead):
            if piece is None:
                return
            continue
        buf, end, off, oversize, verdict = ahead.popleft()
        if verdict is None:
            yield [Reject(src, line, oversize_reason(oversize or 0, max_record), excerpt(buf))]
            line += 1
            continue
        events, nlines = scan_block(buf, end, src, off, line, max_record, clean=verdict.result())
        line += nlines
        yield events


def _read_threaded(
    pieces: Iterator[tuple[bytes, int, int, int | None]], src: int, line: int, max_record: int, threads: int
) -> Iterator[list[Event]]:
    """``read_jsonl``'s loop with ``threads`` scan threads running ``_prescan`` on the blocks ahead (at
    most ``threads`` + 1 blocks in memory); the events are made here, in order."""
    from concurrent.futures import Future, ThreadPoolExecutor  # ~20 ms of imports: only for big inputs

    ahead: deque[tuple[bytes, int, int, int | None, Future[tuple[int, int] | None] | None]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="slurmctl-scan") as pool:
        while True:
            piece = next(pieces, None)
            if piece is not None:
                buf, end, off, oversize = piece
                job = pool.submit(_prescan, buf, end, max_record) if oversize is None else None
                ahead.append((buf, end, off, oversize, job))
                if len(ahead) <= threads:
                    continue
            if not ahead:
                return
            buf, end, off, oversize, job = ahead.popleft()
            if job is None:
                yield [Reject(src, line, oversize_reason(oversize or 0, max_record), excerpt(buf))]
                line += 1
                continue
            first = job.result()
            if first is None:
                events, nlines = scan_block(buf, end, src, off, line, max_record, clean=None, c_scan=False)
            else:
                events, nlines = _c_block(buf, end, src, off, line, max_record, first)
            line += nlines
            yield events


def _pieces(
    stream: ByteStream, start_off: int, max_record: int, block_bytes: int
) -> Iterator[tuple[bytes, int, int, int | None]]:
    """Yield the stream cut at newlines: (buffer, end, offset, None) for a block of complete lines
    ``buffer[:end]``, or for a line over ``max_record``: (its first bytes, their length, its offset,
    its length without the newline).

    A buffer is yielded as read, not copied: what follows ``end`` (the start of the next line) is
    ignored by the reader. From a seekable (uncompressed) file that start is read again with the next
    block instead of being copied in front of it: two copies of every block fewer.
    """
    off = start_off
    stream.skip_to(start_off)
    carry = b""
    first = start_off == 0
    rewind = stream.input.compression is None
    while True:
        chunk = stream.read(block_bytes)
        if first:
            first = False
            if chunk.startswith(_UTF8_BOM):  # written by some Windows tools; not part of the first record
                chunk = chunk[len(_UTF8_BOM) :]
                off += len(_UTF8_BOM)
        if not chunk:
            if carry:  # last line without a final newline
                yield carry + b"\n", len(carry) + 1, off, None
            return
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"\n") + 1
        if cut:
            yield buf, cut, off, None
            off += cut
            tail = len(buf) - cut
            if rewind and 0 < tail <= len(chunk):
                stream.rewind(tail)
                carry = b""
            else:
                carry = buf[cut:]
        else:
            carry = buf
        # +1: a CR before the newline is not part of the record. Keeping at least EXCERPT_BYTES makes the
        # excerpt the same as when the line is rejected inside a block (resumed runs cut blocks elsewhere).
        if len(carry) > max(max_record + 1, EXCERPT_BYTES):
            head = carry[:EXCERPT_BYTES]
            skipped, carry = _skip_rest_of_line(stream, len(carry), block_bytes)
            yield head, len(head), off, skipped
            off += skipped + (1 if carry is not None else 0)
            if carry is None:  # the oversized line ran to the end of the file
                return


def _skip_rest_of_line(stream: ByteStream, seen: int, block_bytes: int) -> tuple[int, bytes | None]:
    """Drop bytes up to the next newline.

    Returns: (length of the whole line without its newline, the bytes after the newline), or
        (length, None) when the file ended first.
    """
    skipped = seen
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            return skipped, None
        nl = chunk.find(b"\n")
        if nl >= 0:
            return skipped + nl, chunk[nl + 1 :]
        skipped += len(chunk)
