"""Job control through the real CLI on the local executor and backend: pause/resume (no task is
claimed while paused, checked from the task records) and purge (nothing of the job is left in the
root; a live job, an unknown job and a missing confirmation are refused with their exit codes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from slurmctl.lifecycle import task_statuses
from slurmctl.model.states import TaskState
from slurmctl.ratelimit import bucket_store
from slurmctl.storage.local import local_backend
from tests.e2e.cli import slurmctl, submit_wait, write_job

SLOW = """
import time
def handle(record, ctx):
    time.sleep(record["sleep"])
    return {"n": record["n"]}
"""

# A claim that read the job record just before the pause was stored may land a moment after the
# pause's timestamp: the time one claim takes (a read and a compare-and-set) bounds it.
CLAIM_S = 0.5


def make_job(
    tmp: Path, n: int, items: int, sleep: float, executor: str = "{kind: local, max_parallel: 2}"
) -> Path:
    (tmp / "h.py").write_text(SLOW)
    with open(tmp / "in.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"n": i, "sleep": sleep}) + "\n")
    return write_job(
        tmp,
        "name: ctl\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
        f"batch: {{items: {items}}}\nexecutor: {executor}\n",
    )


def job_record(root: Path, job_id: str) -> dict:
    return json.loads((root / "state" / "jobs" / f"{job_id}.json").read_text())["value"]


def wait_for(cond, timeout: float = 120.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def check_no_claim_while_paused(root: Path, job_id: str) -> None:
    """Every task ran once, and none was claimed between a pause and its resume (the job's
    events give their times)."""
    events = job_record(root, job_id)["events"]
    windows = []
    for e in events:
        if e["what"] == "pause":
            windows.append([e["at"], None])
        elif e["what"] == "resume":
            windows[-1][1] = e["at"]
    assert windows and all(end is not None for _, end in windows), events
    statuses = task_statuses(local_backend(root), job_id)
    assert statuses and all(t.state == TaskState.SUCCEEDED for t in statuses)
    assert all(t.attempt == 1 for t in statuses), [(t.task_id, t.attempt) for t in statuses]
    for t in statuses:
        for start, end in windows:
            assert not (start + CLAIM_S < t.started_at < end), (t.task_id, t.started_at, start, end)
    # Some task was claimed after the resume: the pause did stop work that was waiting.
    assert any(t.started_at > windows[-1][1] for t in statuses)


def test_pause_resume_local(tmp_path: Path) -> None:
    root = tmp_path / "root"
    job = make_job(tmp_path, 24, 2, 0.4)  # 12 tasks of ~0.8 s, 2 at a time
    r = slurmctl("submit", str(job), root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = local_backend(root)
    wait_for(lambda: any(t.state == TaskState.SUCCEEDED for t in task_statuses(backend, job_id)), what="task")

    r = slurmctl("pause", job_id, root=root)
    assert r.code == 0, r.err
    assert "paused" in r.out
    assert slurmctl("pause", job_id, root=root).out.startswith(f"job {job_id} was already paused")
    st = slurmctl("status", job_id, root=root)
    assert "paused" in st.out.splitlines()[0], st.out
    assert json.loads(slurmctl("status", job_id, "--json", root=root).out)["paused"] is True
    tokens = bucket_store(backend)
    assert tokens.get(f"{job_id}/_pause")["paused"] is True  # rate-limit tokens stop too
    # The tasks claimed before the pause finish; then nothing runs.
    wait_for(
        lambda: not any(t.state == TaskState.RUNNING for t in task_statuses(backend, job_id)), what="idle job"
    )
    time.sleep(3)  # long enough for the waiting workers to look at the job record again
    left = [t for t in task_statuses(backend, job_id) if t.state != TaskState.SUCCEEDED]
    assert left and all(t.state == TaskState.QUEUED and t.attempt == 0 for t in left)

    r = slurmctl("resume", job_id, root=root)
    assert r.code == 0 and "resumed" in r.out, r.err
    assert tokens.get(f"{job_id}/_pause")["paused"] is False
    r = slurmctl("status", job_id, "--watch", root=root)
    assert r.code == 0, r.err + r.out
    check_no_claim_while_paused(root, job_id)
    events = job_record(root, job_id)["events"]
    assert [e["what"] for e in events] == ["pause", "resume"]  # the repeated pause changed nothing
    assert all("@" in e["who"] for e in events)


def files_of(root: Path, job_id: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if job_id in str(p)]


def test_purge_local(tmp_path: Path) -> None:
    root = tmp_path / "root"
    job = make_job(tmp_path, 20, 4, 0.0)
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    assert files_of(root, job_id)

    r = slurmctl("purge", job_id, root=root)  # stdin is no terminal, no --yes: refused
    assert r.code == 1 and "--yes" in r.err, (r.code, r.err)
    r = slurmctl("purge", job_id, "--dry-run", root=root)
    assert r.code == 0, r.err
    assert "object(s)" in r.out and f"jobs/{job_id}/job.json" in r.out
    before = files_of(root, job_id)
    assert before and job_record(root, job_id)["state"] == "succeeded"

    r = slurmctl("purge", job_id, "--yes", root=root)
    assert r.code == 0, r.err
    assert "purged" in r.out and "record(s)" in r.out
    assert files_of(root, job_id) == []
    r = slurmctl("purge", job_id, "--yes", root=root)
    assert r.code == 5 and "no job" in r.err
    assert slurmctl("status", job_id, root=root).code == 5


def test_purge_keep_results(tmp_path: Path) -> None:
    root = tmp_path / "root"
    job = make_job(tmp_path, 20, 4, 0.0)
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    assert slurmctl("purge", job_id, "--yes", "--keep-results", root=root).code == 0
    assert not (root / "state" / "jobs" / f"{job_id}.json").exists()
    assert not (root / "jobs" / job_id / "batches").exists()
    out = tmp_path / "out.jsonl"
    r = slurmctl("results", job_id, "-o", str(out), root=root)
    assert r.code == 0, r.err
    assert sorted(json.loads(line)["n"] for line in out.read_text().splitlines()) == list(range(20))
    # What was kept goes with a second purge.
    assert slurmctl("purge", job_id, "--yes", root=root).code == 0
    assert files_of(root, job_id) == []


def test_purge_refuses_a_live_job_without_force(tmp_path: Path) -> None:
    root = tmp_path / "root"
    job = make_job(tmp_path, 40, 2, 0.5)
    r = slurmctl("submit", str(job), root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = local_backend(root)
    wait_for(lambda: any(t.state == TaskState.RUNNING for t in task_statuses(backend, job_id)), what="claim")

    r = slurmctl("purge", job_id, "--yes", root=root)
    assert r.code == 5, (r.code, r.err)
    assert "is live" in r.err and "--force" in r.err
    assert (root / "state" / "jobs" / f"{job_id}.json").exists()

    r = slurmctl("purge", job_id, "--yes", "--force", root=root)
    assert r.code == 0, r.err
    time.sleep(1)  # a worker that outlived the purge would write within its next heartbeat
    assert files_of(root, job_id) == []


def test_purge_interrupted_is_finished_by_a_rerun(tmp_path: Path) -> None:
    """A purge that stopped after marking the job and deleting part of it: `purge` again ends it
    (no --force needed: a purging job is not live)."""
    from slurmctl.lifecycle import begin_purge

    root = tmp_path / "root"
    job_id, r = submit_wait(make_job(tmp_path, 20, 4, 0.0), root)
    assert r.code == 0, r.err
    backend = local_backend(root)
    begin_purge(backend, job_id)
    for key in list(backend.objects.list(f"jobs/{job_id}/results/"))[:3]:
        backend.objects.delete(key)
    assert slurmctl("status", job_id, root=root).out.startswith(f"{job_id} — purging")
    r = slurmctl("purge", job_id, "--yes", root=root)
    assert r.code == 0, r.err
    assert files_of(root, job_id) == []


def test_purge_unknown_job(tmp_path: Path) -> None:
    r = slurmctl("purge", "nope-123", "--yes", root=tmp_path / "root")
    assert r.code == 5 and "no job 'nope-123'" in r.err
    assert os.listdir(tmp_path / "root") == ["state"]
