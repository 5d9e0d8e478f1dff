"""One merge node: verify its inputs, stream them into one output, record what it wrote.

A level-0 node reads task results (JSON lines): each file is read once to check it (sha256 against
its result manifest, row count, every row's ``_item_id`` among its task's items) and to build its
schema, then read again to write the output — never a whole task in memory. A node of a higher
level reads the outputs of the level below, each checked against its node manifest (sha256, rows).
The inputs' schemas are unified (slurmctl.aggregate.schema) before a row is written.

The output is written to a temp file, fsynced and renamed; then the node manifest (rows, sha256,
bytes, schema with per-column null counts and min/max, the inputs' checksums) and last the
``.done`` marker naming the manifest by sha256. A node is *valid* when its marker, manifest and
output agree (``valid``): a re-run skips it; anything else is redone from its inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from slurmctl.aggregate import formats, schema
from slurmctl.aggregate.discover import Source
from slurmctl.errors import ChecksumMismatchError, ObjectNotFoundError, ResultsError
from slurmctl.fsutil import fsync_dir, sha256_file
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

_decode = msgspec.json.Decoder().decode


class NodeManifest(msgspec.Struct, kw_only=True):
    job_id: str
    plan: str  # the plan's fingerprint
    level: int
    index: int
    format: str
    output: str  # object key, or the output path (the root)
    sha256: str
    bytes: int
    rows: int
    columns: list[dict[str, Any]]  # schema.to_json: name, type, task, nulls, min, max
    inputs: list[list[Any]]  # [name, sha256, rows] per input
    retried_rows: dict[str, str]  # item id (text) -> task: rows of items that retry tasks hold
    seconds: float


class NodeDone(msgspec.Struct, kw_only=True):
    manifest_key: str
    manifest_sha256: str


@dataclass
class NodeSpec:
    """What one node needs (picklable: it is what a worker process receives)."""

    job_id: str
    plan: str
    fmt: str
    level: int
    index: int
    sources: list[Source]  # level 0: its task results
    children: range  # higher levels: node indices of level - 1
    retried: list[int]  # sorted ids of items that retry tasks hold (level 0: those of its sources)
    reduce: dict[str, Any] | None
    reduce_path: list[str]
    output_path: str | None  # the root: the output file; else None (the node's object key)

    @property
    def name(self) -> str:
        return f"L{self.level:02d}/n{self.index:06d}"

    @property
    def output_key(self) -> str:
        return keys.aggregate_node(self.job_id, self.level, self.index, formats.SUFFIX[self.fmt])


def manifest_key(job_id: str, level: int, index: int) -> str:
    return keys.aggregate_node(job_id, level, index, ".manifest.json")


def done_key(job_id: str, level: int, index: int) -> str:
    return keys.aggregate_node(job_id, level, index, ".done")


def read_manifest(backend: Backend, job_id: str, level: int, index: int) -> NodeManifest:
    """The node's manifest through its ``.done`` marker. Raises ObjectNotFoundError,
    ChecksumMismatchError, or ResultsError for an unreadable one."""
    objects = backend.objects
    try:
        done = msgspec.json.decode(objects.get(done_key(job_id, level, index)), type=NodeDone)
        return msgspec.json.decode(
            objects.get_verified(done.manifest_key, done.manifest_sha256), type=NodeManifest
        )
    except msgspec.DecodeError as exc:
        raise ResultsError(f"node L{level:02d}/n{index:06d}: unreadable marker or manifest: {exc}") from exc


def valid(backend: Backend, spec: NodeSpec) -> NodeManifest | None:
    """The node's manifest if its marker, manifest and output agree with ``spec``, else None."""
    try:
        m = read_manifest(backend, spec.job_id, spec.level, spec.index)
    except (ObjectNotFoundError, ChecksumMismatchError, ResultsError):
        return None
    if m.plan != spec.plan or m.output != (spec.output_path or spec.output_key):
        return None
    path = Path(spec.output_path) if spec.output_path else backend.objects.local_path(spec.output_key)
    if path is None:
        info = backend.objects.head(spec.output_key)
        return m if info is not None and info.sha256 == m.sha256 else None
    try:
        return m if path.stat().st_size == m.bytes and sha256_file(path) == m.sha256 else None
    except OSError:
        return None


# --- inputs --------------------------------------------------------------------------------------


def _local(backend: Backend, key: str, workdir: Path) -> Path:
    path = backend.objects.local_path(key)
    if path is None:
        path = workdir / key.replace("/", "_")
        backend.objects.get_file(key, path)
    return path


