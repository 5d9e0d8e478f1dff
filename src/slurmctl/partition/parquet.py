"""Reading Parquet input (needs the ``parquet`` extra): each row becomes a JSON object.

Types map as msgspec encodes them: timestamps/dates → ISO 8601 strings, decimals → strings,
binary → base64 strings, NaN/inf → null, lists/structs → arrays/objects. The "line" of a
Parquet record is its 1-based row number in the file.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from slurmctl.errors import InputError

from .inputs import InputFile
from .records import Event, Reject, Run, excerpt

_BATCH_ROWS = 8192
_encode = msgspec.json.encode


def read_parquet(inp: InputFile, src: int, start_row: int) -> Iterator[tuple[list[Event], int]]:
    """Yield (events, approximate bytes of the file consumed) from row ``start_row`` (0-based) on.

    Raises: InputError when pyarrow is missing or the file is not readable Parquet.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(
            f"{inp.path}: reading Parquet needs pyarrow",
            hint="pip install 'slurmctl[parquet]'",
        ) from exc
    try:
        pf = pq.ParquetFile(inp.path)
        total = pf.metadata.num_rows
        row = 0
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            if row + n <= start_row:
                row += n
                continue
            for rb in pf.iter_batches(batch_size=_BATCH_ROWS, row_groups=[rg]):
                records = rb.to_pylist()
                skip = max(0, start_row - row)
                events = _events(records[skip:], src, row + skip)
                row += len(records)
                yield events, inp.size_bytes * row // max(total, 1)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise InputError(
            f"{inp.path}: cannot read it as Parquet: {exc}",
            hint="check that the file is complete and really Parquet",
        ) from exc


def _events(records: list[dict[str, object]], src: int, row0: int) -> list[Event]:
    events: list[Event] = []
    run: Run | None = None
    for k, record in enumerate(records):
        row = row0 + k
        try:
            data = _encode(record)
        except (TypeError, ValueError, UnicodeEncodeError, OverflowError) as exc:
            events.append(
                Reject(src, row + 1, f"row cannot be written as JSON: {exc}", excerpt(repr(record).encode()))
            )
            run = None
            continue
        if run is None:
            run = Run(
                src,
                [],
                row + 1,
                row,
                starts=None,
                nexts=range(row + 2, row + 2 + len(records)),
                ends=range(row + 1, row + 1 + len(records)),
            )
            events.append(run)
        run.lines.append(data)
    return events
