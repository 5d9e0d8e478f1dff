"""The month state file: the single source of truth for one (cluster, month).

``state/months/YYYY-MM.state`` holds the exact job-id set and the per-user, per-day exact sums in one
file, so they commit together with one atomic rename (a crash can never record ids without their sums or
sums without their ids). Layout (docs/scoreboard.md)::

    SLURMSB-MONTH 3\\n
    {"month", "generation", "asof", "n_ids", "ids_bytes", "totals_bytes", "days_bytes", "n_runs",
     "runs_bytes"}\\n
    zlib(uint32 id deltas) | zlib(JSON totals, columnar) | zlib(JSON days, columnar) | zlib(run planes)

The runs blob holds the ``units.run_key`` values of the earlier runs of requeued jobs counted in the
month (their time is in the sums; the job's own id is in the id set with its last run), see
``encode_runs``.

The per-user month totals hold all 10 exact sums; the days hold only ``DAY_FIELDS`` (counts and
seconds): the rolling windows show no memory sums, and the memory columns are the least compressible
(measured: dropping them halves the days blob). Both blobs are columns with two decorrelating
transforms -- CPU seconds minus elapsed seconds, GPU seconds minus GPU-elapsed seconds (equal for
1-CPU / 1-GPU work) -- and the days' GPU columns only on rows with GPU jobs.

A file of another format version is refused (``FormatError``, exit 3) with how to rebuild the month:
no other version was ever released, and a format change bumps the version.
"""

import itertools
import json
import operator
import os
import re
import sys
import zlib
from array import array
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import dedupe, fsutil, layout
from .errors import FormatError
from .schemas import CPU_S, DAY_FIELDS, ELAPSED_S, GPU_ELAPSED_S, GPU_JOBS, GPU_S, N_SUMS

VERSION = 3
MAGIC = b"SLURMSB-MONTH 3\n"
_MAGIC_RE = re.compile(rb"SLURMSB-MONTH (\d+)\n\Z")
_LEVEL = 6  # zlib level: 9 takes 5x the CPU for 0.6 % less (measured on a 1M-job month)
_DAY_MASK = [1 if i in DAY_FIELDS else 0 for i in range(N_SUMS)]
# add_all slices instead of masking: it relies on the day fields being the leading ones.
_N_DAY = len(DAY_FIELDS)
_DAY_PAD = [0] * (N_SUMS - _N_DAY)
if tuple(range(_N_DAY)) != DAY_FIELDS:  # pragma: no cover - a schema change must revisit add_all
    raise ImportError("store.add_all assumes DAY_FIELDS are the leading sum fields")

Sums = List[int]
Days = Dict[str, Dict[str, Sums]]


