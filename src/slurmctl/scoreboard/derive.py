"""Derived files: monthly rollups, per-user all-time files, tables and leaderboards (per cluster, merged).

Everything here is recomputed from the month states (plus ``archive.json``), so it can be rewritten at
any time (``slurm-sb rebuild``) and a crash between the commit and these writes is repaired by the next
poll (``derived.json`` records the state generations the files reflect).
"""

import contextlib
import datetime
import hashlib
import json
import operator
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from . import fsutil, layout, store
from .errors import FormatError
from .schemas import (
    DAY_FIELDS,
    JOBS,
    METRICS,
    N_SUMS,
    TUI_METRICS,
    WINDOW_DAYS,
    WINDOW_METRICS,
    WINDOWS,
    add_into,
    metric_vector,
    to_metrics,
    zero_sums,
)

Sums = List[int]
_DAY_NAMES = tuple(f"{d:02d}" for d in range(1, 32))  # the days a month state may hold


class Policy:
    """The privacy knobs derivation needs."""

    def __init__(self, min_jobs: int = 3, opt_out: Iterable[str] = ()) -> None:
        self.min_jobs = int(min_jobs)
        self.opt_out = frozenset(u.lower() for u in opt_out)

    def fingerprint(self) -> str:
        """Return a digest of the knobs (recorded in ``derived.json``; not the names themselves). Pure.

        A change -- a name added to ``config/optout.txt``, another ``min_jobs_to_show`` -- makes the
        next poll rewrite every derived file, not only those of the months and users it touched:
        otherwise an opted-out user's own file and monthly rollup rows would stay until a ``rebuild``.
        """
        text = json.dumps([self.min_jobs, sorted(self.opt_out)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rollup_doc(
    cluster: str, month: str, totals: Dict[str, Sums], asof: str, policy: Policy
) -> Dict[str, Any]:
    """Return the monthly rollup document (the issue's format, users sorted by name). Pure."""
    users = []
    for user in sorted(totals):
        if user in policy.opt_out:
            continue
        row = {"username": user}
        row.update(to_metrics(totals[user]))
        users.append(row)
    return {"asof": asof, "month": month, "cluster": cluster, "users": users}


def alltime_totals(root: str, cluster: str) -> Tuple[Dict[str, Sums], Dict[str, Tuple[str, str]]]:
    """Return ``({user: sums}, {user: (first_month, last_month)})`` over archive + every month state."""
    archive = store.read_archive(root, cluster)  # checked there, for every reader
    archived = set(archive["months"])
    totals = {u: list(s) for u, s in archive["users"].items()}  # type: Dict[str, Sums]
    span = {u: tuple(v) for u, v in archive["span"].items()}  # type: Dict[str, Tuple[str, str]]
    for month in store.list_months(root, cluster):
        if month in archived:  # pruned but not yet deleted (crash between the two steps)
            continue
        got = store.read_totals(layout.month_state(root, cluster, month))
        if got is None:
            continue
        for user, sums in got[1].items():
            acc = totals.get(user)
            if acc is None:
                totals[user] = list(sums)
            else:
                add_into(acc, sums)
            first, last = span.get(user, (month, month))
            span[user] = (min(first, month), max(last, month))
    return totals, span


def window_totals(root: str, cluster: str, today: datetime.date, days: int) -> Dict[str, Sums]:
    """Return ``{user: sums}`` of jobs that ended on the ``days`` UTC days ending with ``today``."""
    return windows_totals(root, cluster, today, {"w": days})["w"]


def windows_totals(
    root: str, cluster: str, today: datetime.date, windows: Dict[str, int]
) -> Dict[str, Dict[str, Sums]]:
    """Return ``{window: {user: sums}}`` for several day counts, reading each month state once.

    A window of ``d`` days holds the jobs that ended on the ``d`` UTC days ending with ``today``.
    Only the ``DAY_FIELDS`` are kept per day, so only they are summed (the others are 0). Reads
    files only; raises FormatError on a corrupt month state.
    """
    today_s = today.strftime("%Y-%m-%d")
    firsts = {w: (today - datetime.timedelta(days=d - 1)).strftime("%Y-%m-%d") for w, d in windows.items()}
    out = {w: {} for w in windows}  # type: Dict[str, Dict[str, Sums]]
    earliest = min(firsts.values()) if firsts else today_s
    pad = [0] * (N_SUMS - len(DAY_FIELDS))
    for month in store.list_months(root, cluster):
        if month < earliest[:7] or month > today_s[:7]:
            continue
        totals, days = store.read_days(layout.month_state(root, cluster, month), month)
        for w, first_s in firsts.items():
            if month < first_s[:7]:
                continue
            acc_w = out[w]
            if first_s <= month + "-01" and month < today_s[:7]:
                # The window holds the whole month: a user's month totals are the sums of their days
                # (the day fields of them).
                for user, sums in totals.items():
                    part = sums[: len(DAY_FIELDS)] + pad
                    acc = acc_w.get(user)
                    if acc is None:
                        acc_w[user] = part
                    else:
                        acc[:] = map(operator.add, acc, part)
                continue
            inside = frozenset(d for d in _DAY_NAMES if first_s <= month + "-" + d <= today_s)
            for user, per_day in days.items():
                acc = acc_w.get(user)
                for day, sums in per_day.items():
                    if day in inside:
                        if acc is None:
                            acc = acc_w[user] = list(sums)
                        else:
                            acc[:] = map(operator.add, acc, sums)
    return out


def rank_rows(values: Sequence[Tuple[str, float]]) -> List[Dict[str, Any]]:
    """Return leaderboard rows sorted by value desc then user asc, competition ranks (1, 2, 2, 4). Pure."""
    ordered = sorted(values, key=lambda uv: (-uv[1], uv[0]))
    rows = []
    prev = None
    rank = 0
    for i, (user, value) in enumerate(ordered):
        if value != prev:
            rank = i + 1
            prev = value
        rows.append({"rank": rank, "user": user, "value": value})
    return rows


def visible(totals: Dict[str, Sums], policy: Policy) -> Dict[str, Sums]:
    """Return the users that may be shown: not opted out and with at least ``min_jobs`` jobs. Pure."""
    return {u: s for u, s in totals.items() if u not in policy.opt_out and s[JOBS] >= policy.min_jobs}


def write_scope(
    root: str,
    scope: str,
    window: str,
    totals: Dict[str, Sums],
    asof: str,
    policy: Policy,
    writer: Optional[fsutil.BatchWriter] = None,
) -> int:
    """Write the table and every metric's leaderboard of ``scope`` (cluster or ALL) for ``window``.

    Returns the number of users shown. Idempotent. Raises StorageError.
    """
    own = writer is None
    writer = writer or fsutil.BatchWriter()
    shown = visible(totals, policy)
    columns = METRICS if window == "alltime" else WINDOW_METRICS
    vectors = {u: metric_vector(s)[: len(columns)] for u, s in shown.items()}
    table = {
        "asof": asof,
        "window": window,
        "cluster": scope,
        "columns": list(columns),
        "rows": [[u, *vectors[u]] for u in sorted(vectors)],
    }
    writer.add_json(layout.table_file(root, scope, window), table)
    for metric in TUI_METRICS:
        j = METRICS.index(metric)
        doc = {
            "asof": asof,
            "window": window,
            "metric": metric,
            "cluster": scope,
            "rows": rank_rows([(u, v[j]) for u, v in vectors.items()]),
        }
        writer.add_json(layout.leaderboard_file(root, scope, window, metric), doc)
    if own:
        writer.commit()
    return len(shown)


def _full_table_path(root: str, cluster: str, window: str) -> str:
    # Every non-opted-out user with exact sums, hidden ones included, so the merged boards can add up a
    # user who has 2 jobs on each of two clusters. Internal (under state/), not for display.
    return os.path.join(layout.state_dir(root, cluster), "totals-" + window + ".json")


def read_full_table(root: str, cluster: str, window: str) -> Dict[str, Sums]:
    """Return another cluster's exact per-user sums for ``window`` (empty when absent). Raises FormatError."""
    path = _full_table_path(root, cluster, window)
    hint = f"run `slurm-sb rebuild --cluster {cluster}`"
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"{path}: invalid JSON: {exc}", hint=hint) from exc
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc}", hint=hint) from exc
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise FormatError(f"{path}: expected {{'users': {{user: [sums]}}}}", hint=hint)
    for user, sums in users.items():
        if not isinstance(sums, list) or len(sums) != N_SUMS or not all(_is_int(v) for v in sums):
            raise FormatError(
                f"{path}: users.{user}: expected a list of {N_SUMS} integers, found {sums!r:.60}", hint=hint
            )
    return users


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def derive(
    root: str,
    cluster: str,
    policy: Policy,
    now: Optional[datetime.datetime] = None,
    months: Optional[Iterable[str]] = None,
    users: Optional[Set[str]] = None,
    write_merged: bool = True,
    user_files: bool = True,
) -> Dict[str, Any]:
    """Rewrite the derived files of ``cluster``; return counts for the log.

    ``months``: monthly rollups to rewrite (None: all). ``users``: per-user files to rewrite (None: all,
    and files of users no longer present or opted out are removed). Leaderboards and tables are always
    rewritten; the merged ones too when ``write_merged``. Idempotent. Raises StorageError / FormatError.
    """
    now = now or datetime.datetime.utcnow()
    asof = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    today = now.date()
    month_list = store.list_months(root, cluster) if months is None else sorted(set(months))
    writer = fsutil.BatchWriter()
    generations = {}
    for month in month_list:
        got = store.read_totals(layout.month_state(root, cluster, month))
        if got is None:
            continue
        generations[month] = got[0]["generation"]
        writer.add_json(
            layout.rollup_file(root, cluster, month), rollup_doc(cluster, month, got[1], asof, policy)
        )
    alltime, span = alltime_totals(root, cluster)
    wanted = (set(alltime) if users is None else set(users)) if user_files else set()
    n_user_files = 0
    for user in sorted(wanted):
        path = layout.user_file(root, cluster, user)
        if user in policy.opt_out or user not in alltime or not _safe_name(user):
            if os.path.exists(path):
                os.unlink(path)
            continue
        doc = {"username": user, "cluster": cluster, "asof": asof}
        first, last = span.get(user, ("", ""))
        doc["first_month"], doc["last_month"] = first, last
        doc.update(to_metrics(alltime[user]))
        writer.add_json(path, doc)
        n_user_files += 1
    if users is None and user_files:
        _remove_stale_user_files(root, cluster, set(alltime), policy)
    per_window = {"alltime": alltime}
    per_window.update(
        windows_totals(root, cluster, today, {w: WINDOW_DAYS[w] for w in WINDOWS if WINDOW_DAYS[w]})
    )
    shown = {}
    for window, totals in per_window.items():
        full = {u: s for u, s in totals.items() if u not in policy.opt_out}
        writer.add_json(_full_table_path(root, cluster, window), {"asof": asof, "users": full})
        shown[window] = write_scope(root, cluster, window, totals, asof, policy, writer)
    writer.commit()  # this cluster's files first: the merge below reads its full totals back
    merged = {}
    if write_merged:
        for window in WINDOWS:
            merged[window] = write_merged_scope(root, window, asof, policy, writer)
        writer.commit()
    all_generations = {}
    for month in store.list_months(root, cluster):
        h = store.read_header(layout.month_state(root, cluster, month))
        if h is not None:
            all_generations[month] = h["generation"]
    fsutil.atomic_write_json(
        layout.derived_marker(root, cluster),
        {"asof": asof, "generations": all_generations, "policy": policy.fingerprint()},
    )
    return {"rollups": len(generations), "user_files": n_user_files, "shown": shown, "merged": merged}


