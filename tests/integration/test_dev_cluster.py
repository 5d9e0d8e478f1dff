"""scripts/dev-cluster: the real single-node Slurm 22.05 cluster the other Slurm tests use."""

# ruff: noqa: F811  -- pytest fixtures imported from tests/slurm_fixtures.py are redefined as arguments
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, home of slurm_fixtures
from slurm_fixtures import (  # noqa: F401
    DEV_CLUSTER,
    SlurmCluster,
    set_max_array_size,
    slurm_client,
    slurm_cluster,
    slurm_jobs,
)

from slurmctl.errors import SubmissionError
from slurmctl.slurm import SlurmClient

pytestmark = pytest.mark.slurm

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/dev-cluster up needs root")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEV_CLUSTER), *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_status_reports_every_part_up(slurm_cluster: SlurmCluster):
    result = run("status")
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "controller", "node", "accounting"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(part))
        assert "DOWN" not in line


@needs_root
def test_up_is_idempotent_and_quiet(slurm_cluster: SlurmCluster):
    first = run("up")
    second = run("up")
    for result in (first, second):
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("dev-cluster: up: cluster 'dev'")
        assert len(result.stdout.strip().splitlines()) == 1


def test_usage_error_exits_2():
    result = run("sideways")
    assert result.returncode == 2 and "usage:" in result.stderr


@needs_root
def test_bad_knob_is_a_clear_error(slurm_cluster: SlurmCluster):
    result = run("up", env=dict(os.environ, DEV_CLUSTER_MAX_ARRAY_SIZE="lots"))
    assert result.returncode == 1
    assert "DEV_CLUSTER_MAX_ARRAY_SIZE must be an integer" in result.stderr


def test_node_partition_gres_and_accounting(slurm_cluster: SlurmCluster, slurm_client: SlurmClient):
    nodes = slurm_client.sinfo()
    assert [n.partition for n in nodes] == ["debug"]
    node = nodes[0]
    assert node.name == os.uname().nodename.split(".")[0]
    assert node.cpus == os.cpu_count()
    assert node.gres == "gpu:a100:2"
    clusters = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "cluster", "format=cluster"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert slurm_cluster.config.cluster_name in clusters.stdout.split()
    assert slurm_cluster.config.def_mem_per_cpu == 256  # else every job takes the whole node's memory


@needs_root
def test_max_array_size_can_be_switched_and_restored(slurm_cluster: SlurmCluster, slurm_client: SlurmClient):
    options = {"array": "0-1500", "hold": True, "output": "/dev/null", "job-name": "it-bigarray"}
    try:
        set_max_array_size(2001)
        assert slurm_client.config().max_array_size == 2001
        job = slurm_client.sbatch(wrap="true", options=options)
        slurm_client.scancel([job])
    finally:
        set_max_array_size(1001)
    assert slurm_client.config().max_array_size == 1001
    with pytest.raises(SubmissionError, match="Invalid job array specification"):
        slurm_client.sbatch(wrap="true", options=options)
