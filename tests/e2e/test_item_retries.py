"""Item retries on the local executor, end to end: a 20k-item job whose handler fails on 1 % of the
items — half transient (succeeds on its second try), half permanent. The job ends with every
transient item succeeded, every permanent item failed once and never retried, and the merged output
holds every other item exactly once by id."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from slurmctl.lifecycle import task_statuses
from slurmctl.model.states import TaskState
from slurmctl.retry.store import manifests
from slurmctl.storage.open import open_backend
from tests.e2e.cli import read_jsonl, slurmctl, submit_wait, write_job

N = 200_000  # issue 14's acceptance: a 200k-item job, 1 % failing (half transient, half permanent)
HANDLER = """
import os
from pathlib import Path
from slurmctl.errors import PermanentItemError, TransientItemError

MARKS = Path(os.environ["RETRY_MARKS"])

def handle(record, ctx):
    n = record["n"]
    if n % 200 == 107:
        (MARKS / f"p{n}").write_text(ctx.task_id)  # a second call would be a retry of it: seen below
        raise PermanentItemError(f"item {n} is malformed")
    if n % 200 == 7:
        mark = MARKS / f"t{n}"
        if not mark.exists():
            mark.write_text(ctx.task_id)
            raise TransientItemError(f"upstream busy for item {n}")
        assert ctx.item_id == n
    return {"n": n, "sq": n * n}
"""


def test_transient_items_retried_permanent_never_output_once_by_id(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "flaky.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(N)))
    job = write_job(
        tmp_path,
        "name: flaky\ninput: {path: in.jsonl}\nhandler: {function: 'flaky:handle'}\n"
        "batch: {items: 10000}\nretry: {backoff: {base_s: 0.2, cap_s: 1}}\n"
        "executor: {kind: local, max_parallel: 2}\n",
    )
    root = tmp_path / "root"
    env = {"RETRY_MARKS": str(marks)}
    job_id, r = submit_wait(job, root, env=env, timeout=300)
    assert job_id and r.code == 9, r.err  # 9: items failed (the permanent ones)
    assert f"{N}/{N} items, {N // 200} failed" in r.err, r.err
    transient = {n for n in range(N) if n % 200 == 7}
    permanent = {n for n in range(N) if n % 200 == 107}

    backend = open_backend({"kind": "local", "root": str(root)})
    plans = [m for m in manifests(backend, job_id) if m.items]
    retried = sorted(i for m in plans for ids in m.items.values() for i in ids)
    assert retried == sorted(transient)  # each transient item once, no permanent one
    assert all(m.categories == {"transient": sum(map(len, m.items.values()))} for m in plans)
    assert sum(m.skipped.get("permanent", 0) for m in manifests(backend, job_id)) == len(permanent)
    # Every permanent item was handled exactly once (its mark names the original task).
    assert {int(p.name[1:]) for p in marks.glob("p*")} == permanent

    out = tmp_path / "out.jsonl"
    r = slurmctl("results", job_id, "-o", str(out), root=root)
    assert r.code == 9 and f"{N // 200} item(s) failed" in r.err, r.err
    ids = [row["_item_id"] for row in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == N - len(permanent)
    assert set(ids) == set(range(N)) - permanent
    errors = read_jsonl(out.with_name(out.name + ".errors.jsonl"))
    assert sorted(e["item_id"] for e in errors) == sorted(permanent)
    assert {e["category"] for e in errors} == {"permanent"}
    agg = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert (agg["items_ok"], agg["items_failed"], agg["rows"]) == (N - N // 200, N // 200, N - N // 200)


ONCE = """
import os
from pathlib import Path
from slurmctl.errors import TransientItemError

def handle(record, ctx):
    mark = Path(os.environ["RETRY_MARKS"]) / f"t{record['n']}"
    if record["n"] == 1 and not mark.exists():
        mark.write_text(ctx.task_id)
        raise TransientItemError("upstream busy")
    return {"n": record["n"]}
"""


def once_job(tmp_path: Path, base_s: float) -> tuple[Path, Path, dict[str, str]]:
    """A 4-item job whose item 1 fails once (transient); its retry waits exactly ``base_s``."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "once.py").write_text(ONCE)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(4)))
    job = write_job(
        tmp_path,
        "name: once\ninput: {path: in.jsonl}\nhandler: {function: 'once:handle'}\n"
        f"retry: {{backoff: {{base_s: {base_s}, cap_s: {base_s}, jitter: none}}}}\n"
        "executor: {kind: local, max_parallel: 2}\n",
    )
    return job, tmp_path / "root", {"RETRY_MARKS": str(marks)}


