"""``aggregate.where: slurm`` on the dev cluster: ``slurmctl results`` of an 80-task job merges
each tree level (fan-in 8: 10 + 2 + 1 nodes) as one Slurm array, byte-identical to the local
merge of the same results. A PATH shim counts the Slurm commands: one sbatch per level, one
scontrol (MaxArraySize), a bounded number of squeue polls; a re-run submits nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from slurmctl.aggregate import Settings, aggregate
from slurmctl.aggregate.synthetic import publish_job
from slurmctl.storage.local import local_backend
from tests.e2e.cli import slurmctl

pytestmark = pytest.mark.slurm

SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo")


def shim(tmp: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose Slurm commands log their argv (and sbatch the id it printed), then run the real ones."""
    bin_dir, log = tmp / "shim", tmp / "slurm-calls.log"
    bin_dir.mkdir()
    for name in SLURM_COMMANDS:
        real = subprocess.run(["which", name], capture_output=True, text=True, check=True).stdout.strip()
        body = f'echo "{name} $*" >> {log}\n'
        if name == "sbatch":
            body += f'out=$({real} "$@"); rc=$?\necho "$out"\necho "submitted $out" >> {log}\nexit $rc\n'
        else:
            body += f'exec {real} "$@"\n'
        script = bin_dir / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_results_where_slurm_equals_local_merge(slurm_cluster, tmp_path):
    job = f"aggslurm-{uuid.uuid4().hex[:8]}"
    config = {
        "handler": {"python_path": []},
        "resources": {"cpus": 1, "mem_gb": 1.0, "time_min": 5, "partition": slurm_cluster.partition},
        "aggregate": {"where": "slurm", "fan_in": 8, "resources": {"mem_gb": 0.25}},
        "executor": {"kind": "slurm", "poll_min_s": 0.5, "poll_max_s": 5.0},
        "output": {"format": "parquet", "path": None},
    }
    rows = lambda t, i: [{"x": i * 3, "s": f"r{i}", "f": i / 7}]  # noqa: E731
    for name in ("local", "slurm"):
        publish_job(local_backend(tmp_path / name, fsync=False), job, 80, 5, rows, config=config)
    local = aggregate(
        local_backend(tmp_path / "local"), job, tmp_path / "local.parquet", settings=Settings(fan_in=8)
    )
    env, log = shim(tmp_path)
    out = tmp_path / "slurm.parquet"
    try:
        r = slurmctl("results", job, "-o", str(out), root=tmp_path / "slurm", env=env, timeout=600)
    finally:
        lines = log.read_text().splitlines() if log.exists() else []
        ids = [line.split()[1].split(";")[0] for line in lines if line.startswith("submitted ")]
        if ids:
            subprocess.run(["scancel", *ids], check=False)
    assert r.code == 0, r.err
    assert sha(out) == sha(tmp_path / "local.parquet") == local.output_sha256
    assert local.levels == [10, 2, 1]
    commands = [line.split()[0] for line in lines if not line.startswith("submitted ")]
    assert commands.count("sbatch") == 3 and len(ids) == 3  # one array per level
    assert commands.count("scontrol") == 1  # MaxArraySize
    # Polls: one squeue (or sacct) per poll, naming the level's one array; growing intervals, bounded.
    polls = [line.split() for line in lines if line.startswith(("squeue ", "sacct "))]
    assert 3 <= len(polls) <= 120, lines
    assert all(p[p.index("-j") + 1] in ids for p in polls if "-j" in p), lines
    assert set(commands) <= {"sbatch", "squeue", "sacct", "scontrol"}
    assert "level 0: merged 10 node(s), 0 already done" in r.err
    # A re-run finds every node valid: no Slurm command at all.
    log.unlink()
    r = slurmctl("results", job, "-o", str(out), root=tmp_path / "slurm", env=env, timeout=120)
    assert r.code == 0 and not log.exists(), r.err
    assert sha(out) == local.output_sha256
