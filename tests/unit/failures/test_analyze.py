"""analyze-errors on a hand-built job in a local backend: only the published attempt's failures,
tasks that failed as a whole, exact groups, ordering, filters, bad input and the two renderings."""

from __future__ import annotations

import io
import json

import pytest

from slurmctl.errors import ConfigError, JobNotFoundError
from slurmctl.failures import analyze as analyze_mod
from slurmctl.failures.analyze import analyze, run, summary_line, top_signatures
from slurmctl.lifecycle import create_job, create_tasks
from slurmctl.model.core import JobStatus, TaskStatus
from slurmctl.model.manifests import DoneMarker
from slurmctl.model.states import TaskState
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend

JOB = "j-analyze"


def tb(func: str, line: int, last: str) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "/x/site-packages/slurmctl/worker/runtime.py", line 540, in handle_chunk\n'
        "    result = call(decode(line), ctx)\n"
        f'  File "/job/handler.py", line {line}, in {func}\n'
        "    raise X\n"
        f"{last}\n"
    )


def failure(item: int, kind: int, attempt: int = 1, host: str = "n1") -> dict:
    if kind == 0:
        t, m, c, f = "ValueError", f"bad record {item} at /data/{item}.json", "permanent", ("handle", 7)
    elif kind == 1:
        t, m, c, f = "TimeoutError", f"timed out after {item % 9}.5 s", "transient", ("fetch", 20)
    else:
        t, m, c, f = "MemoryError", "", "resources", ("grow", 30)
    return {
        "item_id": item,
        "category": c,
        "type": t,
        "message": m,
        "traceback": tb(*f, f"{t}: {m}" if m else t),
        "attempt": attempt,
        "host": host,
        "slurm_job_id": "77",
        "at": 1000.0 + item,
    }


def publish(backend, task: str, attempt: int, lines: list[str]) -> None:
    key = keys.result_errors(JOB, task, attempt)
    backend.objects.put(key, "".join(line + "\n" for line in lines).encode())
    mkey = keys.result_manifest(JOB, task, attempt)
    backend.objects.put(mkey, b"{}")
    marker = DoneMarker(task_id=task, attempt=attempt, manifest_key=mkey, manifest_sha256="0" * 64)
    backend.objects.put(keys.done_marker(JOB, task), marker.to_json())


@pytest.fixture
def backend(tmp_path):
    b = open_backend({"kind": "local", "root": str(tmp_path / "root")})
    create_job(b, JobStatus(job_id=JOB, name="t", tasks=4, total_items=400))
    create_tasks(b, JOB, [TaskStatus(task_id=f"t{i:07d}", items_total=100) for i in range(4)])
    # t0: attempt 2 published; attempt 1's error file is stale and must be ignored
    b.objects.put(keys.result_errors(JOB, "t0000000", 1), (json.dumps(failure(5, 2)) + "\n").encode())
    publish(b, "t0000000", 2, [json.dumps(failure(i, i % 2, attempt=2)) for i in range(0, 100, 5)])
    # t1: published with failures of all three kinds, one line damaged
    lines = [json.dumps(failure(i, i % 3, host=f"n{i % 4}")) for i in range(100, 200, 2)]
    publish(b, "t0000001", 1, [*lines[:10], "{not json", *lines[10:]])
    # t2: failed as a whole, killed by SIGKILL twice (the local runner's words); t3: OOM in Slurm
    for tid, error in (
        ("t0000002", "worker pid 4242 exited -9 before finishing"),
        ("t0000003", "worker n9:17:slurm5 ended (out_of_memory in Slurm)"),
    ):
        rec = b.state.get(keys.TASKS_TABLE, keys.task_state(JOB, tid))
        value = dict(
            rec.value, state=TaskState.FAILED.value, error=error, owner="n9:17", attempt=1, finished_at=50.0
        )
        b.state.compare_and_set(keys.TASKS_TABLE, rec.key, value, rec.version)
    return b


def test_groups_are_exact(backend):
    a = analyze(backend, JOB)
    assert a.failed_items == 20 + 50 and a.failed_tasks == 2
    assert a.unreadable == 1 and a.unreadable_keys == [keys.result_errors(JOB, "t0000001", 1)]
    got = {
        (g.level, g.category, g.kind, g.type, g.message, g.frame): (g.count, g.items, g.tasks)
        for g in a.groups
    }
    t1 = range(100, 200, 2)
    n = {k: sum(1 for i in t1 if i % 3 == k) for k in range(3)}
    assert got == {
        (
            "item",
            "permanent",
            None,
            "ValueError",
            "bad record <n> at <path>",
            "/job/handler.py:7 in handle",
        ): (
            10 + n[0],
            10 + n[0],
            2,
        ),
        ("item", "transient", None, "TimeoutError", "timed out after <n> s", "/job/handler.py:20 in fetch"): (
            10 + n[1],
            10 + n[1],
            2,
        ),
        ("item", "resources", "memory", "MemoryError", "", "/job/handler.py:30 in grow"): (n[2], n[2], 1),
        ("task", "resources", "memory", "signal:SIGKILL", "worker pid <n> exited <n> before finishing", ""): (
            1,
            100,
            1,
        ),
        (
            "task",
            "resources",
            "memory",
            "slurm:out_of_memory",
            "worker <worker>:<id> ended (out_of_memory in Slurm)",
            "",
        ): (
            1,
            100,
            1,
        ),
    }
    # ordered by items affected, then count
    assert [g.items for g in a.groups] == sorted((g.items for g in a.groups), reverse=True)


