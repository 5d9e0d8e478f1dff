"""SIGKILL a merge at five kinds of points (real processes, seeded random N), run it again: the
output is byte-identical to an uninterrupted merge's, and every node that was done before the kill
is left alone — only the node in flight and those not started yet are merged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slurmctl.aggregate.synthetic import publish_job
from slurmctl.storage.local import local_backend

HERE = Path(__file__).resolve().parent
TASKS, FAN_IN = 200, 8  # levels of 25, 4 and 1 nodes
NODES = 30


def _rows(task: int, item: int) -> list[dict]:
    row: dict = {"x": item, "s": f"r{item}"}
    if task % 7 == 3:
        row["extra"] = [item, "a"]  # a new column (JSON) in some tasks
    if task % 11 == 5:
        row["x"] = item / 4  # int -> float
    return [row]


def run(*args: str, root: Path, kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLURMCTL_ROOT=str(root))
    cmd = (
        [sys.executable, str(HERE / "agg_killpoint.py"), kill[0], str(kill[1])]
        if kill
        else [
            sys.executable,
            "-m",
            "slurmctl",
        ]
    )
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    config = {"aggregate": {"fan_in": FAN_IN, "processes": 1}, "handler": {"python_path": []}}
    publish_job(local_backend(root, fsync=False), "j", TASKS, 5, _rows, config=config)
    refs = {}
    for fmt in ("parquet", "sqlite", "csv"):
        out = root / f"ref.{fmt}"
        r = run("results", "j", "-o", str(out), root=root)
        assert r.returncode == 0, r.stderr
        refs[fmt] = out.read_bytes()
    return root, refs


def _node_files(root: Path) -> dict[str, tuple[int, int]]:
    agg = root / "jobs" / "j" / "aggregate"
    done = {str(p.relative_to(agg)).removesuffix(".done") for p in agg.glob("L*/n*.done")}
    return {  # every file of every node that has a .done: L01/n000003.sqlite -> (inode, mtime)
        str(p.relative_to(agg)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in agg.glob("L*/n*")
        if str(p.relative_to(agg)).split(".")[0] in done
    }


@pytest.mark.parametrize(
    ("point", "most", "fmt"),
    [
        ("plan", 1, "parquet"),
        ("node-written", NODES, "parquet"),  # any node, the root included
        ("node-output", NODES - 1, "sqlite"),
        ("node-manifest", NODES - 1, "parquet"),
        ("node-done", NODES - 1, "csv"),
        ("output-manifest", 1, "sqlite"),
    ],
)
def test_a_killed_merge_resumes_with_identical_output(job, tmp_path, replay, point, most, fmt):
    root, refs = job
    for d in ("aggregate", "output"):
        shutil.rmtree(root / "jobs" / "j" / d, ignore_errors=True)
    n = replay.rng.randint(1, most)
    replay.note(f"SIGKILL at {point} #{n} ({fmt})")
    out = tmp_path / f"out.{fmt}"
    r = run("results", "j", "-o", str(out), "-j", "1", root=root, kill=(point, n))
    assert r.returncode == -9, f"{replay}\n{r.stderr}"
    before = _node_files(root)
    done_before = {k for k in before if k.endswith(".done")}
    r = run("results", "j", "-o", str(out), "-j", "1", root=root)
    assert r.returncode == 0, f"{replay}\n{r.stderr}"
    assert out.read_bytes() == refs[fmt], replay
    manifest = json.loads((root / "jobs" / "j" / "output" / "manifest.json").read_text())
    assert manifest["nodes_run"] == NODES - len(done_before), replay
    after = _node_files(root)
    assert {k: after.get(k) for k in before} == before, replay  # done nodes were not touched