def wait_for(cond, timeout: float = 120.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def retry_plan(backend, job_id: str):
    """The job's first item retry plan once its task records exist (written after the manifest)."""
    doc = next((m for m in manifests(backend, job_id) if m.items), None)
    ids = {t.task_id for t in task_statuses(backend, job_id)}
    return doc if doc is not None and set(doc.task_ids) <= ids else None


def runner_pid(root: Path, job_id: str) -> int:
    return json.loads((root / "state" / "jobs" / f"{job_id}.json").read_text())["value"]["runner_pid"]


def test_restarted_runner_waits_for_the_retry_not_before_time(tmp_path):
    job, root, env = once_job(tmp_path, 8)
    r = slurmctl("submit", str(job), root=root, env=env)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = open_backend({"kind": "local", "root": str(root)})
    doc = wait_for(lambda: retry_plan(backend, job_id), what="retry plan")
    pid = runner_pid(root, job_id)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text(),
             what="runner gone")  # fmt: skip
    assert time.time() < doc.not_before, "the restart came too late to test anything"
    r = slurmctl("resubmit", job_id, root=root, env=env)
    assert r.code == 0, r.err
    w = slurmctl("status", job_id, "--watch", root=root, env=env)
    assert w.code == 0, (r.out, w.err, w.out)
    (tid,) = doc.task_ids
    st = next(t for t in task_statuses(backend, job_id) if t.task_id == tid)
    assert st.state == TaskState.SUCCEEDED and st.attempt == 1
    assert st.started_at >= doc.not_before, (st.started_at, doc.not_before)


def workers_of(job_id: str, tid: str) -> list[int]:
    """The pids of the live worker processes started for the task."""
    pids = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            zombie = "Z" in (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if not zombie and b"slurmctl.worker" in argv and job_id.encode() in argv and tid.encode() in argv:
            pids.append(int(p.name))
    return pids


def test_retry_tasks_wait_while_paused_and_run_after_resume(tmp_path):
    job, root, env = once_job(tmp_path, 8)
    r = slurmctl("submit", str(job), root=root, env=env)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = open_backend({"kind": "local", "root": str(root)})
    doc = wait_for(lambda: retry_plan(backend, job_id), what="retry plan")
    r = slurmctl("pause", job_id, root=root)
    assert r.code == 0, r.err
    assert time.time() < doc.not_before, "the pause came too late to test anything"
    (tid,) = doc.task_ids
    # Past the not-before time (and a few of the runner's rounds): no worker started for it.
    time.sleep(max(0.0, doc.not_before - time.time()) + 2.0)
    assert workers_of(job_id, tid) == []
    st = next(t for t in task_statuses(backend, job_id) if t.task_id == tid)
    assert st.attempt == 0 and st.started_at is None

    r = slurmctl("resume", job_id, root=root)
    assert r.code == 0, r.err
    w = slurmctl("status", job_id, "--watch", root=root, env=env)
    assert w.code == 0, (w.err, w.out)
    events = json.loads((root / "state" / "jobs" / f"{job_id}.json").read_text())["value"]["events"]
    resumed = next(e["at"] for e in events if e["what"] == "resume")
    st = next(t for t in task_statuses(backend, job_id) if t.task_id == tid)
    assert st.state == TaskState.SUCCEEDED and st.attempt == 1 and st.started_at >= resumed


QUEUED = """
import os, time
from pathlib import Path
from slurmctl.errors import TransientItemError

def handle(record, ctx):
    mark = Path(os.environ["RETRY_MARKS"]) / f"t{record['n']}"
    if record["n"] == 0 and not mark.exists():
        mark.write_text(ctx.task_id)
        raise TransientItemError("upstream busy")
    time.sleep(record.get("sleep", 0))
    return {"n": record["n"]}
"""


def test_a_retry_runs_before_the_tasks_still_queued(tmp_path):
    """One worker, five one-item tasks: t0000000 fails its item once, the four others take 2 s
    each. The runner plans the retry while tasks are still queued, and a due retry task goes
    before them: it starts before the last original task, not after the whole job."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "queued.py").write_text(QUEUED)
    records = [{"n": 0}, *({"n": i, "sleep": 2} for i in range(1, 5))]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    job = write_job(
        tmp_path,
        "name: queued\ninput: {path: in.jsonl}\nhandler: {function: 'queued:handle'}\nbatch: {items: 1}\n"
        "retry: {backoff: {base_s: 0.1, cap_s: 0.1, jitter: none}}\n"
        "executor: {kind: local, max_parallel: 1}\n",
    )
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root, env={"RETRY_MARKS": str(marks)}, timeout=300)
    assert job_id and r.code == 0, r.err
    backend = open_backend({"kind": "local", "root": str(root)})
    (doc,) = [m for m in manifests(backend, job_id) if m.items]
    by = {t.task_id: t for t in task_statuses(backend, job_id)}
    retry, last = by[doc.task_ids[0]], by["t0000004"]
    assert retry.state == TaskState.SUCCEEDED and doc.items == {retry.task_id: [0]}
    assert doc.created_at < by["t0000003"].started_at, "planned only once the queue was empty"
    assert retry.started_at < last.started_at, "the retry waited for the whole queue"