class MonthState:
    """In-memory month state: ``ids`` (ascending uint32 array), ``totals[user]`` (the month's exact sums,
    all 10 fields) and ``days[user][DD]`` (exact per-day sums; only ``DAY_FIELDS`` are kept per day, the
    memory sums are 0 there) and ``runs`` (the set of ``units.run_key`` of earlier runs of requeued
    jobs already counted)."""

    def __init__(
        self,
        month: str,
        generation: int = 0,
        asof: str = "",
        ids: Optional[array] = None,
        days: Optional[Days] = None,
        totals: Optional[Dict[str, Sums]] = None,
        runs: Optional[Iterable[int]] = None,
    ) -> None:
        self.month = month
        self.generation = generation
        self.asof = asof
        self.ids = ids if ids is not None else dedupe.decode_ids(zlib.compress(b""))
        self.days = days if days is not None else {}
        self.month_totals = totals if totals is not None else {}
        self.runs = set(runs) if runs is not None else set()  # type: Set[int]

    def add(self, user: str, day: str, sums: Sums) -> None:
        """Add one user-day's exact sums to the month totals and the day. Not idempotent (it adds)."""
        # Called once per (user, day) of a batch (60k times for a 1M-job month): element-wise work runs
        # in C (map over operator functions) rather than in a Python loop over the 10 fields.
        acc = self.month_totals.get(user)
        if acc is None:
            self.month_totals[user] = list(sums)
        else:
            acc[:] = map(operator.add, acc, sums)
        per_day = self.days.get(user)
        if per_day is None:
            per_day = self.days[user] = {}
        cur = per_day.get(day)
        day_sums = map(operator.mul, sums, _DAY_MASK)  # the memory sums are not kept per day
        if cur is None:
            per_day[day] = list(day_sums)
        else:
            cur[:] = map(operator.add, cur, day_sums)

    def add_all(self, items: Iterable[Tuple[Tuple[str, str], Sums]]) -> None:
        """Add every ``((user, day), sums)`` of ``items`` as ``add`` would. Not idempotent (it adds).

        A commit's bulk path (a 1M-job month has ~44k user-days): the day sums are the first
        ``_N_DAY`` fields plus zeros, taken by slicing instead of a masked multiply, and a first value
        is stored as a copy instead of being added to zeros.
        """
        totals = self.month_totals
        days = self.days
        add = operator.add
        n_day = _N_DAY
        pad = _DAY_PAD
        for (user, day), sums in items:
            acc = totals.get(user)
            if acc is None:
                totals[user] = sums[:]
            else:
                acc[:] = map(add, acc, sums)
            per_day = days.get(user)
            if per_day is None:
                per_day = days[user] = {}
            day_sums = sums[:n_day]
            day_sums += pad
            cur = per_day.get(day)
            if cur is None:
                per_day[day] = day_sums
            else:
                cur[:] = map(add, cur, day_sums)

    def totals(self) -> Dict[str, Sums]:
        """Return ``{user: sums over the month}`` (all 10 fields, exact)."""
        return self.month_totals

    def to_bytes(self) -> bytes:
        """Return the file image. Pure."""
        ids_blob = dedupe.encode_ids(self.ids)
        totals_blob = zlib.compress(_json_bytes(encode_totals(self.month_totals)), _LEVEL)
        days_blob = zlib.compress(_json_bytes(encode_days(self.days)), _LEVEL)
        runs_blob = encode_runs(self.runs)
        header = {
            "month": self.month,
            "generation": self.generation,
            "asof": self.asof,
            "n_ids": len(self.ids),
            "ids_bytes": len(ids_blob),
            "totals_bytes": len(totals_blob),
            "days_bytes": len(days_blob),
            "n_runs": len(self.runs),
            "runs_bytes": len(runs_blob),
        }
        blobs = ids_blob + totals_blob + days_blob + runs_blob
        return MAGIC + json.dumps(header).encode() + b"\n" + blobs


def _rebuild_hint(path: str) -> str:
    """How to rebuild the month of the state file ``path`` (``<root>/clusters/<c>/state/months/M.state``)."""
    state = os.path.dirname(os.path.dirname(path))
    cluster = os.path.basename(os.path.dirname(state))
    return (
        f"re-ingest the month: remove this file and {os.path.join(state, 'poll_cursor.json')}, then run"
        f" `slurm-sb backfill --cluster {cluster}` (it reads every month again from backfill_start;"
        " exact dedupe counts nothing twice)"
    )


def _read_header(fh: Any, path: str) -> Tuple[Dict[str, Any], int]:
    magic = fh.readline()
    if magic != MAGIC:
        m = _MAGIC_RE.match(magic)
        if m:
            raise FormatError(
                f"{path}: month state format version {int(m.group(1))}; this slurm-sb reads version"
                f" {VERSION} only",
                hint=_rebuild_hint(path),
            )
        raise FormatError(f"{path}: not a SLURMSB-MONTH {VERSION} file", hint=_rebuild_hint(path))
    line = fh.readline()
    keys = ("month", "generation", "n_ids", "ids_bytes", "totals_bytes", "days_bytes", "n_runs", "runs_bytes")
    try:
        header = json.loads(line.decode())
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
        for key in keys:
            if key not in header:
                raise ValueError(f"missing {key!r}")
            value = header[key]
            if key == "month":
                if not isinstance(value, str):
                    raise ValueError(f"'month' must be a string, found {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key!r} must be a non-negative integer, found {value!r}")
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{path}: line 2: bad header: {exc}") from exc
    header["version"] = VERSION
    return header, len(magic) + len(line)


def read_header(path: str) -> Optional[Dict[str, Any]]:
    """Return the header of a month state, or None when the file does not exist. Raises FormatError."""
    try:
        with open(path, "rb") as fh:
            return _read_header(fh, path)[0]
    except FileNotFoundError:
        return None


