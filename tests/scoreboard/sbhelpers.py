"""Shared helpers of the scoreboard tests (not the TUI's)."""

import datetime
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(HERE, "golden")
FAKE_SACCT = os.path.join(HERE, "fake_sacct.py")
BIN = os.path.join(REPO, "bin", "slurm-sb")
PY36 = "/root/.pyenv/versions/3.6.15/bin/python3"

sys.path.insert(0, os.path.join(REPO, "src"))

from slurmctl.scoreboard import config, derive, store  # noqa: E402
from slurmctl.scoreboard.schemas import DEFAULT_FAILURE_STATES  # noqa: E402

FAIL = list(DEFAULT_FAILURE_STATES)


def golden(name: str) -> str:
    return os.path.join(GOLDEN, name)


def read_lines(path: str) -> list[str]:
    with open(path) as fh:
        return fh.readlines()


def cfg(root: str, cluster: str = "c1", **over) -> config.Config:
    """A Config for tests: fast retries, no rate sleeps, no /home discovery, the fake sacct."""
    flags = {
        "root": root,
        "cluster": cluster,
        "sacct": FAKE_SACCT,
        "rate_limit_per_min": 6000.0,
        "backoff_base_sec": 0.01,
        "home_dir": "",
        "lag_sec": 0,
        "overlap_sec": 900,
    }
    flags.update(over)
    return config.load(flags, environ={}, config_path=os.path.join(root, "no-such-config.yaml"))


def month_totals(root: str, cluster: str) -> dict[str, list[int]]:
    """Exact all-time sums per user as committed (independent of derived files)."""
    return derive.alltime_totals(root, cluster)[0]


def utc(*a: int) -> float:
    return (datetime.datetime(*a) - datetime.datetime(1970, 1, 1)).total_seconds()


__all__ = ["store"]


def load_json(path: str):
    with open(path) as fh:
        return __import__("json").load(fh)


def read_text(path: str) -> str:
    with open(path) as fh:
        return fh.read()
