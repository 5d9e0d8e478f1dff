"""The four output formats, each written as a stream: rows in, a file out, with bounded memory.

Per format three operations: ``write_rows`` (rows of a merge node's inputs, already unified to
``schema``), ``merge_files`` (the outputs of the level below, each checked against its row count,
conformed to ``schema``: a missing column is null, an int column of a float column is promoted)
and ``read_rows`` (typed rows back, for user reductions). Every writer writes the path it is given;
the caller makes it durable (temp file, fsync, rename).

* Parquet (pyarrow): zstd, row groups of at most ``ROW_GROUP`` rows; inputs are read batch by batch
  (``iter_batches``) and written with one ``ParquetWriter``.
* SQLite: table ``results`` with declared column types; merging ATTACHes each input and copies it
  with one ``INSERT … SELECT``. The final output has an index on ``_item_id``.
* CSV: a header, then one line per row (null is the empty cell, objects and lists JSON text).
* JSONL: the rows as the tasks wrote them, byte for byte; merging concatenates the inputs.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from slurmctl.aggregate.schema import Schema
from slurmctl.errors import ResultsError, SlurmctlError

FORMATS = ("parquet", "sqlite", "csv", "jsonl")
SUFFIX = {"parquet": ".parquet", "sqlite": ".sqlite", "csv": ".csv", "jsonl": ".jsonl"}
ROW_GROUP = 65_536  # rows per Parquet row group, per Arrow batch read, per SQLite executemany
Child = tuple[str, Path, Schema, int]  # (name for messages, file, its schema, its rows)


def _count_error(name: str, found: int, expected: int) -> ResultsError:
    return ResultsError(
        f"{name}: {found} rows in the file, its manifest says {expected}",
        hint="the file changed after its manifest was written; `slurmctl results JOB` redoes the node",
    )


def _json_text(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list)) else v


# --- Parquet -------------------------------------------------------------------------------------


@functools.cache
def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SlurmctlError(
            "Parquet output needs pyarrow", hint="pip install 'slurmctl[parquet]' or use -f jsonl/csv/sqlite"
        ) from exc
    return pa, pq


@functools.cache
def have_arrow() -> bool:
    """Whether pyarrow is installed (the `parquet` extra): the JSON, CSV and SQLite merges use its
    JSON reader when it is, and read rows one by one when it is not."""
    try:
        _pa()
    except SlurmctlError:
        return False
    return True


def arrow_schema(schema: Schema) -> Any:
    pa, _ = _pa()
    types = {
        "null": pa.null(),
        "bool": pa.bool_(),
        "int": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "json": pa.string(),
    }
    return pa.schema([(k, types[c.type]) for k, c in schema.items()])


class _GroupedWriter:
    """A ParquetWriter that writes full row groups of ROW_GROUP rows (the last may be short)."""

    def __init__(self, path: Path, schema: Any) -> None:
        self.pa, pq = _pa()
        self.schema = schema
        self.w = pq.ParquetWriter(str(path), schema, compression="zstd")
        self.buf: list[Any] = []
        self.n = 0

    def add(self, batch: Any) -> None:
        self.buf.append(batch)
        self.n += batch.num_rows
        while self.n >= ROW_GROUP:
            t = self.pa.Table.from_batches(self.buf, self.schema)
            self.w.write_table(t.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
            rest = t.slice(ROW_GROUP)
            self.buf, self.n = rest.to_batches(), rest.num_rows

    def close(self) -> None:
        if self.n:
            self.w.write_table(self.pa.Table.from_batches(self.buf, self.schema), row_group_size=ROW_GROUP)
        self.w.close()


def _parquet_write_rows(path: Path, schema: Schema, rows: Iterable[dict[str, Any]], final: bool) -> None:
    target = arrow_schema(schema)
    w = _GroupedWriter(path, target)
    for batch in _batches_of_rows(rows, schema, target):
        w.add(batch)
    w.close()


CHUNK_BYTES = 8 << 20  # consecutive task results parsed by one call of Arrow's JSON reader
ARROW_JSON_MAX = 64 << 20  # a larger task result is read row by row


def chunks(sizes: list[int]) -> Iterator[range]:
    """Consecutive task results (by their sizes) to parse together: up to CHUNK_BYTES, or one
    result alone up to ARROW_JSON_MAX; a larger one is a chunk of its own that the caller reads
    row by row. Arrow's reader costs ~0.3 ms a call, more than a 100-row result takes to parse."""
    i = 0
    while i < len(sizes):
        j, total = i, 0
        while j < len(sizes) and (j == i or total + sizes[j] <= CHUNK_BYTES):
            total += sizes[j]
            j += 1
        yield range(i, j)
        i = j


