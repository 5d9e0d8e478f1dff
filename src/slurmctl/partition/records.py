"""What the format readers hand to the batcher: runs of accepted records, rejects and blank lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

EXCERPT_CHARS = 200
EXCERPT_BYTES = 4 * EXCERPT_CHARS  # enough bytes for 200 characters of UTF-8


def excerpt(raw: bytes) -> str:
    """Returns at most 200 characters of ``raw`` for a rejects entry; undecodable bytes become ``\\xNN``."""
    return raw[:EXCERPT_BYTES].decode("utf-8", "backslashreplace")[:EXCERPT_CHARS]


@dataclass(eq=False)
class Run:
    """Accepted records that are contiguous in one input file, in input order.

    ``lines`` hold each record's JSON text without a line terminator. Positions are kept cheaply:
    by default record ``k`` sits on line ``first_line + k`` and the input offset after it is
    ``base_off`` + the normalised bytes consumed + one byte per record when every line ended in CRLF.
    Readers whose records are not one-per-line (CSV with quoted newlines, Parquet rows) give the
    explicit sequences instead.
    """

    source: int  # index of the input file
    lines: list[bytes] | None  # None: a clean block, whose records are the lines of `blob[start:end]`
    first_line: int
    base_off: int  # input offset (decompressed bytes, or row for Parquet) of the first record
    cr: bool = False  # every record's line ended in "\r\n" (the "\r" is not part of `lines`)
    starts: Sequence[int] | None = None  # line of each record
    nexts: Sequence[int] | None = None  # line after each record
    ends: Sequence[int] | None = None  # input offset after each record
    consumed_norm: int = field(default=0)  # bytes of `lines` (+ "\n" each) handed to batches so far
    # A buffer whose bytes from `start` are b"\n".join(lines) + b"\n" when the reader has it already
    # (a clean block; it may go on with the next line's start): batches are written as zero-copy
    # slices of it instead of joining the lines again. These bytes are the input's own bytes from
    # `base_off` unless `cr` (then the CRs were dropped) or the input is compressed.
    blob: bytes | None = None
    # Every record is its input line's own bytes, the lines adjacent ("\n" ends, no CR anywhere), so
    # the run is the input's bytes from `base_off` (in the decompressed stream for compressed input).
    # A per-record property: which batches can be references does not depend on how runs are cut.
    exact: bool = False
    start: int = 0  # where the run's bytes begin in `blob`
    end: int = 0  # with lines=None: where they end (just after the last record's "\n")
    count: int = 0  # with lines=None: the number of records

    @property
    def records(self) -> int:
        """Returns the number of records in the run."""
        return self.count if self.lines is None else len(self.lines)

    def line_of(self, k: int) -> int:
        """Returns the 1-based line (row) of record ``k``."""
        return self.starts[k] if self.starts is not None else self.first_line + k

    def cursor_after(self, k: int) -> tuple[int, int]:
        """Returns (input offset, next line) just after record ``k``, given records 0..k are consumed."""
        if self.ends is not None and self.nexts is not None:
            return self.ends[k], self.nexts[k]
        off = self.base_off + self.consumed_norm + ((k + 1) if self.cr else 0)
        return off, self.first_line + k + 1


@dataclass(frozen=True)
class Reject:
    """A record that was not accepted: where it is and why."""

    source: int
    line: int
    reason: str
    excerpt: str


@dataclass(frozen=True)
class Blank:
    """``count`` blank (whitespace-only) lines, skipped by design."""

    source: int
    count: int


Event = Run | Reject | Blank
