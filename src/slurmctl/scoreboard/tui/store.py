"""Load the leaderboard files under the shared scoreboard root for display (read-only, never sacct).

Paths come from ``scoreboard.layout`` and parsing from ``scoreboard.model.load_leaderboard`` (see
docs/scoreboard.md): per cluster ``clusters/<c>/agg/leaderboards/<window>/<metric>.json``, merged
``leaderboards/<window>/<metric>.json``. Each poller replaces files by atomic rename, so the TUI never
takes a lock: it sees the old or the new version. A board is read only when shown and re-read only
when its mtime or size changed, so the periodic refresh costs a few ``stat`` calls.

Bad files never raise here: they are skipped and described in ``problems`` (file, field, what to do).
"""

import math
import os
from operator import itemgetter
from typing import Dict, List, Optional, Set, Tuple

from .. import layout, model
from ..errors import FormatError
from ..schemas import normalize_window
from . import labels

ALL = layout.ALL


class Board:
    """One leaderboard: ``entries`` is a list of ``(user, value)``; ``note`` explains a merge here."""

    def __init__(
        self, scope: str, window: str, metric: str, asof: str, entries: List[Tuple[str, float]], path: str
    ) -> None:
        self.scope = scope
        self.window = window
        self.metric = metric
        self.asof = asof
        self.entries = entries
        self.path = path
        self.note = ""
        self.by_user = None  # type: Optional[Dict[str, float]]


def read_optout(root: str) -> Tuple[Set[str], List[str]]:
    """Return the opted-out users (lower-cased) and problems reading them.

    Sources: ``config/optout.txt`` (one name a line, ``#`` comments) and the ``opt_out`` list of
    ``config/policy.json``. Missing files are fine. Reads only; idempotent.
    """
    users = set()  # type: Set[str]
    problems = []  # type: List[str]
    path = layout.optout_file(root)
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                name = line.split("#", 1)[0].strip().lower()
                if name:
                    users.add(name)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read the opt-out list: {exc}")
    path = layout.policy_file(root)
    if os.path.exists(path):
        try:
            policy = model.read_json(path)
        except (OSError, FormatError):
            # Already reported once by the config loader (tui/settings.py), which reads it first.
            policy = {}
        listed = policy.get("opt_out", []) if isinstance(policy, dict) else []
        if isinstance(listed, list):
            users.update(str(u).strip().lower() for u in listed if isinstance(u, str) and u.strip())
        else:
            problems.append(f'{path}: field "opt_out" should be a list of user names')
    return users, problems


_NUMBER_TYPES = {int, float}


def read_board(path: str, metric: str) -> Tuple[str, List[Tuple[str, float]]]:
    """Return ``(asof, [(user, value)])`` of a leaderboard file, validated as ``model.load_leaderboard`` does.

    The well-formed case is checked column-wise (a few C-speed passes instead of a Python loop per
    row: this is most of the TUI's first-paint time at 10k users x 5 clusters); anything unexpected
    is handed to ``model.load_leaderboard``, whose FormatError names the file, row and field.
    Raises FormatError / FileNotFoundError. Reads only.
    """
    try:
        with open(path, "rb") as handle:
            data = model.loads(handle.read().decode("utf-8"))
        rows = data["rows"]
        users = list(map(itemgetter("user"), rows))
        values = list(map(itemgetter("value"), rows))
        ranks = list(map(itemgetter("rank"), rows))
        ok = (
            isinstance(data["asof"], str)
            and isinstance(data["metric"], str)
            and normalize_window(data["window"])
            and set(map(type, users)) <= {str}
            and set(map(type, values)) <= _NUMBER_TYPES
            and set(map(type, ranks)) <= {int}
        )
        if ok:
            values = list(map(float, values))  # OverflowError for an int too large for a float
            ok = all(map(math.isfinite, values))  # 1e400 parses as inf
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        ok = False
    if not ok:
        # The slow path: exact validation and the precise message (or, if it finds nothing, its data).
        loaded = model.load_leaderboard(path)
        data = {"asof": loaded["asof"], "metric": loaded["metric"]}
        users = [user for _, user, _ in loaded["rows"]]
        values = [float(value) for _, _, value in loaded["rows"]]
    if data["metric"] != metric:
        raise FormatError(
            "{}: field 'metric' is {!r}, expected {!r} from the file name".format(
                path, data["metric"], metric
            )
        )
    return data["asof"], list(zip(users, values))


