"""analyze-errors on a real job: the local executor runs a handler that fails items with three
distinct errors and SIGKILLs its own worker in one task; the groups must be exactly those."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from slurmctl.cli.main import app as main_app
from slurmctl.failures.analyze import analyze
from slurmctl.storage.open import open_backend
from tests.e2e.cli import submit_wait, write_job

# Items 0-199 in 4 tasks of 50. Item 160 (task t0000003) kills its worker: that task fails as a
# whole (max_attempts 1) and none of its items is published.
HANDLER = """
import os, signal

def handle(record, ctx):
    n = record["n"]
    if n == 160:
        os.kill(os.getpid(), signal.SIGKILL)
    if n % 10 == 1:
        raise ValueError(f"bad value {n} in /in/{n}.json")
    if n % 10 == 2:
        raise KeyError(f"field_{n}")
    if n % 10 == 3:
        raise TimeoutError(f"upstream took {n}.5 s")
    return {"n": n}
"""


def test_groups_of_a_real_local_job(tmp_path):
    (tmp_path / "failing.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(200)))
    job = write_job(
        tmp_path,
        "name: failing\ninput: {path: in.jsonl}\nhandler: {function: 'failing:handle'}\n"
        "batch: {items: 50}\nretry: {max_attempts: 1, items: false}\n"
        "executor: {kind: local, max_parallel: 2}\n",
    )
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert job_id and r.code != 0, r.err  # the job failed: one task was killed
    backend = open_backend({"kind": "local", "root": str(root)})
    a = analyze(backend, job_id)
    handler = str(tmp_path / "failing.py")
    got = {
        (g.level, g.category, g.kind, g.type, g.message, g.frame): (g.count, g.items, g.tasks)
        for g in a.groups
    }
    assert got == {
        ("item", "permanent", None, "ValueError", "bad value <n> in <path>", f"{handler}:9 in handle"): (
            15,
            15,
            3,
        ),
        ("item", "permanent", None, "KeyError", "'<str>'", f"{handler}:11 in handle"): (15, 15, 3),
        ("item", "transient", None, "TimeoutError", "upstream took <n> s", f"{handler}:13 in handle"): (
            15,
            15,
            3,
        ),
        ("task", "resources", "memory", "signal:SIGKILL", "worker pid <n> exited <n> before finishing", ""): (
            1,
            50,
            1,
        ),
    }
    assert a.failed_items == 45 and a.failed_tasks == 1 and a.unreadable == 0
    by_type = {g.type: g for g in a.groups}
    assert [s["item"] for s in by_type["ValueError"].samples] == [1, 11, 21, 31, 41]
    assert {s["task"] for s in by_type["KeyError"].samples} == {"t0000000"}
    assert by_type["signal:SIGKILL"].samples[0]["task"] == "t0000003"
    assert all(g.first_seen and g.last_seen and g.first_seen <= g.last_seen for g in a.groups)

    # The real command line: analyze-errors, and status's human view with the top three signatures.
    cli = [sys.executable, "-m", "slurmctl"]
    res = subprocess.run([*cli, "status", job_id, "--root", str(root)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    top = res.stdout[res.stdout.index("top failure signatures") :].splitlines()[1:]
    assert len(top) == 3 and "signal:SIGKILL" in top[0], res.stdout
    app = main_app
    res = CliRunner().invoke(app, ["analyze-errors", job_id, "--json", "--top", "2", "--root", str(root)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # stdout alone: a warning logged to stderr is not part of the JSON
    assert doc["signatures"] == 4 and [g["type"] for g in doc["groups"]] == ["signal:SIGKILL", "KeyError"]
    res = CliRunner().invoke(app, ["analyze-errors", job_id, "--category", "transient", "--root", str(root)])
    assert (
        res.exit_code == 0
        and "TimeoutError: upstream took <n> s" in res.stdout
        and "KeyError" not in res.stdout
    )
