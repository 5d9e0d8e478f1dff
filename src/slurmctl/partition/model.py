"""The values the partitioner returns and the options it takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "csv", "parquet")


@dataclass(frozen=True)
class BatchInfo:
    """One batch: the file ``<out_dir>/<batch_id>.jsonl``, or a byte range of an input file (a reference
    batch); it holds items ``first_item .. first_item+items-1``."""

    batch_id: str  # "b0000000": zero-padded index, deterministic
    index: int
    first_item: int  # global 0-based sequence number of the batch's first accepted record
    items: int
    bytes: int  # size of the batch file
    sha256: str  # of the batch file
    source: str  # input file the batch's first record came from
    first_line: int  # 1-based line (row for Parquet) of the first record in `source`
    last_line: int  # 1-based line of the last record, in `last_source`
    last_source: str  # input file of the last record (batches may span input files)
    # A reference batch: no batch file; its bytes are the `bytes` bytes at `ref_offset` of the input file
    # `ref_path` (absolute), which the sha256 covers. None for a batch file.
    ref_path: str | None = None
    ref_offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict; ``BatchInfo(**d)`` rebuilds it."""
        return dict(self.__dict__)  # asdict() deep-copies: slow for thousands of batches


@dataclass(frozen=True)
class PartitionSummary:
    """What a partition produced. Equal for a clean run and for any interrupted-and-resumed run."""

    batches: list[BatchInfo]
    total_items: int
    rejected: int
    rejects_path: Path | None  # None when no record was rejected (no rejects file is left behind)
    # per input file: path, format, compression, size_bytes, records, rejected, blank_lines
    inputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CsvOptions:
    """How to read CSV/TSV input.

    delimiter: one character; None means ``,`` for ``.csv`` and a tab for ``.tsv``.
    header: True reads column names from the first row of *each* file; a sequence gives the names
        (every row is data); False names the columns ``col1..colN`` after the first row's width.
    quotechar: the quoting character (RFC 4180 doubling for a literal quote).
    """

    delimiter: str | None = None
    header: bool | Sequence[str] = True
    quotechar: str = '"'

    def fingerprint(self) -> dict[str, Any]:
        """Returns the options as plain JSON, used to recognise a resumable partition."""
        header: bool | list[str] = self.header if isinstance(self.header, bool) else list(self.header)
        return {"delimiter": self.delimiter, "header": header, "quotechar": self.quotechar}
