"""Read side of the scoreboard files, for the TUI and ``slurm-sb leaderboard``: load, validate, merge.

Every loader returns plain Python data and raises ``FormatError`` naming the file (and the field or the
JSON line/column) when a file is not in its documented format, or ``FileNotFoundError`` when it is
absent. Loaders never take the poller's lock: files are replaced by atomic rename, so a read sees either
the old or the new version.
"""

import json
import math
import os
from typing import Any, Dict, List, Sequence, Tuple

from . import layout
from .errors import FormatError
from .schemas import METRICS, WINDOWS, normalize_window

ALL = layout.ALL


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN, Infinity and -Infinity by default; they are not JSON and no file has them.
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str) -> Any:
    """Return the parsed JSON ``text``, refusing NaN/Infinity. Raises ValueError (RecursionError as one)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path: str) -> Any:
    """Return the parsed JSON in ``path``. Raises FileNotFoundError, or FormatError with line/column."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read: {exc}") from exc
    try:
        return loads(text)
    except ValueError as exc:
        raise FormatError(
            f"{path}: invalid JSON: {exc}", hint="the file is derived; `slurm-sb rebuild` rewrites it"
        ) from exc


def _need(data: Any, key: str, kind: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object at the top level")
    if key not in data:
        raise FormatError(f"{path}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise FormatError(f"{path}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{where}: expected a number, found {_short(value)}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise FormatError(
            f"{where}: expected a finite number that fits a float, found {_short(value)}",
            hint="the file is derived; `slurm-sb rebuild` rewrites it",
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def load_leaderboard(path: str) -> Dict[str, Any]:
    """Return ``{"asof", "window", "metric", "cluster", "rows": [(rank, user, value)]}`` from a leaderboard
    file. Raises FormatError / FileNotFoundError. Pure apart from reading the file."""
    data = read_json(path)
    asof = _need(data, "asof", str, path)
    window = normalize_window(_need(data, "window", str, path))
    if not window:
        raise FormatError("{}: field 'window' must be one of {}".format(path, ", ".join(WINDOWS)))
    metric = _need(data, "metric", str, path)
    rows = []
    for i, row in enumerate(_need(data, "rows", list, path)):
        where = f"{path}: rows[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("user"), str):
            raise FormatError(f"{where}: expected an object with a string 'user'")
        rank = row.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise FormatError(f"{where}.rank: expected an integer, found {rank!r}")
        rows.append((rank, row["user"], _number(row.get("value"), where + ".value")))
    return {
        "asof": asof,
        "window": window,
        "metric": metric,
        "cluster": data.get("cluster", ""),
        "rows": rows,
    }


def load_table(path: str) -> Dict[str, Any]:
    """Return ``{"asof", "window", "cluster", "columns": [...], "rows": {user: [values]}}`` from a table file.

    Raises FormatError / FileNotFoundError.
    """
    data = read_json(path)
    asof = _need(data, "asof", str, path)
    window = normalize_window(_need(data, "window", str, path))
    columns = _need(data, "columns", list, path)
    if not all(isinstance(c, str) for c in columns):
        raise FormatError(f"{path}: field 'columns' must be a list of strings")
    rows = {}  # type: Dict[str, List[float]]
    for i, row in enumerate(_need(data, "rows", list, path)):
        where = f"{path}: rows[{i}]"
        if not isinstance(row, list) or len(row) != len(columns) + 1 or not isinstance(row[0], str):
            raise FormatError(f"{where}: expected [user, {len(columns)} values]")
        rows[row[0]] = [_number(v, f"{where}[{j + 1}]") for j, v in enumerate(row[1:])]
    return {
        "asof": asof,
        "window": window,
        "cluster": data.get("cluster", ""),
        "columns": columns,
        "rows": rows,
    }


def load_rollup(path: str) -> Dict[str, Any]:
    """Return a monthly rollup as ``{"asof", "month", "cluster", "users": {username: {metric: value}}}``.

    Raises FormatError / FileNotFoundError.
    """
    data = read_json(path)
    asof = _need(data, "asof", str, path)
    month = _need(data, "month", str, path)
    if not layout.MONTH_RE.match(month):
        raise FormatError(f"{path}: field 'month' must be YYYY-MM, found {month!r}")
    users = {}  # type: Dict[str, Dict[str, float]]
    for i, row in enumerate(_need(data, "users", list, path)):
        where = f"{path}: users[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("username"), str):
            raise FormatError(f"{where}: expected an object with a string 'username'")
        users[row["username"]] = {m: _number(row.get(m), f"{where}.{m}") for m in METRICS}
    return {"asof": asof, "month": month, "cluster": data.get("cluster", ""), "users": users}


def load_user(path: str) -> Dict[str, Any]:
    """Return one user's all-time file as a dict (metrics validated as numbers). Raises FormatError."""
    data = read_json(path)
    _need(data, "username", str, path)
    for m in METRICS:
        _number(data.get(m), f"{path}: {m}")
    return data


def list_clusters(root: str) -> List[str]:
    """Return the clusters that have a directory under ``root`` (sorted). Reads a directory listing."""
    return layout.list_cluster_dirs(root)


def table_path(root: str, cluster: str, window: str) -> str:
    """Return the path of the table of ``cluster`` (or ``ALL``) for ``window`` (any spelling). Pure."""
    return layout.table_file(root, cluster, normalize_window(window) or window)


def leaderboard_path(root: str, cluster: str, window: str, metric: str) -> str:
    """Return the path of the leaderboard of ``cluster`` (or ``ALL``) for ``window`` and ``metric``. Pure."""
    return layout.leaderboard_file(root, cluster, normalize_window(window) or window, metric)


def merge_tables(tables: Sequence[Dict[str, Any]]) -> Dict[str, List[float]]:
    """Return ``{user: values}`` summed across ``tables`` (results of ``load_table`` with equal columns).

    Raises FormatError when the tables' columns differ. Pure.
    """
    merged = {}  # type: Dict[str, List[float]]
    columns = None  # type: Optional[List[str]]
    for t in tables:
        if columns is None:
            columns = t["columns"]
        elif t["columns"] != columns:
            raise FormatError("tables have different columns: {} vs {}".format(columns, t["columns"]))
        for user, values in t["rows"].items():
            acc = merged.get(user)
            if acc is None:
                merged[user] = list(values)
            else:
                for i, v in enumerate(values):
                    acc[i] += v
    return merged


def load_scope(root: str, cluster: str, window: str) -> Tuple[List[str], Dict[str, List[float]], str]:
    """Return ``(columns, {user: values}, asof)`` for ``cluster`` or ``ALL`` in ``window``.

    For ``ALL`` the merged table is used when present, else the per-cluster tables are merged here (so a
    reader works even before any poller wrote the merged files). Missing per-cluster tables are skipped.
    Raises FormatError on a bad file, FileNotFoundError when nothing exists for the scope.
    """
    path = table_path(root, cluster, window)
    if cluster != ALL or os.path.exists(path):
        t = load_table(path)
        return t["columns"], t["rows"], t["asof"]
    tables = []
    for c in list_clusters(root):
        p = table_path(root, c, window)
        if os.path.exists(p):
            tables.append(load_table(p))
    if not tables:
        raise FileNotFoundError(path)
    return tables[0]["columns"], merge_tables(tables), min(t["asof"] for t in tables)