def read_json_arrow(data: bytes, schema: Schema) -> Any:
    """Rows (JSON lines) as an Arrow table of exactly ``schema``'s columns and types, or None when
    they do not fit it (another type, a column it lacks, a JSON column, more than ARROW_JSON_MAX
    bytes): then the caller reads them row by row."""
    pa, _ = _pa()
    import pyarrow.json as pj

    if len(data) > ARROW_JSON_MAX or any(c.type == "json" for c in schema.values()):
        return None
    opts = pj.ParseOptions(explicit_schema=arrow_schema(schema), unexpected_field_behavior="error")
    try:
        # one thread: a merge runs one node per process, and threads cost more than they save here
        return pj.read_json(
            io.BytesIO(data), read_options=pj.ReadOptions(use_threads=False), parse_options=opts
        )
    except pa.ArrowInvalid:
        return None


def write_tasks_parquet(path: Path, schema: Schema, files: list[Path], final: bool) -> None:
    """Level 0 into Parquet: chunks of task results parsed by Arrow, or row by row when a chunk
    does not fit ``schema``."""
    target = arrow_schema(schema)
    w = _GroupedWriter(path, target)
    for chunk in chunks([f.stat().st_size for f in files]):
        table = read_json_arrow(b"".join(files[k].read_bytes() for k in chunk), schema)
        if table is None:
            for k in chunk:
                for batch in _batches_of_rows(_json_rows(files[k]), schema, target):
                    w.add(batch)
            continue
        for batch in table.to_batches():
            w.add(_conform(batch, target))
    w.close()


def _json_rows(path: Path) -> Iterator[dict[str, Any]]:
    decode = msgspec.json.Decoder().decode
    with open(path, "rb") as f:
        for line in f:
            yield decode(line)


def _batches_of_rows(rows: Iterable[dict[str, Any]], schema: Schema, target: Any) -> Iterator[Any]:
    pa, _ = _pa()
    json_cols = [k for k, c in schema.items() if c.type == "json"]
    buf: list[dict[str, Any]] = []
    for r in rows:
        if json_cols:
            r = {**r, **{k: _json_text(r.get(k)) for k in json_cols}}
        buf.append(r)
        if len(buf) == ROW_GROUP:
            yield pa.RecordBatch.from_pylist(buf, schema=target)
            buf = []
    if buf:
        yield pa.RecordBatch.from_pylist(buf, schema=target)