def _check_task(spec: NodeSpec, s: Source, path: Path, retried_rows: dict[str, str]) -> schema.Schema:
    """Pass 1 over a task result: sha256, rows, item ids; returns its schema."""
    lo, hi = s.first_item, s.first_item + s.items
    allowed = frozenset(s.item_ids) if s.item_ids is not None else None
    retried = spec.retried
    obs = schema.Observer(s.task_id)
    h = hashlib.sha256()
    n = 0
    problem: ResultsError | None = None  # reported after the checksum: a damaged file says so
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the with below; only the open is guarded)
    except FileNotFoundError:
        raise ResultsError(
            f"task {s.task_id}: its result {s.data_key} is missing",
            hint=f"remove {keys.done_marker(spec.job_id, s.task_id)} and `slurmctl resubmit {spec.job_id}`",
        ) from None
    with f:
        for line in f:
            h.update(line)
            n += 1
            if problem is not None:
                continue
            try:
                row = _decode(line)
                item = row["_item_id"]
            except (msgspec.DecodeError, KeyError, TypeError):
                row, item = None, None
            if not isinstance(item, int) or (
                item not in allowed if allowed is not None else not lo <= item < hi
            ):
                where = f"{lo}..{hi - 1}" if allowed is None else f"(retry items of {s.task_id})"
                if row is None:
                    where += "; the line is not a JSON object with an _item_id"
                problem = ResultsError(
                    f"task {s.task_id}: row {n} has _item_id {item!r} outside its items {where}"
                )
                continue
            obs.row(row)
            if retried:
                i = bisect_left(retried, item)
                if i < len(retried) and retried[i] == item:
                    other = retried_rows.setdefault(str(item), s.task_id)
                    if other != s.task_id:
                        raise _twice(spec.job_id, item, other, s.task_id)
    actual = h.hexdigest()
    if actual != s.sha256:
        raise ChecksumMismatchError(s.data_key, s.sha256, actual)
    if problem is not None:
        raise problem
    if n != s.rows:
        raise ResultsError(f"task {s.task_id}: {n} rows in the file, manifest says {s.rows}")
    return obs.schema


def _check_chunk_arrow(
    spec: NodeSpec, chunk: list[tuple[Source, bytes]], union: schema.Schema, retried_rows: dict[str, str]
) -> schema.Schema | None:
    """Pass 1 over consecutive task results with Arrow's JSON reader, for results that fit the
    node's schema so far (``union``): each file's sha256 and row count, every ``_item_id`` within
    its task's range, the rows of retried items. Returns the chunk's schema (with stats), or None
    when the rows do not fit ``union`` or a check fails: then ``_check_task`` reads each result
    row by row and names the problem."""
    if not union or not formats.have_arrow() or any(s.item_ids is not None for s, _ in chunk):
        return None
    for s, data in chunk:
        actual = hashlib.sha256(data).hexdigest()
        if actual != s.sha256:
            raise ChecksumMismatchError(s.data_key, s.sha256, actual)
        if data.count(b"\n") != s.rows:
            return None
    table = formats.read_json_arrow(b"".join(data for _, data in chunk), union)
    if table is None or table.num_rows != sum(s.rows for s, _ in chunk):
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = table.column("_item_id")
    if ids.null_count:
        return None
    offsets = [0]
    for s, _ in chunk:
        if s.rows:
            bounds = pc.min_max(ids.slice(offsets[-1], s.rows))
            if bounds["min"].as_py() < s.first_item or bounds["max"].as_py() >= s.first_item + s.items:
                return None
        offsets.append(offsets[-1] + s.rows)
    if spec.retried and table.num_rows:
        mask = pc.is_in(ids, value_set=pa.array(spec.retried, pa.int64()))
        for pos in pc.indices_nonzero(mask).to_pylist():
            item, task = ids[pos].as_py(), chunk[bisect_right(offsets, pos) - 1][0].task_id
            other = retried_rows.setdefault(str(item), task)
            if other != task:
                raise _twice(spec.job_id, item, other, task)
    out: schema.Schema = {}
    for name, c in union.items():
        col = table.column(name)
        values = table.num_rows - col.null_count
        if values == 0:
            continue
        stats = schema.ColumnStats(c.type, c.task, values)
        if c.type in schema.ORDERED:
            mm = pc.min_max(col)
            stats.min, stats.max = mm["min"].as_py(), mm["max"].as_py()
        out[name] = stats
    return out


def _twice(job_id: str, item: int | str, a: str, b: str) -> ResultsError:
    return ResultsError(
        f"job {job_id}: item {item} has rows in tasks {a} and {b}",
        hint="a retry ran an item that had succeeded; its output would appear twice",
    )


def _task_rows(path: Path, raw: bool) -> Iterator[Any]:
    with open(path, "rb") as f:
        if raw:
            yield from f
        else:
            for line in f:
                yield _decode(line)


# --- reduction -----------------------------------------------------------------------------------


def _reduced(spec: NodeSpec, rows: Iterator[dict[str, Any]]) -> tuple[list[dict[str, Any]], schema.Schema]:
    from slurmctl.aggregate.reduce import load_combine, reduce_rows

    assert spec.reduce is not None
    combine = load_combine(spec.reduce["function"], spec.reduce_path)
    out = reduce_rows(rows, spec.reduce["key"], combine)
    obs = schema.Observer(
        spec.name if spec.level else (spec.sources[0].task_id if spec.sources else spec.name)
    )
    for r in out:
        obs.row(r)
    return out, obs.schema


# --- the node ------------------------------------------------------------------------------------