def _blob(fh: Any, path: str, offset: int, size: int, what: str) -> bytes:
    # The header's sizes are checked against the file first: a damaged header must not make us try
    # to allocate a huge buffer.
    have = max(0, min(size, os.fstat(fh.fileno()).st_size - offset))
    if have != size:
        raise FormatError(f"{path}: truncated {what} blob ({have} of {size} bytes)")
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise FormatError(f"{path}: truncated {what} blob ({len(data)} of {size} bytes)")
    return data


def _json_blob(data: bytes, path: str, what: str) -> Any:
    try:
        return json.loads(zlib.decompress(data).decode())
    except (zlib.error, ValueError) as exc:
        raise FormatError(f"{path}: corrupt {what} blob: {exc}") from exc


def read_totals(path: str) -> Optional[Tuple[Dict[str, Any], Dict[str, Sums]]]:
    """Return ``(header, {user: month sums})`` without decoding ids or days; None if absent."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 -- closed by the `with fh` below; only the open may be ENOENT
    except FileNotFoundError:
        return None
    with fh:
        header, off = _read_header(fh, path)
        data = _blob(fh, path, off + header["ids_bytes"], header["totals_bytes"], "totals")
    return header, _totals(_json_blob(data, path, "totals"), path)


def read_days(path: str, month: str) -> Tuple[Dict[str, Sums], Days]:
    """Return ``({user: month sums}, days)`` of a month state without decoding its ids (empty when
    absent). Raises FormatError."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 -- closed by the `with fh` below; only the open may be ENOENT
    except FileNotFoundError:
        return {}, {}
    with fh:
        header, off = _read_header(fh, path)
        totals_blob = _blob(fh, path, off + header["ids_bytes"], header["totals_bytes"], "totals")
        days_blob = _blob(
            fh, path, off + header["ids_bytes"] + header["totals_bytes"], header["days_bytes"], "days"
        )
    if header["month"] != month:
        raise FormatError(f"{path}: holds month {header['month']!r}, expected {month!r}")
    totals = _totals(_json_blob(totals_blob, path, "totals"), path)
    return totals, decode_days(_json_blob(days_blob, path, "days"), path)


def read_state(path: str, month: str) -> MonthState:
    """Return the full month state in ``path`` (an empty one when absent). Raises FormatError."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 -- closed by the `with fh` below; only the open may be ENOENT
    except FileNotFoundError:
        return MonthState(month)
    with fh:
        header, off = _read_header(fh, path)
        ids_blob = _blob(fh, path, off, header["ids_bytes"], "ids")
        totals_blob = _blob(fh, path, off + header["ids_bytes"], header["totals_bytes"], "totals")
        days_blob = _blob(
            fh, path, off + header["ids_bytes"] + header["totals_bytes"], header["days_bytes"], "days"
        )
        at = off + header["ids_bytes"] + header["totals_bytes"] + header["days_bytes"]
        runs = decode_runs(_blob(fh, path, at, header["runs_bytes"], "runs"), header["n_runs"], path)
    ids = dedupe.decode_ids(ids_blob, path)
    if len(ids) != header["n_ids"]:
        raise FormatError(f"{path}: header says {header['n_ids']} ids, blob holds {len(ids)}")
    totals = _totals(_json_blob(totals_blob, path, "totals"), path)
    days = decode_days(_json_blob(days_blob, path, "days"), path)
    if header["month"] != month:
        raise FormatError(f"{path}: holds month {header['month']!r}, expected {month!r}")
    return MonthState(month, int(header["generation"]), str(header.get("asof", "")), ids, days, totals, runs)


_RUN_SEC_BITS = 22  # units.run_key: job id << 22 | seconds into the month


def encode_runs(keys: Iterable[int]) -> bytes:
    """Return the runs blob: zlib of byte planes of two uint32 columns of the sorted run keys. Pure.

    Column 1 is the job ids as deltas (the first absolute; 0 for a second run of the same job), column
    2 the seconds into the month; each column is written as its four byte planes (all low bytes, then
    all second bytes, ...), so the mostly-zero high bytes of small deltas compress to almost nothing:
    ~3.8 bytes a run, against ~5.7 for zlib of the keys as JSON (measured on 13k runs).
    """
    ordered = sorted(keys)
    ids = array(dedupe.U32, (k >> _RUN_SEC_BITS for k in ordered))
    secs = array(dedupe.U32, (k & ((1 << _RUN_SEC_BITS) - 1) for k in ordered))
    deltas = array(dedupe.U32, ids[:1])
    deltas.extend(map(operator.sub, itertools.islice(ids, 1, None), ids))
    planes = []
    for col in (deltas, secs):
        if sys.byteorder == "big":
            col.byteswap()
        raw = col.tobytes()
        planes.extend(raw[i::4] for i in range(4))
    return zlib.compress(b"".join(planes), _LEVEL)


def decode_runs(blob: bytes, n: int, path: str) -> List[int]:
    """Return the run keys in ``blob`` (``encode_runs`` of ``n`` keys). Raises FormatError naming ``path``."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise FormatError(f"{path}: corrupt runs blob: {exc}") from exc
    if not isinstance(n, int) or n < 0 or len(raw) != 8 * n:
        raise FormatError(
            f"{path}: runs blob holds {len(raw)} bytes, the header says {n!r} runs (8 bytes each)"
        )
    cols = []
    for c in range(2):
        buf = bytearray(4 * n)
        for i in range(4):
            at = (4 * c + i) * n
            buf[i::4] = raw[at : at + n]
        col = array(dedupe.U32)
        col.frombytes(bytes(buf))
        if sys.byteorder == "big":
            col.byteswap()
        cols.append(col)
    ids = itertools.accumulate(cols[0])
    return [job_id << _RUN_SEC_BITS | sec for job_id, sec in zip(ids, cols[1])]


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _totals(obj: Any, path: str) -> Dict[str, Sums]:
    totals = decode_totals(obj, path)
    _check_sums_map(totals, path)
    return totals


