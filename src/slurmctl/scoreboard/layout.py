"""Paths of every file under the shared root (see docs/scoreboard.md, "Layout"). Pure functions."""

import os
import re

ALL = "ALL"
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def valid_cluster(name: str) -> bool:
    """Return True when ``name`` is usable as a cluster directory name (no slashes, no dot-dot). Pure."""
    return bool(_CLUSTER_RE.match(name or "")) and name != ALL


def cluster_dir(root: str, cluster: str) -> str:
    return os.path.join(root, "clusters", cluster)


def state_dir(root: str, cluster: str) -> str:
    return os.path.join(cluster_dir(root, cluster), "state")


def month_state(root: str, cluster: str, month: str) -> str:
    return os.path.join(state_dir(root, cluster), "months", month + ".state")


def bloom_file(root: str, cluster: str, month: str) -> str:
    return os.path.join(state_dir(root, cluster), "seen", month + ".bloom")


def cursor_file(root: str, cluster: str) -> str:
    return os.path.join(state_dir(root, cluster), "poll_cursor.json")


def lock_file(root: str, cluster: str) -> str:
    return os.path.join(state_dir(root, cluster), "lock.pid")


def health_file(root: str, cluster: str) -> str:
    return os.path.join(state_dir(root, cluster), "health.json")


def ratelimit_file(root: str, cluster: str) -> str:
    return os.path.join(state_dir(root, cluster), "ratelimit.json")


def users_registry(root: str, cluster: str) -> str:
    return os.path.join(state_dir(root, cluster), "users.json")


def archive_file(root: str, cluster: str) -> str:
    return os.path.join(state_dir(root, cluster), "archive.json")


def log_file(root: str, cluster: str) -> str:
    return os.path.join(state_dir(root, cluster), "log", "poll.jsonl")


def derived_marker(root: str, cluster: str) -> str:
    """The generation of month states the derived files reflect (lets a poll detect an interrupted one)."""
    return os.path.join(state_dir(root, cluster), "derived.json")


def user_file(root: str, cluster: str, user: str) -> str:
    return os.path.join(cluster_dir(root, cluster), "agg", "users", user + ".json")


def users_dir(root: str, cluster: str) -> str:
    return os.path.join(cluster_dir(root, cluster), "agg", "users")


def rollup_file(root: str, cluster: str, month: str) -> str:
    return os.path.join(cluster_dir(root, cluster), "agg", "rollups", "monthly", month + ".json")


def rollups_dir(root: str, cluster: str) -> str:
    return os.path.join(cluster_dir(root, cluster), "agg", "rollups", "monthly")


def leaderboards_dir(root: str, cluster: str) -> str:
    """Per-cluster leaderboards, or the merged ones at the root when ``cluster`` is ``ALL``."""
    if cluster == ALL:
        return os.path.join(root, "leaderboards")
    return os.path.join(cluster_dir(root, cluster), "agg", "leaderboards")


def leaderboard_file(root: str, cluster: str, window: str, metric: str) -> str:
    return os.path.join(leaderboards_dir(root, cluster), window, metric + ".json")


def table_file(root: str, cluster: str, window: str) -> str:
    return os.path.join(leaderboards_dir(root, cluster), window, "table.json")


def clusters_config(root: str) -> str:
    return os.path.join(root, "config", "clusters.json")


def policy_file(root: str) -> str:
    return os.path.join(root, "config", "policy.json")


def optout_file(root: str) -> str:
    return os.path.join(root, "config", "optout.txt")


def list_cluster_dirs(root: str) -> list:
    """Return the sorted names of cluster directories under ``root`` (empty if none). Reads the directory."""
    base = os.path.join(root, "clusters")
    try:
        names = os.listdir(base)
    except OSError:
        return []
    return sorted(n for n in names if valid_cluster(n) and os.path.isdir(os.path.join(base, n)))