class Store:
    """Cached access to the leaderboards under ``root``. Not thread-safe; one per UI."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.problems = []  # type: List[str]
        self._clusters = []  # type: List[str]
        self._hidden = set()  # type: Set[str]
        self._scan_problems = []  # type: List[str]
        self._cache = {}  # type: Dict[str, Tuple[Tuple[int, int], Optional[Board], str]]
        self.scan()

    def scan(self) -> None:
        """Re-list the clusters and the opt-out list. Idempotent, cheap."""
        self._clusters = [
            c
            for c in layout.list_cluster_dirs(self.root)
            if os.path.isdir(layout.leaderboards_dir(self.root, c))
        ]
        self._hidden, self._scan_problems = read_optout(self.root)
        self.problems = list(self._scan_problems)

    def begin_view(self) -> None:
        """Forget the problems of boards loaded for the previous view; keep the opt-out ones.

        ``problems`` then lists only files behind what is on screen now.
        """
        self.problems = list(self._scan_problems)

    def clusters(self) -> List[str]:
        """Return the sorted names of clusters that have a leaderboards directory."""
        return list(self._clusters)

    def has_data(self) -> bool:
        """Return True when any per-cluster or merged leaderboards directory exists."""
        return bool(self._clusters) or os.path.isdir(layout.leaderboards_dir(self.root, ALL))

    def hidden_users(self) -> Set[str]:
        """Return users who opted out; the poller leaves them out, the TUI hides them again."""
        return set(self._hidden)

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def _load(self, scope: str, window: str, metric: str) -> Optional[Board]:
        path = layout.leaderboard_file(self.root, scope, labels.file_window(window), metric)
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached is None or cached[0] != stamp:
            board = None
            problem = ""
            try:
                asof, entries = read_board(path, metric)
                board = Board(scope, window, metric, asof, entries, path)
            except FileNotFoundError:
                return None  # removed between stat and open; the next refresh settles it
            except FormatError as exc:
                problem = f"skipped {exc}"
            cached = (stamp, board, problem)
            self._cache[path] = cached
        if cached[2]:
            self._note(cached[2])
        return cached[1]

    def board(self, scope: str, window: str, metric: str) -> Optional[Board]:
        """Return the leaderboard for ``scope`` (a cluster or ALL), window and metric, or None.

        For ALL without a merged file (no poller wrote it yet), per-cluster boards are summed per user
        here and ``note`` says so. Never raises for bad files (see ``problems``). Idempotent.
        """
        board = self._load(scope, window, metric)
        if board is not None or scope != ALL:
            return board
        parts = [b for b in (self._load(c, window, metric) for c in self._clusters) if b is not None]
        if not parts:
            return None
        totals = {}  # type: Dict[str, float]
        for part in parts:
            for user, value in part.entries:
                totals[user] = totals.get(user, 0.0) + value
        merged = Board(ALL, window, metric, min(p.asof for p in parts), list(totals.items()), "")
        merged.note = f"summed here from {len(parts)} cluster board(s)"
        return merged

    def cluster_values(self, window: str, metric: str) -> List[Tuple[str, Dict[str, float]]]:
        """Return ``(cluster, {user: value})`` for every cluster with this board (the "Main" column).

        The dicts are cached with their board, so they are built once per file version.
        """
        out = []
        for cluster in self._clusters:
            board = self._load(cluster, window, metric)
            if board is not None:
                if board.by_user is None:
                    board.by_user = dict(board.entries)
                out.append((cluster, board.by_user))
        return out
