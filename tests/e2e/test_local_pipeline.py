"""Issue 2 acceptance on the embedded default (local backend + local executor), through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.e2e.cli import REPO, read_jsonl, slurmctl, submit_wait, write_job

EXAMPLES = REPO / "examples"


def copy_example(name: str, tmp: Path) -> Path:
    dest = tmp / name
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("out", "__pycache__"))
    return dest


def test_textstats_example_exactly_once(tmp_path):
    ex = copy_example("textstats", tmp_path)
    job_id, r = submit_wait(ex / "job.yaml", tmp_path / "root")
    assert r.code == 0, r.err
    r = slurmctl("results", job_id, root=tmp_path / "root")
    assert r.code == 0, r.err
    table = pq.read_table(ex / "out" / "textstats.parquet").to_pylist()
    ids = sorted(row["_item_id"] for row in table)
    assert ids == list(range(2000))  # none lost, none duplicated
    assert sorted(row["doc_id"] for row in table) == [f"doc-{i:05d}" for i in range(2000)]


def test_numeric_parquet_example_exactly_once(tmp_path):
    ex = copy_example("numeric", tmp_path)
    job_id, r = submit_wait(ex / "job.yaml", tmp_path / "root")
    assert r.code == 0, r.err
    assert slurmctl("results", job_id, root=tmp_path / "root").code == 0
    rows = pq.read_table(ex / "out" / "numeric.parquet").to_pylist()
    assert sorted(r["sample"] for r in rows) == list(range(1000))
    assert sorted(r["_item_id"] for r in rows) == list(range(1000))


def test_http_example_rows_per_word_and_failed_items(tmp_path):
    ex = copy_example("http_api", tmp_path)
    p = subprocess.run(
        [sys.executable, str(ex / "run.py"), "--root", str(tmp_path / "root")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 9, p.stderr  # finished, with the refused words reported as failed items
    records = read_jsonl(ex / "data" / "words.jsonl")
    bad = {r["id"] for r in records if any(not w.isalpha() for w in r["words"])}
    import csv

    with open(ex / "out" / "wordscore.csv") as f:
        rows = list(csv.DictReader(f))
    good_words = sum(len(r["words"]) for r in records if r["id"] not in bad)
    assert len(rows) == good_words  # several rows per item, exactly once
    assert {int(r["record"]) for r in rows} == {r["id"] for r in records} - bad
    errors = read_jsonl(ex / "out" / "wordscore.csv.errors.jsonl")
    assert {e["item_id"] for e in errors} == bad
    assert {e["category"] for e in errors} == {"permanent"}
    arrivals = read_jsonl(ex / "out" / "arrivals.jsonl")
    assert len(arrivals) >= good_words


SLOW_HANDLER = """
import time
def handle(record, ctx):
    time.sleep(0.002)
    return {"n": record["n"], "sq": record["n"] ** 2}
"""


FAST_HANDLER = "def handle(record, ctx):\n    return {'n': record['n']}\n"


def make_job(tmp: Path, n: int, *, items: int = 1000, handler: str = SLOW_HANDLER, extra: str = "") -> Path:
    (tmp / "h.py").write_text(handler)
    with open(tmp / "in.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"n": i}) + "\n")
    return write_job(
        tmp,
        f"name: t\ninput: {{path: in.jsonl}}\nhandler: {{function: 'h:handle'}}\n"
        f"batch: {{items: {items}}}\noutput: {{format: jsonl}}\n{extra}",
    )


def worker_argv(root: Path, job_id: str, task: str) -> list[str]:
    """The CLI's worker command for one task, as an executor would run it."""
    spec = json.dumps({"kind": "local", "root": str(root)})
    return [sys.executable, "-m", "slurmctl", "worker", "--backend", spec, "--job", job_id, "--task", task]


