"""The pure view-model: leaderboard rows in, a ranked, filtered, sorted, searched table of strings out.

No I/O and no terminal here, so every backend shows the same table and tests need no screen. Ranks
are computed from the values after hidden (opted-out) users are removed, using competition ranking
(ties share a rank, the next rank skips: 1, 2, 2, 4), so a filtered view still shows true ranks and
hiding a user leaves no tell-tale gap.
"""

import fnmatch
from operator import itemgetter
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from . import labels

# key -> (header title, right-aligned?, descending by default?)
COLUMNS = {
    "rank": ("Rank", True, False),
    "user": ("Player", False, False),
    "xp": ("XP", True, True),
    "share": ("Share", True, True),
    "main": ("Main", False, False),
}
_SORT_ALIASES = {"value": "xp", "player": "user", "name": "user", "cluster": "main", "pct": "share"}


def parse_sort(text: str) -> Tuple[str, bool]:
    """Return ``(column, descending)`` for a ``COL[:asc|desc]`` sort spec.

    Raises ValueError with the accepted values when the column or direction is unknown. Pure.
    """
    col, _, direction = text.strip().lower().partition(":")
    col = _SORT_ALIASES.get(col, col)
    if col not in COLUMNS:
        raise ValueError(
            "unknown sort column {!r}; use one of {} (optionally :asc or :desc)".format(
                text, ", ".join(COLUMNS)
            )
        )
    if direction not in ("", "asc", "desc"):
        raise ValueError(f"unknown sort direction {direction!r} in {text!r}; use asc or desc")
    return col, (COLUMNS[col][2] if not direction else direction == "desc")


class ViewState:
    """What the user chose: scope, window, metric, sort, filter, search, focus and scroll position."""

    def __init__(
        self,
        cluster: str = "ALL",
        window: str = "alltime",
        metric: str = "clock_hours",
        sort_col: str = "rank",
        sort_desc: bool = False,
        user_filter: str = "",
    ) -> None:
        self.cluster = cluster
        self.window = window
        self.metric = metric
        self.sort_col = sort_col
        self.sort_desc = sort_desc
        self.user_filter = user_filter
        self.search = ""
        self.focus = 0  # index into TableView.columns
        self.cursor = 0  # index into TableView.records
        self.top = 0  # first record shown


class Record:
    """One player row: true rank, user, raw value, and share of the total."""

    __slots__ = ("rank", "share", "user", "value")

    def __init__(self, rank: int, user: str, value: float, share: float) -> None:
        self.rank = rank
        self.user = user
        self.value = value
        self.share = share


class MainClusters:
    """For the ALL view: which cluster contributes most to a user's value, looked up per user.

    Built from each cluster's ``{user: value}`` of the same window and metric. Looked up only for
    the rows on screen (and for all rows only when sorting by it), so the first paint does not pay
    for 10k users x N clusters. Ties go to the cluster listed first.
    """

    def __init__(self, boards: Sequence[Tuple[str, Dict[str, float]]]) -> None:
        self.boards = list(boards)
        self.width = max([len("Main") + 2] + [len(name) for name, _ in self.boards])

    def of(self, user: str) -> str:
        """Return the cluster with the largest value for ``user`` ("" when on none). Pure."""
        best = None  # type: Optional[float]
        name = ""
        for cluster, values in self.boards:
            value = values.get(user)
            if value is not None and (best is None or value > best):
                best, name = value, cluster
        return name


def rank_entries(entries: Iterable[Tuple[str, float]], hidden: Set[str]) -> List[Record]:
    """Return Records in rank order (value descending, then user), hidden users removed.

    ``hidden`` holds lower-cased user names. Ties share a rank (competition ranking). Pure.
    """
    kept = [(u, v) for u, v in entries if u.lower() not in hidden] if hidden else list(entries)
    # two stable C-keyed sorts (user, then value descending) = value desc, ties by user; this
    # and the loop below are most of the view-model's cost at 10k players
    kept.sort(key=itemgetter(0))
    kept.sort(key=itemgetter(1), reverse=True)
    total = sum(v for _, v in kept)
    scale = 1.0 / total if total > 0 else 0.0
    records = []  # type: List[Record]
    append = records.append
    previous = None  # type: Optional[float]
    rank = 0
    for position, (user, value) in enumerate(kept, 1):
        if value != previous:
            rank = position
            previous = value
        append(Record(rank, user, value, value * scale))
    return records


