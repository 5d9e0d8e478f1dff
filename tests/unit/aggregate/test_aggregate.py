"""The hierarchical merge: every format, every item exactly once, checksums re-verified at each
level, schema evolution, resumability and the CLI's --status and --redo-level."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from slurmctl.aggregate import Settings, aggregate, node
from slurmctl.aggregate import plan as plans
from slurmctl.aggregate.run import _specs
from slurmctl.aggregate.synthetic import publish_job
from slurmctl.errors import ChecksumMismatchError, ResultsError
from slurmctl.storage import keys
from slurmctl.storage.local import local_backend

REPO = Path(__file__).resolve().parents[3]


def read_ids(path: Path, fmt: str) -> list[int]:
    if fmt == "parquet":
        return pq.read_table(path, columns=["_item_id"]).column(0).to_pylist()
    if fmt == "sqlite":
        with sqlite3.connect(path) as db:
            return [r[0] for r in db.execute("SELECT _item_id FROM results ORDER BY rowid")]
    if fmt == "csv":
        with open(path, newline="") as f:
            return [int(r["_item_id"]) for r in csv.DictReader(f)]
    return [json.loads(line)["_item_id"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def job10k(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    publish_job(local_backend(root, fsync=False), "big", 10_000, 1)
    return root


@pytest.mark.parametrize("fmt", ["parquet", "sqlite", "csv", "jsonl"])
def test_10k_results_merge_into_each_format_exactly_once(job10k, tmp_path, fmt):
    backend = local_backend(job10k)
    out = tmp_path / f"out.{fmt}"
    m = aggregate(backend, "big", out, fmt, settings=Settings(fan_in=64, processes=2))
    assert m.levels == [157, 3, 1] and m.nodes_run == 161 and m.tasks == 10_000
    assert read_ids(out, fmt) == list(range(10_000))  # each id once, in input order
    assert m.rows == 10_000 and m.items_ok == 10_000
    x = {c["name"]: c for c in m.columns}["x"]
    assert (x["type"], x["nulls"], x["min"], x["max"]) == ("int", 0, 0, 19_998)
    # A second run finds every node valid: nothing is merged again, the output is the same.
    again = aggregate(backend, "big", out, fmt, settings=Settings(fan_in=64, processes=2))
    assert again.nodes_run == 0 and again.output_sha256 == m.output_sha256


def test_every_level_verifies_its_inputs(tmp_path):
    backend = local_backend(tmp_path / "root")
    publish_job(backend, "j", 20, 3)
    out = tmp_path / "out.parquet"
    settings = Settings(fan_in=4, processes=1)
    aggregate(backend, "j", out, settings=settings)
    # A damaged task result: the level-0 node that reads it names it.
    data = backend.objects.local_path(keys.result_data("j", "t0000007", 1))
    data.write_bytes(data.read_bytes().replace(b'"x":42', b'"x":43'))
    with pytest.raises(ChecksumMismatchError, match=r"t0000007/a1\.jsonl"):
        aggregate(backend, "j", out, settings=settings, redo_level=0)
    # A node output changed under a valid-looking marker: its parent refuses it.
    publish_job(backend, "k", 20, 3)
    aggregate(backend, "k", out, settings=settings)
    damaged = backend.objects.local_path(keys.aggregate_node("k", 0, 2, ".parquet"))
    damaged.write_bytes(damaged.read_bytes() + b"x")
    parent = _specs(plans.load(backend, "k"), 1, settings, out)[0]
    with pytest.raises(ChecksumMismatchError, match=r"L00/n000002\.parquet"):
        node.run(backend, parent, tmp_path)
    # A re-run redoes only the broken node: it comes out the same, so the nodes above stay valid.
    m = aggregate(backend, "k", out, settings=settings)
    assert m.nodes_run == 1
    assert read_ids(out, "parquet") == list(range(60))


def _evolving(task: int, item: int) -> list[dict]:
    row = {"x": item, "s": f"r{item}"}
    if task >= 3:
        row["extra"] = f"e{item}"  # a new column from task 3 on
    if task == 5:
        row["x"] = item + 0.5  # int -> float
    return [row]


@pytest.mark.parametrize("fmt", ["parquet", "sqlite", "csv", "jsonl"])
def test_a_new_column_and_int_to_float_merge(tmp_path, fmt):
    backend = local_backend(tmp_path / "root")
    publish_job(backend, "j", 8, 2, _evolving)
    out = tmp_path / f"out.{fmt}"
    m = aggregate(backend, "j", out, settings=Settings(fan_in=2, processes=1))
    cols = {c["name"]: c for c in m.columns}
    assert list(cols) == ["_item_id", "x", "s", "extra"]
    assert cols["x"]["type"] == "float" and cols["extra"]["type"] == "string"
    assert cols["extra"]["nulls"] == 6 and (cols["x"]["min"], cols["x"]["max"]) == (0, 15)
    assert read_ids(out, fmt) == list(range(16))
    if fmt == "parquet":
        t = pq.read_table(out)
        assert str(t.schema.field("x").type) == "double"
        assert t.column("extra").to_pylist()[:8] == [None] * 6 + ["e6", "e7"]
        assert t.column("x").to_pylist()[10:12] == [10.5, 11.5]
    if fmt == "sqlite":
        with sqlite3.connect(out) as db:
            assert db.execute("SELECT typeof(x), x FROM results WHERE _item_id = 1").fetchone() == (
                "real",
                1.0,
            )
    if fmt == "csv":
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        assert (rows[1]["x"], rows[1]["extra"], rows[7]["extra"]) == ("1.0", "", "e7")


@pytest.mark.parametrize("fan_in", [16, 2])  # found at level 0, or only where two nodes meet
@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_string_column_turned_int_fails_naming_task_column_and_types(tmp_path, fmt, fan_in):
    def rows(task: int, item: int) -> list[dict]:
        return [{"x": item, "s": item if task == 6 else f"r{item}"}]

    backend = local_backend(tmp_path / "root")
    publish_job(backend, "j", 8, 2, rows)
    with pytest.raises(ResultsError) as ei:
        aggregate(backend, "j", tmp_path / f"out.{fmt}", settings=Settings(fan_in=fan_in, processes=1))
    # fan-in 16: t0000006 meets t0000000 in one node; fan-in 2: it meets t0000007 first
    other = "t0000000" if fan_in == 16 else "t0000007"
    first, second = sorted([("t0000006", "int"), (other, "string")])
    assert ei.value.message == (
        f"column 's' has incompatible types in tasks {first[0]} and {second[0]}: {first[1]} and {second[1]}"
    )
    assert not (tmp_path / f"out.{fmt}").exists()


def test_types_conflicting_inside_one_task_name_it(tmp_path):
    backend = local_backend(tmp_path / "root")
    publish_job(backend, "j", 2, 2, lambda t, i: [{"v": "a" if i == 3 else True}])
    with pytest.raises(
        ResultsError, match=r"column 'v' has incompatible types in task t0000001: bool and string"
    ):
        aggregate(backend, "j", tmp_path / "o.jsonl", settings=Settings(fan_in=4, processes=1))


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLURMCTL_ROOT=str(root))
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_status_and_redo_level(tmp_path):
    root = tmp_path / "root"
    publish_job(local_backend(root), "j", 30, 2)
    r = cli("results", "j", "--status", root=root)
    assert r.returncode == 5 and "no aggregation plan" in r.stderr
    out = tmp_path / "o.sqlite"
    r = cli("results", "j", "-o", str(out), "-j", "1", root=root)
    assert r.returncode == 0, r.stderr
    r = cli("results", "j", "--status", root=root)
    assert r.returncode == 0
    assert "level 0: 1/1 root done" in r.stdout  # fan-in 256: one node
    # The job file's fan-in decides the tree; --redo-level redoes a level and those above.
    backend = local_backend(root)
    publish_job(backend, "k", 30, 2, config={"aggregate": {"fan_in": 4}, "handler": {"python_path": []}})
    assert cli("results", "k", "-o", str(out), root=root).returncode == 0
    before = out.read_bytes()
    r = cli("results", "k", "--status", root=root)
    assert [ln.strip() for ln in r.stdout.splitlines()[1:]] == [
        "level 0: 8/8 nodes done",
        "level 1: 2/2 nodes done",
        "level 2: 1/1 root done",
        "output: written (output/.done)",
    ]
    r = cli("results", "k", "-o", str(out), "--redo-level", "1", root=root)
    assert r.returncode == 0 and "level 0: merged 0 node(s), 8 already done" in r.stderr
    assert "level 1: merged 2 node(s)" in r.stderr and out.read_bytes() == before
    r = cli("results", "k", "-o", str(out), "--redo-level", "3", root=root)
    assert r.returncode == 2 and "levels 0..2" in r.stderr
    r = cli("results", "k", "-o", str(out), "-j", "0", root=root)
    assert r.returncode == 2 and "--processes 0" in r.stderr


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_row_outside_its_tasks_items_is_named(tmp_path, fmt):
    def rows(task: int, item: int) -> list[dict]:
        return [{"_item_id": 999 if (task, item) == (5, 11) else item, "x": item}]

    backend = local_backend(tmp_path / "root")
    publish_job(backend, "j", 8, 2, rows)
    with pytest.raises(
        ResultsError, match=r"task t0000005: row 2 has _item_id 999 outside its items 10\.\.11"
    ):
        aggregate(backend, "j", tmp_path / f"o.{fmt}", settings=Settings(fan_in=8, processes=1))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "sqlite"])
def test_merges_without_pyarrow(tmp_path, fmt):
    """pyarrow is the `parquet` extra: a core install merges JSON lines, CSV and SQLite without it
    (rows read one by one), in a process where importing pyarrow fails."""
    root = tmp_path / "root"
    publish_job(local_backend(root, fsync=False), "np", 40, 3)
    out = tmp_path / f"out.{fmt}"
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from pathlib import Path\n"
        "from slurmctl.aggregate import Settings, aggregate\n"
        "from slurmctl.storage.local import local_backend\n"
        f"m = aggregate(local_backend(Path({str(root)!r})), 'np', Path({str(out)!r}), {fmt!r},"
        " settings=Settings(fan_in=8, processes=1))\n"
        "print(m.rows)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "120", r.stderr
    assert sorted(read_ids(out, fmt)) == list(range(120))