def test_sigkill_mid_task_then_rerun_is_exactly_once(tmp_path):
    from slurmctl.storage import keys

    job = make_job(tmp_path, 3000, items=3000)
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)  # partition only
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    env = dict(os.environ, SLURMCTL_ROOT=str(root), SLURMCTL_SCRATCH=str(tmp_path / "scratch"))
    argv = worker_argv(root, job_id, "t0000000")
    w = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    ckpt = tmp_path / "scratch" / f"slurmctl-{os.getuid()}" / job_id / "t0000000" / "a1" / "checkpoint.sqlite"
    deadline = time.time() + 60
    import sqlite3

    def committed() -> int:
        try:
            with sqlite3.connect(ckpt) as db:
                return db.execute("select count(*) from items").fetchone()[0]
        except sqlite3.Error:
            return 0

    while time.time() < deadline and committed() < 600:
        time.sleep(0.05)
    w.send_signal(signal.SIGKILL)
    w.wait()
    done_before = committed()
    assert 0 < done_before < 3000, "the kill must land mid-task"
    assert not (root / keys.done_marker(job_id, "t0000000")).exists()
    w2 = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert w2.returncode == 0, w2.stderr
    r = slurmctl("results", job_id, "-o", str(tmp_path / "out.jsonl"), root=root)
    assert r.code == 0, r.err
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert sorted(row["n"] for row in rows) == list(range(3000))
    assert sorted(row["_item_id"] for row in rows) == list(range(3000))
    status = json.loads(slurmctl("inspect", job_id, "t0000000", root=root).out)
    assert status["state"]["attempt"] == 2
    assert status["result"]["items_resumed"] >= done_before  # resumed from the node-local checkpoint


def test_interrupted_worker_resumes_from_checkpoint(tmp_path):
    job = make_job(tmp_path, 2000, items=2000)
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    job_id = r.out.strip().splitlines()[-1]
    env = dict(os.environ, SLURMCTL_SCRATCH=str(tmp_path / "scratch-a"))
    argv = worker_argv(root, job_id, "t0000000")
    w = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    w.send_signal(signal.SIGTERM)
    _, err = w.communicate(timeout=60)
    assert w.returncode == 75, err
    segments = root / "jobs" / job_id / "checkpoints" / "t0000000"
    assert any(segments.glob("*.seg"))  # in the shared store: another node can resume
    # Resume on "another node": different scratch, so only the store's snapshot carries progress.
    env["SLURMCTL_SCRATCH"] = str(tmp_path / "scratch-b")
    w2 = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert w2.returncode == 0, w2.stderr
    manifest = json.loads(slurmctl("inspect", job_id, "t0000000", root=root).out)["result"]
    assert manifest["items_ok"] == 2000 and manifest["rows"] == 2000
    assert manifest["items_resumed"] > 0  # the resumed attempt skipped the items of the snapshot


# --- bad input: a clear message, a non-zero exit code, nothing finished lost --------------------


def test_malformed_config(tmp_path):
    job = write_job(tmp_path, "name: t\ninput: {path: x.jsonl\nhandler: 3\n")
    r = slurmctl("submit", str(job), root=tmp_path / "root")
    assert r.code == 2
    assert "job.yaml:" in r.err and "not valid YAML" in r.err
    assert "Traceback" not in r.err


def test_unknown_field(tmp_path):
    job = write_job(
        tmp_path, "name: t\ninput: {path: x.jsonl}\nhandler: {function: 'h:f'}\nbatch: {itms: 5}\n"
    )
    r = slurmctl("validate", str(job), root=tmp_path / "root")
    assert r.code == 2
    assert "job.yaml:4: batch.itms: unknown field" in r.err
    assert "Traceback" not in r.err


def test_missing_handler_module(tmp_path):
    job = make_job(tmp_path, 10)
    job.write_text(job.read_text().replace("h:handle", "nosuchmodule:handle"))
    r = slurmctl("submit", str(job), root=tmp_path / "root")
    assert r.code == 4
    assert "handler module 'nosuchmodule' not found" in r.err
    assert "Traceback" not in r.err


def test_handler_raising_on_some_items(tmp_path):
    handler = (
        "def handle(record, ctx):\n"
        "    if record['n'] % 7 == 3:\n"
        "        raise ValueError(f\"bad n {record['n']}\")\n"
        "    return {'n': record['n']}\n"
    )
    job = make_job(tmp_path, 500, items=100, handler=handler)
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 9, r.err  # finished, some items failed
    r = slurmctl("results", job_id, "-o", str(tmp_path / "o.jsonl"), root=root)
    assert r.code == 9
    assert "item(s) failed" in r.err
    rows = read_jsonl(tmp_path / "o.jsonl")
    bad = {n for n in range(500) if n % 7 == 3}
    assert sorted(r["n"] for r in rows) == sorted(set(range(500)) - bad)
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert {e["item_id"] for e in errors} == bad
    assert all(
        e["type"] == "ValueError" and e["category"] == "permanent" and "bad n" in e["message"] for e in errors
    )
    assert (
        slurmctl("results", job_id, "-o", str(tmp_path / "o2.jsonl"), "--allow-failed-items", root=root).code
        == 0
    )