def write_merged_scope(
    root: str, window: str, asof: str, policy: Policy, writer: Optional[fsutil.BatchWriter] = None
) -> int:
    """Write the ALL table and leaderboards of ``window`` from every cluster's full totals.

    Returns the number of users shown.
    """
    merged = {}  # type: Dict[str, Sums]
    for c in layout.list_cluster_dirs(root):
        for user, sums in read_full_table(root, c, window).items():
            acc = merged.get(user)
            if acc is None:
                merged[user] = list(sums)
            else:
                add_into(acc, sums)
    return write_scope(root, layout.ALL, window, merged, asof, policy, writer)


def derived_is_current(root: str, cluster: str, policy: Optional[Policy] = None) -> bool:
    """Return True when the derived files reflect every month state's generation (no repair needed)
    and, when ``policy`` is given, were written under that policy."""
    try:
        with open(layout.derived_marker(root, cluster), encoding="utf-8") as fh:
            marker = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(marker, dict):
        return False  # damaged: the next poll rewrites every derived file and the marker
    if policy is not None and marker.get("policy") != policy.fingerprint():
        return False
    want = {}
    for month in store.list_months(root, cluster):
        h = store.read_header(layout.month_state(root, cluster, month))
        if h is not None:
            want[month] = h["generation"]
    return marker.get("generations") == want


def _safe_name(user: str) -> bool:
    return bool(user) and "/" not in user and user not in (".", "..") and not user.startswith(".")


def _remove_stale_user_files(root: str, cluster: str, present: Set[str], policy: Policy) -> None:
    d = layout.users_dir(root, cluster)
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        if not name.endswith(".json"):
            continue
        user = name[:-5]
        if user not in present or user in policy.opt_out:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(d, name))


_ = zero_sums  # re-exported for callers building sums by hand