def test_group_details(backend):
    groups = {g.type: g for g in analyze(backend, JOB).groups}
    v = groups["ValueError"]
    assert v.samples[0] == {"task": "t0000000", "item": 0, "attempt": 2, "host": "n1", "slurm_job_id": "77"}
    assert len(v.samples) == analyze_mod.SAMPLES
    assert v.first_seen == 1000.0 and v.last_seen == 1000.0 + 198
    assert v.sample_traceback.endswith("ValueError: bad record 0 at /data/0.json\n")
    assert v.action.startswith("fix the handler")
    assert set(groups["MemoryError"].hosts) <= {"n0", "n1", "n2", "n3"}
    assert sum(groups["MemoryError"].hosts.values()) == groups["MemoryError"].count
    assert groups["TimeoutError"].action == "retry"
    oom = groups["slurm:out_of_memory"]
    assert oom.samples == [
        {"task": "t0000003", "item": None, "attempt": 1, "host": "n9", "slurm_job_id": None}
    ]
    assert oom.sample_traceback == "worker n9:17:slurm5 ended (out_of_memory in Slurm)"
    assert "raise memory" in oom.action
    assert 5 not in {s["item"] for s in groups["MemoryError"].samples}  # the stale attempt's item


def test_run_json_top_and_category(backend):
    out = io.StringIO()
    assert run(backend, JOB, as_json=True, top=2, out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["signatures"] == 5 and len(doc["groups"]) == 2 and doc["failed_items"] == 70
    assert doc["groups"][0]["items"] >= doc["groups"][1]["items"]
    out = io.StringIO()
    run(backend, JOB, as_json=True, category="resources", out=out)
    assert {g["type"] for g in json.loads(out.getvalue())["groups"]} == {
        "MemoryError",
        "signal:SIGKILL",
        "slurm:out_of_memory",
    }
    assert [g["type"] for g in top_signatures(backend, JOB)] == [g["type"] for g in doc["groups"][:2]] + [
        analyze(backend, JOB).groups[2].type
    ]


def test_run_human_view(backend):
    out = io.StringIO()
    run(backend, JOB, out=out)
    text = out.getvalue()
    assert text.startswith(f"job {JOB}: 70 failed item(s), 2 failed task(s); 5 signature(s)")
    assert "warning: 1 unreadable failure record(s) skipped" in text
    assert "    ValueError: bad record <n> at <path>" in text
    assert "    at      /job/handler.py:7 in handle" in text
    assert "item 0 (t0000000, n1, slurm 77)" in text
    assert "      ValueError: bad record 0 at /data/0.json" in text
    out = io.StringIO()
    run(backend, JOB, category="infrastructure", out=out)
    assert out.getvalue().rstrip().endswith("no failures of category infrastructure")
    line = summary_line(top_signatures(backend, JOB, 1)[0])
    assert (
        line.startswith("100x signal:SIGKILL") or line.startswith("100x slurm:out_of_memory") or "x " in line
    )


def test_bad_input(backend, tmp_path):
    with pytest.raises(JobNotFoundError) as e:
        run(backend, "no-such-job")
    assert e.value.exit_code == 5 and "no job 'no-such-job'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        run(backend, JOB, category="flaky")
    assert e.value.exit_code == 2
    assert "transient, permanent, infrastructure, resources, unknown" in str(e.value)
    with pytest.raises(ConfigError):
        run(backend, JOB, top=0)


def test_a_job_without_failures(tmp_path):
    b = open_backend({"kind": "local", "root": str(tmp_path / "root")})
    create_job(b, JobStatus(job_id=JOB, name="t", tasks=1))
    create_tasks(b, JOB, [TaskStatus(task_id="t0000000")])
    out = io.StringIO()
    run(b, JOB, out=out)
    assert out.getvalue() == f"job {JOB}: 0 failed item(s), 0 failed task(s); 0 signature(s)\nno failures\n"


def test_big_error_files_are_streamed_in_blocks(backend, monkeypatch):
    monkeypatch.setattr(analyze_mod, "BLOCK", 700)  # a few records per block, lines cut across reads
    small = analyze(backend, JOB)
    monkeypatch.undo()
    whole = analyze(backend, JOB)
    assert [g.to_dict() for g in small.groups] == [g.to_dict() for g in whole.groups]