def encode_totals(totals: Dict[str, Sums]) -> Dict[str, Any]:
    """Return the columnar form of ``{user: sums}``: ``{"users": [...], "cols": [10 lists]}``
    with CPU_S and GPU_S stored as differences (``_decorrelate``). Pure."""
    users = sorted(totals)
    cols = [list(c) for c in zip(*(totals[u] for u in users))] if users else [[] for _ in range(N_SUMS)]
    _decorrelate(cols, operator.sub)
    return {"users": users, "cols": cols}


def decode_totals(obj: Any, path: str) -> Dict[str, Sums]:
    """Return ``{user: sums}`` from ``encode_totals`` output. Raises FormatError naming ``path``."""
    try:
        users, cols = obj["users"], obj["cols"]
        if len(cols) != N_SUMS or any(len(c) != len(users) for c in cols):
            raise ValueError("columns and users differ in length")
        cols = [list(c) for c in cols]
        _decorrelate(cols, operator.add)
        return dict(zip(users, map(list, zip(*cols))))
    except (TypeError, ValueError, KeyError) as exc:
        raise FormatError(f"{path}: totals blob is not the columnar layout: {exc}") from exc


def _decorrelate(cols: List[List[int]], op: Any) -> None:
    # CPU seconds = sum(cpus x elapsed) and GPU seconds = sum(gpus x elapsed): equal to elapsed and
    # GPU-elapsed for single-CPU / single-GPU work, so the differences are mostly small or 0.
    # op=sub encodes, op=add decodes (in place, on the columns indexed by sum field).
    cols[CPU_S][:] = map(op, cols[CPU_S], cols[ELAPSED_S])
    cols[GPU_S][:] = map(op, cols[GPU_S], cols[GPU_ELAPSED_S])


def encode_days(days: Days) -> Dict[str, Any]:
    """Return the columnar form of ``{user: {"DD": sums}}`` stored in the days blob. Pure.

    ``{"users": [[user, n_days], ...], "days": [DD, ...], "cols": [[values of field i] for i in
    DAY_FIELDS]}`` with rows in user then day order, CPU_S and GPU_S as differences (``_decorrelate``)
    and the GPU_ELAPSED_S and GPU_S columns holding only the rows whose GPU_JOBS is not 0. Column-wise,
    similar magnitudes sit together and zlib packs them ~20 % tighter than per-user JSON.
    """
    users = []
    day_list = []
    rows = []  # type: List[Sums]
    for user in sorted(days):
        per_day = days[user]
        users.append([user, len(per_day)])
        for day in sorted(per_day):
            day_list.append(int(day))
            rows.append(per_day[day])
    cols = [list(c) for c in zip(*rows)] if rows else [[] for _ in range(N_SUMS)]
    _decorrelate(cols, operator.sub)
    gpu_rows = cols[GPU_JOBS]
    for i in (GPU_ELAPSED_S, GPU_S):
        cols[i] = list(itertools.compress(cols[i], gpu_rows))
    return {"users": users, "days": day_list, "cols": [cols[i] for i in DAY_FIELDS]}


