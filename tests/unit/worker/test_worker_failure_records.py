"""What the worker records per failed item: category (the table, or the job's handler.classify),
type, message, traceback, attempt, host, Slurm job id and time — in the published error file, and
through a checkpoint segment when another attempt on another node publishes the task."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from slurmctl.errors import EXIT_OK
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.worker.runtime import Worker
from tests.e2e.cli import slurmctl, write_job

HANDLER = """
import errno

def handle(record, ctx):
    n = record["n"]
    if n % 5 == 1:
        raise ValueError(f"bad value {n}")
    if n % 5 == 2:
        raise OSError(errno.ECONNRESET, "connection reset")
    if n % 5 == 3:
        raise KeyError(f"k{n}")
    return {"n": n}

def classify(exc):
    return "transient" if isinstance(exc, KeyError) else None
"""


def prepare(tmp: Path, classify: bool) -> tuple[Path, str]:
    mod = "fr_" + "".join(c if c.isalnum() else "_" for c in tmp.name)
    (tmp / f"{mod}.py").write_text(HANDLER)
    (tmp / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(20)))
    extra = f", classify: '{mod}:classify'" if classify else ""
    job = write_job(
        tmp,
        f"name: t\ninput: {{path: in.jsonl}}\nhandler: {{function: '{mod}:handle'{extra}}}\n"
        "batch: {items: 20}\noutput: {format: jsonl}\n",
    )
    root = tmp / "root"
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    assert r.code == 0, r.err
    return root, r.out.strip().splitlines()[-1]


def errors_of(root: Path, job_id: str) -> list[dict]:
    backend = open_backend({"kind": "local", "root": str(root)})
    done = json.loads(backend.objects.get(keys.done_marker(job_id, "t0000000")))
    manifest = json.loads(backend.objects.get(done["manifest_key"]))
    return [json.loads(x) for x in backend.objects.get(manifest["errors_key"]).decode().splitlines()]


def test_failure_records_carry_category_host_slurm_job_and_time(tmp_path, scratch, monkeypatch):
    root, job_id = prepare(tmp_path, classify=True)
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    before = time.time()
    assert Worker(open_backend({"kind": "local", "root": str(root)}), job_id).run_task("t0000000") == EXIT_OK
    errors = errors_of(root, job_id)
    assert [e["item_id"] for e in errors] == [i for i in range(20) if i % 5 in (1, 2, 3)]
    by_kind = {e["item_id"] % 5: e for e in errors}
    assert (by_kind[1]["type"], by_kind[1]["category"]) == ("ValueError", "permanent")
    assert (by_kind[2]["type"], by_kind[2]["category"]) == ("ConnectionResetError", "transient")
    assert (by_kind[3]["type"], by_kind[3]["category"]) == ("KeyError", "transient")  # the job's classify
    for e in errors:
        assert e["host"] == socket.gethostname()
        assert e["slurm_job_id"] == "4711"
        assert e["attempt"] == 1
        assert before <= e["at"] <= time.time()
        assert e["traceback"].startswith("Traceback") and "in handle" in e["traceback"]
    assert by_kind[1]["message"] == f"bad value {by_kind[1]['item_id']}"


def test_without_a_classify_function_the_table_decides(tmp_path, scratch, monkeypatch):
    root, job_id = prepare(tmp_path, classify=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert Worker(open_backend({"kind": "local", "root": str(root)}), job_id).run_task("t0000000") == EXIT_OK
    errors = errors_of(root, job_id)
    assert {e["category"] for e in errors if e["type"] == "KeyError"} == {"permanent"}
    assert {e["slurm_job_id"] for e in errors} == {None}