def _conform(batch: Any, target: Any) -> Any:
    pa, _ = _pa()
    if batch.schema.equals(target):
        return batch
    names = batch.schema.names
    arrays = []
    for field in target:
        if field.name in names:
            a = batch.column(field.name)
            arrays.append(a if a.type == field.type else a.cast(field.type))
        else:
            arrays.append(pa.nulls(batch.num_rows, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def _parquet_merge(path: Path, schema: Schema, children: list[Child], final: bool) -> None:
    _, pq = _pa()
    target = arrow_schema(schema)
    w = _GroupedWriter(path, target)
    for name, child, _, rows in children:
        pf = pq.ParquetFile(str(child))
        n = 0
        for b in pf.iter_batches(batch_size=ROW_GROUP):
            n += b.num_rows
            w.add(_conform(b, target))
        if n != rows or pf.metadata.num_rows != rows:
            raise _count_error(name, n, rows)
    w.close()


def _parquet_read(path: Path, schema: Schema) -> Iterator[dict[str, Any]]:
    _, pq = _pa()
    json_cols = [k for k, c in schema.items() if c.type == "json"]
    for b in pq.ParquetFile(str(path)).iter_batches(batch_size=ROW_GROUP):
        for r in b.to_pylist():
            for k in json_cols:
                if r[k] is not None:
                    r[k] = json.loads(r[k])
            yield r


# --- SQLite --------------------------------------------------------------------------------------

_DECL = {"null": "", "bool": "INTEGER", "int": "INTEGER", "float": "REAL", "string": "TEXT", "json": "TEXT"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_open(path: Path, schema: Schema) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # a new file, renamed into place only when complete
    db.execute("PRAGMA synchronous=OFF")  # the caller fsyncs the finished file
    cols = ", ".join(f"{_q(k)} {_DECL[c.type]}".rstrip() for k, c in schema.items())
    db.execute(f"CREATE TABLE results ({cols})")
    return db


def _sqlite_finish(db: sqlite3.Connection, schema: Schema, final: bool) -> None:
    if final and "_item_id" in schema:
        db.execute("CREATE INDEX results_item ON results (_item_id)")
    db.close()


def _sqlite_write_rows(path: Path, schema: Schema, rows: Iterable[dict[str, Any]], final: bool) -> None:
    cols = list(schema)
    with contextlib.closing(_sqlite_open(path, schema)) as db:
        insert = f"INSERT INTO results VALUES ({', '.join('?' for _ in cols)})"
        db.execute("BEGIN")
        buf: list[tuple[Any, ...]] = []
        for r in rows:
            buf.append(tuple(_json_text(r.get(c)) for c in cols))
            if len(buf) == ROW_GROUP:
                db.executemany(insert, buf)
                buf = []
        db.executemany(insert, buf)
        db.execute("COMMIT")
        _sqlite_finish(db, schema, final)


def _sqlite_merge(path: Path, schema: Schema, children: list[Child], final: bool) -> None:
    with contextlib.closing(_sqlite_open(path, schema)) as db:
        for name, child, cschema, rows in children:
            db.execute("ATTACH DATABASE ? AS c", (str(child),))
            select = ", ".join(_q(k) if k in cschema else "NULL" for k in schema)
            db.execute("BEGIN")
            n = db.execute(f"INSERT INTO results SELECT {select} FROM c.results ORDER BY rowid").rowcount
            db.execute("COMMIT")
            db.execute("DETACH DATABASE c")
            if n != rows:
                raise _count_error(name, n, rows)
        _sqlite_finish(db, schema, final)


def _sqlite_read(path: Path, schema: Schema) -> Iterator[dict[str, Any]]:
    cols = list(schema)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        cur = db.execute(f"SELECT {', '.join(_q(c) for c in cols)} FROM results ORDER BY rowid")
        while batch := cur.fetchmany(ROW_GROUP):
            for values in batch:
                yield {c: _typed(schema[c].type, v) for c, v in zip(cols, values, strict=True)}


def _typed(t: str, v: Any) -> Any:
    if v is None:
        return None
    if t == "bool":
        return bool(v)
    if t == "json":
        return json.loads(v)
    return v


# --- CSV -----------------------------------------------------------------------------------------


def _csv_write_rows(path: Path, schema: Schema, rows: Iterable[dict[str, Any]], final: bool) -> None:
    cols = list(schema)
    floats = {k for k, c in schema.items() if c.type == "float"}
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            out = [_json_text(r.get(c)) for c in cols]
            if floats:
                out = [
                    float(v) if c in floats and type(v) is int else v for c, v in zip(cols, out, strict=True)
                ]
            w.writerow(out)


_FROM_TEXT = {
    "null": lambda s: None,
    "bool": lambda s: s == "True",
    "int": int,
    "float": float,
    "string": str,
    "json": json.loads,
}


def _csv_read(path: Path, schema: Schema) -> Iterator[dict[str, Any]]:
    cols = list(schema)
    conv = [_FROM_TEXT[schema[c].type] for c in cols]
    with open(path, encoding="utf-8", newline="") as f:
        r = csv.reader(f)
        if next(r, None) != cols:
            raise ResultsError(f"{path}: the CSV header is not the columns of its manifest")
        for cells in r:
            yield {c: (None if s == "" else fn(s)) for c, fn, s in zip(cols, conv, cells, strict=True)}


def _counted(name: str, rows: Iterable[dict[str, Any]], expected: int) -> Iterator[dict[str, Any]]:
    n = 0
    for r in rows:
        n += 1
        yield r
    if n != expected:
        raise _count_error(name, n, expected)


def _csv_merge(path: Path, schema: Schema, children: list[Child], final: bool) -> None:
    rows = (r for name, p, s, n in children for r in _counted(name, _csv_read(p, s), n))
    _csv_write_rows(path, schema, rows, final)


# --- JSONL ---------------------------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode


def _jsonl_write_rows(path: Path, schema: Schema, rows: Iterable[Any], final: bool) -> None:
    """``rows``: dicts, or lines (bytes) copied as they are."""
    with open(path, "wb") as f:
        for r in rows:
            f.write(r if isinstance(r, bytes) else _encode(r) + b"\n")


def _jsonl_merge(path: Path, schema: Schema, children: list[Child], final: bool) -> None:
    with open(path, "wb") as f:
        for name, child, _, rows in children:
            n = 0
            with open(child, "rb") as src:
                while chunk := src.read(1 << 20):
                    n += chunk.count(b"\n")
                    f.write(chunk)
            if n != rows:
                raise _count_error(name, n, rows)


def _jsonl_read(path: Path, schema: Schema) -> Iterator[dict[str, Any]]:
    return _json_rows(path)


WRITE_ROWS = {"parquet": _parquet_write_rows, "sqlite": _sqlite_write_rows, "csv": _csv_write_rows}
WRITE_ROWS["jsonl"] = _jsonl_write_rows
MERGE = {"parquet": _parquet_merge, "sqlite": _sqlite_merge, "csv": _csv_merge, "jsonl": _jsonl_merge}
READ = {"parquet": _parquet_read, "sqlite": _sqlite_read, "csv": _csv_read, "jsonl": _jsonl_read}

__all__ = ["FORMATS", "MERGE", "READ", "ROW_GROUP", "SUFFIX", "WRITE_ROWS", "arrow_schema"]
