"""Reading CSV/TSV input: each row becomes a JSON object keyed by the header; values stay strings."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from slurmctl.errors import InputError

from .inputs import ByteStream
from .jsonl import oversize_reason
from .model import CsvOptions
from .records import EXCERPT_BYTES, Blank, Event, Reject, Run, excerpt

_CHUNK_ROWS = 8192
_encode = msgspec.json.encode


@dataclass
class _Line:
    data: bytes | None  # the line with its terminator; None when it was too long and skipped
    length: int
    head: bytes = b""  # the first bytes of a skipped line, for the reject's excerpt


class _LineReader:
    """Physical lines of a stream with a bounded buffer; tracks the offset and line number."""

    def __init__(self, stream: ByteStream, max_record: int) -> None:
        self.stream = stream
        self.max_record = max_record
        self.buf = b""
        self.pos = 0  # decompressed offset of the start of the next line
        self.line = 1  # number of the next line
        self.eof = False
        self.first = True

    def readline(self) -> _Line | None:
        """Returns the next line, or None at the end of the stream."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                data, self.buf = self.buf[: nl + 1], self.buf[nl + 1 :]
                return self._take(_Line(data, nl + 1))
            if self.eof:
                if not self.buf:
                    return None
                data, self.buf = self.buf, b""
                return self._take(_Line(data, len(data)))
            if len(self.buf) > max(self.max_record + 2, EXCERPT_BYTES):
                return self._take(self._skip())
            chunk = self.stream.read(1 << 20)
            if self.first:
                self.first = False
                if chunk.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (Excel writes one)
                    chunk = chunk[3:]
                    self.pos += 3
            if chunk:
                self.buf += chunk
            else:
                self.eof = True

    def _skip(self) -> _Line:
        head, length = self.buf[:EXCERPT_BYTES], len(self.buf)
        self.buf = b""
        while True:
            chunk = self.stream.read(1 << 20)
            if not chunk:
                self.eof = True
                return _Line(None, length, head)
            nl = chunk.find(b"\n")
            if nl >= 0:
                self.buf = chunk[nl + 1 :]
                return _Line(None, length + nl + 1, head)
            length += len(chunk)

    def _take(self, line: _Line) -> _Line:
        self.pos += line.length
        self.line += 1
        return line


def read_csv(
    stream: ByteStream, src: int, start_off: int, start_line: int, max_record: int, options: CsvOptions
) -> Iterator[list[Event]]:
    """Yield the events of a CSV/TSV stream from ``start_off``/``start_line`` (the header is always
    read from the top of the file).

    Raises: InputError for a bad header or unreadable/corrupt input.
    """
    path = stream.input.path
    reader = _LineReader(stream, max_record)
    oversize: list[_Line] = []
    row_lines: list[bytes] = []

    def text_lines() -> Iterator[str]:
        while True:
            ln = reader.readline()
            if ln is None:
                return
            if ln.data is not None and len(ln.data.rstrip(b"\n")) > max_record + (ln.data.endswith(b"\r\n")):
                ln = _Line(
                    None, ln.length, ln.data[:EXCERPT_BYTES]
                )  # same verdict as a line too long to buffer
            if ln.data is None:
                oversize.append(ln)
                yield "\n"  # an empty line for the csv module; the row is then rejected
            else:
                if len(row_lines) < 2:
                    row_lines.append(ln.data)
                yield ln.data.decode("utf-8", "surrogateescape")

    delimiter = options.delimiter or stream.input.delimiter
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(max_record, 1))  # bounds memory on an unbalanced quote too
    try:
        rows = csv.reader(text_lines(), delimiter=delimiter, quotechar=options.quotechar)
        header: list[str] | None = None
        if options.header is True:
            header = _read_header(rows, reader, path, row_lines)
        elif options.header is not False:
            header = list(options.header)  # type: ignore[arg-type]
        if start_off > reader.pos:
            while reader.pos < start_off and reader.readline() is not None:
                pass
            reader.line = start_line
        yield from _rows(rows, reader, src, header, oversize, row_lines, max_record)
    finally:
        csv.field_size_limit(old_limit)


def _read_header(
    rows: Iterator[list[str]], reader: _LineReader, path: object, row_lines: list[bytes]
) -> list[str]:
    while True:
        row_lines.clear()
        try:
            row = next(rows, None)
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line - 1}: cannot read the CSV header: {exc}") from exc
        if row is None:
            return []  # an empty file: no header, no rows
        if row:
            break
    if any("\udc80" <= ch <= "\udcff" for name in row for ch in name):
        raise InputError(f"{path}:1: the CSV header is not valid UTF-8", hint="save the file as UTF-8")
    dupes = sorted({n for n in row if row.count(n) > 1})
    if dupes:
        raise InputError(
            f"{path}:{reader.line - 1}: the CSV header repeats column name(s) {', '.join(map(repr, dupes))}",
            hint="rename the columns so that each is unique",
        )
    return row


def _rows(
    rows: Iterator[list[str]],
    reader: _LineReader,
    src: int,
    header: list[str] | None,
    oversize: list[_Line],
    row_lines: list[bytes],
    max_record: int,
) -> Iterator[list[Event]]:
    events: list[Event] = []
    run: Run | None = None
    blanks = 0
    while True:
        start = reader.line
        row_lines.clear()
        try:
            row = next(rows, None)
        except csv.Error as exc:
            problem: str | None = f"not valid CSV: {exc}"
            row = []
        else:
            if row is None:
                break
            problem = None
        if oversize:
            skipped = oversize.pop()
            problem = oversize_reason(skipped.length - 1, max_record)
            raw = skipped.head
            oversize.clear()
        else:
            raw = b"".join(row_lines).rstrip(b"\r\n")
        if problem is None and not row:
            blanks += 1
            run = None
            continue
        if blanks:
            events.append(Blank(src, blanks))
            blanks = 0
        line_bytes: bytes | None = None
        if problem is None:
            if header is None:
                header = [f"col{i + 1}" for i in range(len(row))]
            if len(row) != len(header):
                problem = f"expected {len(header)} fields (as in the header), found {len(row)}"
            else:
                try:
                    line_bytes = _encode(dict(zip(header, row, strict=True)))
                except UnicodeEncodeError:
                    problem = "not valid UTF-8"
        if line_bytes is None:
            events.append(Reject(src, start, problem or "unreadable row", excerpt(raw)))
            run = None
        else:
            if run is None:
                run = Run(src, [], start, 0, starts=[], nexts=[], ends=[])
                events.append(run)
            run.lines.append(line_bytes)
            run.starts.append(start)  # type: ignore[union-attr]
            run.nexts.append(reader.line)  # type: ignore[union-attr]
            run.ends.append(reader.pos)  # type: ignore[union-attr]
        if len(events) > 64 or (run is not None and len(run.lines) >= _CHUNK_ROWS):
            yield events
            events, run = [], None
    if blanks:
        events.append(Blank(src, blanks))
    if events:
        yield events