def run(backend: Backend, spec: NodeSpec, workdir: Path) -> NodeManifest:
    """Merge the node's inputs into its output and publish its manifest and marker."""
    started = time.monotonic()
    fmt = spec.fmt
    retried_rows: dict[str, str] = {}
    inputs: list[list[Any]] = []
    final = spec.output_path is not None
    write: Callable[[Path, schema.Schema], None]
    if spec.level == 0:
        paths = [_local(backend, s.data_key, workdir) for s in spec.sources]
        union: schema.Schema = {}
        schemas = []
        sizes = [p.stat().st_size for p in paths]
        # The first result is read row by row: it gives the node its first schema.
        for chunk in [
            range(0, min(1, len(paths))),
            *(range(c.start + 1, c.stop + 1) for c in formats.chunks(sizes[1:])),
        ]:
            one = None
            if chunk.start > 0 and sizes[chunk.start] <= formats.ARROW_JSON_MAX:
                data = [(spec.sources[k], paths[k].read_bytes()) for k in chunk]
                one = _check_chunk_arrow(spec, data, union, retried_rows)
            if one is not None:
                schemas.append(one)
                union = schema.merge([union, one])
                continue
            for k in chunk:
                one = _check_task(spec, spec.sources[k], paths[k], retried_rows)
                schemas.append(one)
                union = schema.merge([union, one])
        inputs = [[s.task_id, s.sha256, s.rows] for s in spec.sources]
        if spec.reduce:
            rows = (
                {k: v for k, v in r.items() if k != "_item_id"} for p in paths for r in _task_rows(p, False)
            )
            reduced, target = _reduced(spec, rows)
            nrows = len(reduced)
            write = lambda out, sch: formats.WRITE_ROWS[fmt](out, sch, reduced, final)  # noqa: E731
        else:
            target = schema.merge(schemas)
            nrows = sum(s.rows for s in spec.sources)
            raw = fmt == "jsonl"
            if fmt == "parquet":
                write = lambda out, sch: formats.write_tasks_parquet(out, sch, paths, final)  # noqa: E731
            else:
                write = lambda out, sch: formats.WRITE_ROWS[fmt](  # noqa: E731
                    out, sch, (r for p in paths for r in _task_rows(p, raw)), final
                )
    else:
        children: list[formats.Child] = []
        for i in spec.children:
            try:
                m = read_manifest(backend, spec.job_id, spec.level - 1, i)
            except (ObjectNotFoundError, ChecksumMismatchError) as exc:
                raise ResultsError(
                    f"node {spec.name}: input L{spec.level - 1:02d}/n{i:06d} is not done ({exc})",
                    hint="run `slurmctl results JOB` again: it redoes the nodes below first",
                ) from exc
            key = keys.aggregate_node(spec.job_id, spec.level - 1, i, formats.SUFFIX[fmt])
            path = _local(backend, key, workdir)
            actual = sha256_file(path)
            if actual != m.sha256:
                raise ChecksumMismatchError(key, m.sha256, actual)
            for item, task in m.retried_rows.items():
                other = retried_rows.setdefault(item, task)
                if other != task:
                    raise _twice(spec.job_id, item, other, task)
            name = f"L{spec.level - 1:02d}/n{i:06d}"
            children.append((name, path, schema.from_json(m.columns, m.rows), m.rows))
            inputs.append([name, m.sha256, m.rows])
        if spec.reduce:
            rows = (r for _, p, s, n in children for r in formats.READ[fmt](p, s))
            reduced, target = _reduced(spec, rows)
            nrows = len(reduced)
            write = lambda out, sch: formats.WRITE_ROWS[fmt](out, sch, reduced, final)  # noqa: E731
        else:
            target = schema.merge([c[2] for c in children])
            nrows = sum(c[3] for c in children)
            write = lambda out, sch: formats.MERGE[fmt](out, sch, children, final)  # noqa: E731

    out_path = Path(spec.output_path) if final else backend.objects.local_path(spec.output_key)
    remote = out_path is None
    if out_path is None:
        out_path = workdir / f"{spec.level}-{spec.index}{formats.SUFFIX[fmt]}"
    _durable(out_path, lambda tmp: write(tmp, target))
    if remote:
        backend.objects.put_file(spec.output_key, out_path)
    m = NodeManifest(
        job_id=spec.job_id,
        plan=spec.plan,
        level=spec.level,
        index=spec.index,
        format=fmt,
        output=spec.output_path or spec.output_key,
        sha256=sha256_file(out_path),
        bytes=out_path.stat().st_size,
        rows=nrows,
        columns=schema.to_json(target, nrows),
        inputs=inputs,
        retried_rows=retried_rows,
        seconds=round(time.monotonic() - started, 3),
    )
    if remote:
        out_path.unlink()
    data = msgspec.json.encode(m)
    mkey = manifest_key(spec.job_id, spec.level, spec.index)
    backend.objects.put(mkey, data)
    done = NodeDone(manifest_key=mkey, manifest_sha256=hashlib.sha256(data).hexdigest())
    backend.objects.put(done_key(spec.job_id, spec.level, spec.index), msgspec.json.encode(done))
    return m


def _durable(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temp file beside ``path``, fsync it, rename it over ``path``, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.unlink()  # the writers create their file (SQLite refuses an empty non-database file)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