def test_malformed_and_non_utf8_records_are_reported_with_lines(tmp_path):
    job = make_job(tmp_path, 20)
    data = (tmp_path / "in.jsonl").read_bytes().splitlines(keepends=True)
    data[4] = b'{"n": 4,,}\n'
    data[9] = b'{"n": "\xff\xfe"}\n'
    (tmp_path / "in.jsonl").write_bytes(b"".join(data))
    r = slurmctl("submit", str(job), root=tmp_path / "root")
    assert r.code == 3
    assert "2 malformed record(s)" in r.err
    assert "in.jsonl:5:" in r.err and "in.jsonl:10:" in r.err
    # Accepting the rejects runs the good records, and the rejects stay on record.
    job.write_text(job.read_text() + "")
    job2 = write_job(
        tmp_path,
        job.read_text().replace("input: {path: in.jsonl}", "input: {path: in.jsonl, max_rejects: 5}"),
        "job2.yaml",
    )
    job_id, r = submit_wait(job2, tmp_path / "root")
    assert r.code == 0, r.err
    assert "2 malformed record(s) rejected" in r.err
    assert slurmctl("results", job_id, "-o", str(tmp_path / "o.jsonl"), root=tmp_path / "root").code == 0
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 18


def test_empty_input(tmp_path):
    job = make_job(tmp_path, 0)
    r = slurmctl("submit", str(job), root=tmp_path / "root")
    assert r.code == 3
    assert "in.jsonl" in r.err and "Traceback" not in r.err


def test_single_50mb_record(tmp_path):
    job = make_job(tmp_path, 5)
    with open(tmp_path / "in.jsonl", "a") as f:
        f.write(json.dumps({"n": 5, "blob": "x" * (50 * 2**20)}) + "\n")
    r = slurmctl("submit", str(job), root=tmp_path / "root")
    assert r.code == 3
    assert "in.jsonl:6:" in r.err and "max_rejects" in r.err
    assert "Traceback" not in r.err


def test_unwritable_output_path_loses_nothing(tmp_path):
    job = make_job(tmp_path, 50, items=10)
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    (tmp_path / "file").write_text("x")
    r = slurmctl("results", job_id, "-o", str(tmp_path / "file" / "out.jsonl"), root=root)
    assert r.code == 8
    assert "cannot write the output" in r.err and "Traceback" not in r.err
    r = slurmctl("results", job_id, "-o", str(tmp_path / "ok.jsonl"), root=root)
    assert r.code == 0
    assert len(read_jsonl(tmp_path / "ok.jsonl")) == 50


def test_status_json_and_unknown_job(tmp_path):
    job = make_job(tmp_path, 30, items=10)
    root = tmp_path / "root"
    job_id, _ = submit_wait(job, root)
    st = json.loads(slurmctl("status", job_id, "--json", root=root).out)
    assert st["state"] == "succeeded" and st["items_done"] == 30 and st["task_states"]["succeeded"] == 3
    r = slurmctl("status", "nope", root=root)
    assert r.code == 5 and "no job 'nope'" in r.err
    r = slurmctl("status", f"--root={root}", job_id, root=tmp_path / "elsewhere")
    assert r.code == 0 and f"{job_id} — succeeded" in r.out, r.err
    assert "tasks          succeeded=3" in r.out and "items          30/30 done, 0 failed" in r.out
    # without --root or SLURMCTL_ROOT: ~/.slurmctl
    home_env = {k: v for k, v in os.environ.items() if k != "SLURMCTL_ROOT"} | {"HOME": str(tmp_path / "h")}
    answers = [
        subprocess.run(
            [sys.executable, "-m", "slurmctl", "status", "nope", *extra],
            capture_output=True,
            text=True,
            env=home_env,
            timeout=120,
        )
        for extra in ((), ("--json",))
    ]
    assert {(a.returncode, a.stdout, a.stderr) for a in answers} == {(5, "", answers[0].stderr)}, answers
    assert f"local:{tmp_path / 'h' / '.slurmctl'}" in answers[0].stderr
    assert slurmctl("status", "--help", root=root).code == 0
    r = slurmctl("status", job_id, "--bogus", root=root)
    assert r.code == 2 and "--bogus" in r.err


@pytest.mark.parametrize("fmt", ["sqlite", "csv", "parquet"])
def test_output_formats(tmp_path, fmt):
    job = make_job(tmp_path, 40, items=15)
    root = tmp_path / "root"
    job_id, _ = submit_wait(job, root)
    out = tmp_path / f"o.{fmt}"
    assert slurmctl("results", job_id, "-o", str(out), root=root).code == 0
    if fmt == "sqlite":
        import sqlite3

        with sqlite3.connect(out) as db:
            assert db.execute("select count(*), count(distinct _item_id) from results").fetchone() == (40, 40)
    elif fmt == "csv":
        assert len(out.read_text().splitlines()) == 41
    else:
        assert pq.read_table(out).num_rows == 40
    manifest = json.loads((tmp_path / f"o.{fmt}.manifest.json").read_text())
    from slurmctl.fsutil import sha256_file

    assert manifest["output_sha256"] == sha256_file(out)