def user_matcher(pattern: str):
    """Return a predicate on user names for a filter ``pattern`` (case-insensitive).

    A pattern with ``*``, ``?`` or ``[`` is a shell glob matched against the whole name; anything
    else matches as a substring. An empty pattern matches everyone. Pure.
    """
    pat = pattern.strip().lower()
    if not pat:
        return lambda user: True
    if any(ch in pat for ch in "*?["):
        return lambda user: fnmatch.fnmatchcase(user.lower(), pat)
    return lambda user: pat in user.lower()


_SORT_KEYS = {
    "rank": lambda r: r.rank,
    "user": lambda r: r.user.lower(),
    "xp": lambda r: r.value,
    "share": lambda r: r.share,
}


class TableView:
    """A built table: ``records`` (filtered and sorted), ``columns`` shown, and searchable strings."""

    def __init__(
        self,
        state: ViewState,
        records: List[Record],
        total: int,
        columns: Sequence[str],
        asof: str,
        note: str,
        available: bool,
        mains: Optional[MainClusters] = None,
    ) -> None:
        self.state = state
        self.records = records
        self.total = total  # players on the board before the user filter
        self.columns = list(columns)
        self.asof = asof
        self.note = note
        self.available = available  # False when no leaderboard file exists for this view
        self.mains = mains

    def cells(self, record: Record) -> List[str]:
        """Return the display strings of ``record`` in ``columns`` order. Pure."""
        out = []
        for col in self.columns:
            if col == "rank":
                out.append(str(record.rank))
            elif col == "user":
                out.append(record.user)
            elif col == "xp":
                out.append(labels.format_xp(record.value, self.state.metric))
            elif col == "share":
                out.append(f"{100.0 * record.share:.1f}%")
            else:
                out.append(self.mains.of(record.user) if self.mains else "")
        return out

    def window(self, top: int, height: int) -> List[Tuple[int, List[str]]]:
        """Return ``(index, cells)`` for the records shown in rows ``top .. top+height-1``. Pure."""
        end = min(len(self.records), max(0, top) + max(0, height))
        return [(i, self.cells(self.records[i])) for i in range(max(0, top), end)]

    def matches(self, text: str) -> List[int]:
        """Return indices of records whose user contains ``text`` (case-insensitive). Pure."""
        needle = text.lower()
        if not needle:
            return []
        return [i for i, r in enumerate(self.records) if needle in r.user.lower()]

    def index_of(self, user: str) -> int:
        """Return the index of ``user`` in ``records``, or -1. Pure."""
        for i, record in enumerate(self.records):
            if record.user == user:
                return i
        return -1


def build_view(
    state: ViewState,
    entries: Optional[Iterable[Tuple[str, float]]],
    hidden: Set[str],
    asof: str = "",
    note: str = "",
    mains: Optional[MainClusters] = None,
) -> TableView:
    """Return the TableView for ``state`` over a board's ``(user, value)`` entries.

    ``entries`` None means no leaderboard file exists for this cluster/window/metric. ``mains``
    adds the "Main" column; pass it only for the ALL view over several clusters.
    Pure: ``state`` is read, never changed.
    """
    columns = ["rank", "user", "xp", "share"] + (["main"] if mains else [])
    records = rank_entries(entries or [], hidden)
    total = len(records)
    match = user_matcher(state.user_filter)
    if state.user_filter.strip():
        records = [r for r in records if match(r.user)]
    sort_col = state.sort_col if state.sort_col in columns else "rank"
    if sort_col != "rank" or state.sort_desc:
        # Records arrive in rank order and sorted() is stable, so ties keep their rank order.
        if sort_col == "main" and mains is not None:
            key = lambda r: mains.of(r.user)  # noqa: E731 -- every row's main only when sorting by it
        else:
            key = _SORT_KEYS[sort_col]
        records = sorted(records, key=key, reverse=state.sort_desc)
    return TableView(state, records, total, columns, asof, note, entries is not None, mains)
