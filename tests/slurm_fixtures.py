"""Pytest fixtures and helpers for tests that need the real dev Slurm cluster.

Use from tests/conftest.py with ``pytest_plugins = ["slurm_fixtures"]`` (tests/ is on sys.path) or
``from slurm_fixtures import *``. Then mark tests ``@pytest.mark.slurm`` and request ``slurm_cluster``.

``slurm_cluster`` checks that the cluster answers (``scontrol ping`` and ``sinfo``). It does NOT start
the cluster: scripts/test runs ``scripts/dev-cluster up`` before pytest. When the cluster is missing
the fixture FAILS if CI=true and skips with a one-line reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from slurmctl.slurm import CommandRunner, SlurmClient, SlurmConfig, Snapshot, StatusWatcher

REPO = Path(__file__).resolve().parent.parent
DEV_CLUSTER = REPO / "scripts" / "dev-cluster"


@dataclass(frozen=True)
class SlurmCluster:
    """The reachable dev cluster: its config and the node/partition tests should use."""

    config: SlurmConfig
    partition: str
    node: str
    cpus: int


def _unavailable(reason: str) -> None:
    message = f"dev Slurm cluster unavailable: {reason} (run: sudo scripts/dev-cluster up)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _probe() -> SlurmCluster:
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        _unavailable("Slurm commands not on PATH")
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        _unavailable("scontrol ping timed out")
    if ping.returncode != 0 or "is UP" not in ping.stdout:
        _unavailable(f"scontrol ping: {(ping.stdout + ping.stderr).strip() or 'no answer'}")
    client = SlurmClient(CommandRunner(timeout=30))
    nodes = client.sinfo()
    usable = [n for n in nodes if n.state.rstrip("*~#") in {"idle", "mixed", "allocated", "completing"}]
    if not usable:
        _unavailable(f"no usable node in sinfo: {[(n.name, n.state) for n in nodes]}")
    node = usable[0]
    return SlurmCluster(config=client.config(), partition=node.partition, node=node.name, cpus=node.cpus)


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The dev cluster, checked reachable once per session (fail under CI=true, skip otherwise)."""
    return _probe()


@pytest.fixture
def slurm_client(slurm_cluster: SlurmCluster) -> SlurmClient:
    """A fresh SlurmClient with its own call counters (``client.runner.calls``)."""
    return SlurmClient(CommandRunner(timeout=60))


@pytest.fixture
def slurm_jobs(slurm_client: SlurmClient) -> Iterator[list[str]]:
    """A list to append submitted job ids to; whatever is still queued at teardown is cancelled."""
    ids: list[str] = []
    yield ids
    if ids:
        SlurmClient(CommandRunner(timeout=30)).scancel(ids)


def wait_for_jobs(
    client: SlurmClient,
    job_ids: list[str],
    *,
    submitted_at: datetime,
    expected_tasks: dict[str, int] | None = None,
    timeout: float = 180.0,
) -> Snapshot:
    """Wait with the production StatusWatcher until the jobs are finished; return the last Snapshot.

    Raises WatchTimeoutError after ``timeout`` seconds (generous: the machine is shared).
    """
    watcher = StatusWatcher(client, job_ids, submitted_at=submitted_at, expected_tasks=expected_tasks)
    return watcher.wait(timeout=timeout)


def set_max_array_size(value: int) -> None:
    """Switch the dev cluster's MaxArraySize (rewrites slurm.conf + scontrol reconfigure; ~2 s).

    Needs root. Restore the default with ``set_max_array_size(1001)`` in a finally block.
    """
    env = dict(os.environ, DEV_CLUSTER_MAX_ARRAY_SIZE=str(value))
    subprocess.run([str(DEV_CLUSTER), "up"], env=env, check=True, timeout=180, capture_output=True)