def decode_days(obj: Any, path: str) -> Days:
    """Return ``{user: {"DD": sums}}`` from ``encode_days`` output. Raises FormatError naming ``path``."""
    try:
        users, day_list, cols = obj["users"], obj["days"], obj["cols"]
        n = len(day_list)
        if len(cols) != len(DAY_FIELDS):
            raise ValueError(f"expected {len(DAY_FIELDS)} columns, found {len(cols)}")
        full = [[0] * n for _ in range(N_SUMS)]
        for j, i in enumerate(DAY_FIELDS):
            full[i] = list(cols[j])
        gpu_rows = full[GPU_JOBS]
        if len(gpu_rows) != n:
            raise ValueError("columns and days differ in length")
        for i in (GPU_ELAPSED_S, GPU_S):
            packed = iter(full[i])
            want = sum(1 for g in gpu_rows if g)
            if len(full[i]) != want:
                raise ValueError(f"GPU column holds {len(full[i])} values for {want} GPU rows")
            full[i] = [next(packed) if g else 0 for g in gpu_rows]
        _decorrelate(full, operator.add)
        if any(len(c) != n for c in full):
            raise ValueError("columns and days differ in length")
        if sum(k for _u, k in users) != n:
            raise ValueError("user row counts do not add up to the days")
        out = {}  # type: Days
        rows = zip(*full)
        pos = 0
        for user, k in users:
            out[user] = {
                f"{d:02d}": list(r) for d, r in zip(day_list[pos : pos + k], itertools.islice(rows, k))
            }
            pos += k
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise FormatError(f"{path}: days blob is not the columnar layout: {exc}") from exc
    return out


def _check_sums_map(obj: Any, where: str) -> None:
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: expected an object")
    for key, sums in obj.items():
        if not isinstance(sums, list) or len(sums) != N_SUMS or not all(isinstance(v, int) for v in sums):
            raise FormatError(f"{where}: {key!r} is not a list of {N_SUMS} integers")


def write_state(root: str, cluster: str, state: MonthState) -> None:
    """Write ``state`` atomically (the commit point of an ingest). Idempotent. Raises StorageError."""
    fsutil.atomic_write_bytes(layout.month_state(root, cluster, state.month), state.to_bytes())


def list_months(root: str, cluster: str) -> List[str]:
    """Return the months that have a state file, ascending. Reads a directory listing."""
    d = os.path.join(layout.state_dir(root, cluster), "months")
    try:
        names = os.listdir(d)
    except OSError:
        return []
    out = []
    for n in names:
        if n.endswith(".state") and layout.MONTH_RE.match(n[:-6]):
            out.append(n[:-6])
    return sorted(out)


def read_archive(root: str, cluster: str) -> Dict[str, Any]:
    """Return ``{"months": [...], "users": {user: sums}, "span": {user: [first, last]}}`` of the months
    pruned by retention (empty if none). Raises FormatError naming the file and the field."""
    path = layout.archive_file(root, cluster)
    hint = "restore it from backup; it holds pruned totals"
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {"months": [], "users": {}, "span": {}}
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"{path}: invalid JSON: {exc}", hint=hint) from exc
    except OSError as exc:
        raise FormatError(f"{path}: cannot read it: {exc}", hint=hint) from exc
    if not isinstance(data, dict) or not isinstance(data.get("months"), list):
        raise FormatError(f"{path}: expected {{'months': [...], 'users': {{...}}}}", hint=hint)
    _check_sums_map(data.get("users"), f"{path}: users")
    if not all(isinstance(m, str) for m in data["months"]):
        raise FormatError(f"{path}: field 'months' must be a list of YYYY-MM strings", hint=hint)
    span = data.get("span")
    if not isinstance(span, dict):
        raise FormatError(f"{path}: field 'span' must be an object {{user: [first, last]}}", hint=hint)
    for user, months in span.items():
        if not isinstance(months, list) or len(months) != 2 or not all(isinstance(m, str) for m in months):
            raise FormatError(
                f"{path}: span.{user}: expected [first_month, last_month], found {months!r}", hint=hint
            )
    return data
