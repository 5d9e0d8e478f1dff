"""A small, hand-written scoreboard root for the TUI tests (layout of docs/scoreboard.md).

Clusters ``hammer`` and ``bell``. Values are chosen so ranks, ties, merges and hiding are checkable
by hand:

* alltime clock_hours  hammer: alice 1234.5, bob 800, carol 800, dave 12.25, eve 0.5
                       bell:   frank 950, alice 100, bob 10
                       merged: alice 1334.5, frank 950, bob 810, carol 800, dave 12.25, eve 0.5,
                               mallory 99999 (opted out in config/optout.txt: never shown)
* alltime gpu_clock_hours  hammer: alice 5000, bob 12; merged the same
* rolling-30d clock_hours  hammer: bob 50, alice 20; bell: frank 70; NO merged file (the TUI sums)
* bell alltime failed_jobs.json is corrupt JSON (the TUI reports it and keeps going)
"""

import json
import os

import pytest

ASOF = "2026-11-23T10:00:00Z"

BOARDS = {
    # (scope, window, metric): {user: value}
    ("hammer", "alltime", "clock_hours"): {
        "alice": 1234.5,
        "bob": 800,
        "carol": 800,
        "dave": 12.25,
        "eve": 0.5,
    },
    ("bell", "alltime", "clock_hours"): {"frank": 950, "alice": 100, "bob": 10},
    ("ALL", "alltime", "clock_hours"): {
        "alice": 1334.5,
        "frank": 950,
        "bob": 810,
        "carol": 800,
        "dave": 12.25,
        "eve": 0.5,
        "mallory": 99999,
    },
    ("hammer", "alltime", "gpu_clock_hours"): {"alice": 5000, "bob": 12},
    ("ALL", "alltime", "gpu_clock_hours"): {"alice": 5000, "bob": 12},
    ("hammer", "rolling-30d", "clock_hours"): {"bob": 50, "alice": 20},
    ("bell", "rolling-30d", "clock_hours"): {"frank": 70},
}


def board_path(root: str, scope: str, window: str, metric: str) -> str:
    if scope == "ALL":
        return os.path.join(root, "leaderboards", window, metric + ".json")
    return os.path.join(root, "clusters", scope, "agg", "leaderboards", window, metric + ".json")


def write_board(root: str, scope: str, window: str, metric: str, values: dict) -> str:
    """Write one leaderboard file the way the poller does (ranked, ties share a rank)."""
    ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    rows, previous, rank = [], None, 0
    for position, (user, value) in enumerate(ordered, 1):
        if value != previous:
            rank, previous = position, value
        rows.append({"rank": rank, "user": user, "value": value})
    path = board_path(root, scope, window, metric)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {"asof": ASOF, "window": window, "metric": metric, "cluster": scope, "rows": rows}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(doc, handle)
    return path


def build_root(root: str) -> str:
    for (scope, window, metric), values in BOARDS.items():
        write_board(root, scope, window, metric, values)
    bad = board_path(root, "bell", "alltime", "failed_jobs")
    with open(bad, "w", encoding="utf-8") as handle:
        handle.write('{"asof": "x", "rows": [\n  {"rank": 1,,}\n')
    os.makedirs(os.path.join(root, "config"), exist_ok=True)
    with open(os.path.join(root, "config", "optout.txt"), "w", encoding="utf-8") as handle:
        handle.write("# users who asked not to be shown\nmallory\n")
    return root


@pytest.fixture
def sb_root(tmp_path):
    """Return the path of a fresh fixture root (see the module docstring)."""
    return build_root(str(tmp_path / "root"))


@pytest.fixture
def empty_root(tmp_path):
    """Return an existing but empty scoreboard root (no poller has run)."""
    path = tmp_path / "empty"
    path.mkdir()
    return str(path)


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path, monkeypatch):
    """Keep the tester's own ~/.slurm_scoreboard and SLURM_SB_* out of every test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("SLURM_SB_ROOT", "SLURM_SB_CLUSTER", "SLURM_SB_CONFIG", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def board_writer():
    """Return ``write_board(root, scope, window, metric, {user: value})`` for tests that need odd data."""
    return write_board