def test_batch_mode_handler(tmp_path):
    handler = "def handle(records, ctx):\n    return [{'n': r['n'], 'batch': ctx.task_id} for r in records]\n"
    job = make_job(tmp_path, 55, items=20, handler=handler)
    job.write_text(
        job.read_text().replace(
            "handler: {function: 'h:handle'}", "handler: {function: 'h:handle', mode: batch}"
        )
    )
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    assert slurmctl("results", job_id, "-o", str(tmp_path / "o.jsonl"), root=root).code == 0
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert sorted(r["n"] for r in rows) == list(range(55))
    assert {r["batch"] for r in rows} == {"t0000000", "t0000001", "t0000002"}


def test_unencodable_row_fails_only_its_item(tmp_path):
    handler = (
        "def handle(record, ctx):\n    return {'n': record['n'], 'x': object() if record['n'] == 4 else 1}\n"
    )
    job = make_job(tmp_path, 10, items=10, handler=handler)
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 9, r.err  # finished, one item failed
    r = slurmctl("results", job_id, "-o", str(tmp_path / "o.jsonl"), root=root)
    assert sorted(row["n"] for row in read_jsonl(tmp_path / "o.jsonl")) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    (err,) = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert err["item_id"] == 4 and err["type"] == "TypeError" and err["category"] == "permanent"


@pytest.mark.parametrize("staging", ["auto", "copy"])
def test_staging_reference_or_copy_gives_the_same_results(tmp_path, staging):
    """auto on the local executor refers to the input (no batch files); copy writes them. Same rows."""
    job = make_job(tmp_path, 1200, items=500, handler=FAST_HANDLER)
    text = job.read_text()
    job.write_text(text.replace("input: {path: in.jsonl}", f"input: {{path: in.jsonl, staging: {staging}}}"))
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    batches = [
        json.loads(slurmctl("inspect", job_id, f"t{i:07d}", root=root).out)["task"]["batch"] for i in range(3)
    ]
    if staging == "auto":
        assert all(b["key"] is None and b["ref_path"] == str(tmp_path / "in.jsonl") for b in batches)
        assert batches[0]["ref_offset"] == 0
        assert not list((root).rglob("b0000000.jsonl"))
    else:
        assert all(b["key"] and b["ref_path"] is None for b in batches)
        assert len(list(root.rglob("b000000*.jsonl"))) == 3
    r = slurmctl("results", job_id, "-o", str(tmp_path / "o.jsonl"), root=root)
    assert r.code == 0, r.err
    assert sorted(row["n"] for row in read_jsonl(tmp_path / "o.jsonl")) == list(range(1200))


def test_input_changed_after_submit_fails_the_task_with_what_to_do(tmp_path):
    job = make_job(tmp_path, 300, items=100, handler=FAST_HANDLER)
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)  # partitioned, not run
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    data = (tmp_path / "in.jsonl").read_bytes()
    (tmp_path / "in.jsonl").write_bytes(data.replace(b'{"n": 150}', b'{"n": 151}'))  # inside t0000001
    env = dict(os.environ, SLURMCTL_ROOT=str(root), SLURMCTL_SCRATCH=str(tmp_path / "scratch"))
    ok = subprocess.run(worker_argv(root, job_id, "t0000000"), env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr  # its bytes did not change
    bad = subprocess.run(worker_argv(root, job_id, "t0000001"), env=env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
    assert "changed after the job was submitted" in bad.stderr and "input.staging: copy" in bad.stderr
    state = json.loads(slurmctl("inspect", job_id, "t0000001", root=root).out)["state"]
    assert state["state"] != "succeeded"


def test_reference_staging_on_a_remote_backend_is_refused(tmp_path):
    job = make_job(tmp_path, 10, handler=FAST_HANDLER)
    job.write_text(
        job.read_text().replace("input: {path: in.jsonl}", "input: {path: in.jsonl, staging: reference}")
        + "backend: {kind: aws, bucket: slurmctl-test, region: us-east-1}\n"
    )
    r = slurmctl("validate", str(job), root=tmp_path / "root")
    assert r.code != 0
    assert "job.yaml:2: input.staging: reference needs the local backend" in r.err
    assert "(found 'reference')" in r.err and "Traceback" not in r.err
