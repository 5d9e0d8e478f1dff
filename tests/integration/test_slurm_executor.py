"""Issue 4 acceptance: the Slurm executor on the real dev cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from slurmctl.coordinator import load_job
from slurmctl.executors.slurm import SlurmExecutor
from slurmctl.lifecycle import task_statuses
from slurmctl.model.states import TaskState
from slurmctl.slurm.client import SlurmClient
from slurmctl.slurm.runner import CommandRunner
from slurmctl.storage.local import local_backend
from tests.e2e.cli import REPO, read_jsonl, slurmctl, submit_wait

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def _cancel_leftover_arrays(tmp_path):
    """A failed or timed-out test must not leave its arrays queued for the next tests."""
    yield
    ids = []
    for manifest in tmp_path.glob("**/jobs/*/job.json"):
        doc = json.loads(manifest.read_text())
        ids += [s["array_job_id"] for g in doc.get("groups", []) for s in g.get("submissions", [])]
    if ids:
        subprocess.run(["scancel", *ids], check=False)


SLOW = """
import time
def handle(record, ctx):
    time.sleep(record.get("sleep", 0.0))
    return {"n": record["n"], "sq": record["n"] * record["n"]}
"""


def make_job(tmp: Path, n: int, items: int, executor: str, *, sleep: float = 0.0, extra: str = "") -> Path:
    (tmp / "h.py").write_text(SLOW)
    with open(tmp / "in.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"n": i, "sleep": sleep}) + "\n")
    job = tmp / "job.yaml"
    job.write_text(
        "name: sl\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
        f"batch: {{items: {items}}}\nresources: {{mem_gb: 0.25}}\nexecutor: {executor}\n{extra}"
    )
    return job


def rows_by_item(path: Path) -> list[tuple[int, str]]:
    rows = read_jsonl(path)
    return sorted((r["_item_id"], json.dumps(r, sort_keys=True)) for r in rows)


def submit_and_wait_for_a_running_task(job: Path, root: Path, started) -> tuple[str, object]:
    """Submit without waiting, then return (job id, the first task record for which ``started``
    holds), polling the records for up to two minutes."""
    r = slurmctl("submit", str(job), root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    backend = local_backend(root)
    deadline = time.time() + 120
    while time.time() < deadline:
        for t in task_statuses(backend, job_id):
            if t.state == TaskState.RUNNING and started(t):
                return job_id, t
        time.sleep(0.2)
    raise AssertionError("no task started running within 120 s")


@pytest.mark.parametrize("mode", ["array", "pilot"])
def test_example_outputs_identical_to_local(slurm_cluster, tmp_path, mode):
    outputs = {}
    for kind, executor in (("local", "{kind: local}"), (mode, f"{{kind: slurm, mode: {mode}, workers: 3}}")):
        ex = tmp_path / kind
        shutil.copytree(REPO / "examples" / "textstats", ex, ignore=shutil.ignore_patterns("out"))
        job = ex / "job.yaml"
        # The example ends with its executor block: swap it for the one under test.
        job.write_text(job.read_text().split("executor:")[0] + f"executor: {executor}\n")
        job_id, r = submit_wait(job, tmp_path / f"root-{kind}")
        assert r.code == 0, r.err
        out = tmp_path / f"{kind}.jsonl"
        assert slurmctl("results", job_id, "-o", str(out), root=tmp_path / f"root-{kind}").code == 0
        outputs[kind] = rows_by_item(out)
    assert [i for i, _ in outputs["local"]] == list(range(2000))
    assert outputs[mode] == outputs["local"]  # item by item


def test_one_status_poll_is_one_slurm_command(slurm_cluster, tmp_path):
    job = make_job(tmp_path, 60, 2, "{kind: slurm, mode: array}")
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    backend = local_backend(root)
    runner = CommandRunner()
    executor = SlurmExecutor(backend, load_job(backend, job_id), client=SlurmClient(runner))
    # squeue answers at once; once slurmctld has purged the array, sacct does (slurmdbd may lag a
    # second behind the last element): poll until all 30 elements are known to have ended.
    polls = 0
    ended: list = []
    while len(ended) < 30 and polls < 20:
        facts = executor.poll()
        ended = [e for e in facts.elements.values() if e.ended]
        polls += 1
        assert sum(runner.calls.values()) == polls  # exactly one Slurm command per poll
        time.sleep(0.5 * (len(ended) < 30))
    assert len(ended) == 30 and runner.calls["squeue"] + runner.calls["sacct"] == polls


def test_pilot_killed_mid_task_is_reclaimed_after_lease(slurm_cluster, tmp_path):
    job = make_job(tmp_path, 40, 10, "{kind: slurm, mode: pilot, workers: 2, lease_s: 6}", sleep=0.25)
    root = tmp_path / "root"
    job_id, victim = submit_and_wait_for_a_running_task(job, root, lambda t: t.items_done > 0 and t.owner)
    backend = local_backend(root)
    pid = int(victim.owner.split(":")[1])
    os.kill(pid, signal.SIGKILL)
    r = slurmctl("status", job_id, "--watch", root=root)
    assert r.code == 0, r.err
    final = {t.task_id: t for t in task_statuses(backend, job_id)}[victim.task_id]
    assert final.state == TaskState.SUCCEEDED and final.attempt >= 2
    assert final.owner != victim.owner
    out = tmp_path / "o.jsonl"
    assert slurmctl("results", job_id, "-o", str(out), root=root).code == 0
    assert [i for i, _ in rows_by_item(out)] == list(range(40))


def test_scancel_running_element_then_resubmission(slurm_cluster, tmp_path):
    job = make_job(tmp_path, 30, 10, "{kind: slurm, mode: array}", sleep=0.5)
    root = tmp_path / "root"
    job_id, target = submit_and_wait_for_a_running_task(job, root, lambda t: t.slurm_job_id)
    backend = local_backend(root)
    time.sleep(1.5)  # mid-task: a few of its 10 items (0.5 s each) are done
    array_id = load_job(backend, job_id).groups[0].submissions[0]["array_job_id"]
    element = f"{array_id}_{int(target.task_id[1:])}"
    subprocess.run(["scancel", element], check=True)
    r = slurmctl("status", job_id, "--watch", root=root)
    assert r.code == 0, r.err
    job = load_job(backend, job_id)
    assert len(job.groups) >= 2  # the cancelled task was resubmitted in a new array
    out = tmp_path / "o.jsonl"
    assert slurmctl("results", job_id, "-o", str(out), root=root).code == 0
    assert [i for i, _ in rows_by_item(out)] == list(range(30))


def test_time_limit_resumes_from_checkpoint(slurm_cluster, tmp_path):
    # One task of 150 items x 0.3 s = 45 s of work; time limit 1 min with SIGUSR1 30 s before it:
    # the first attempt checkpoints and exits 75, the resubmitted one finishes the rest.
    job = make_job(
        tmp_path,
        150,
        150,
        "{kind: slurm, mode: array, signal_lead_s: 40}",
        sleep=0.3,
        extra="resources: {mem_gb: 0.25, time_min: 1}\n",
    )
    job.write_text(job.read_text().replace("resources: {mem_gb: 0.25}\n", ""))
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    backend = local_backend(root)
    (status,) = task_statuses(backend, job_id)
    assert status.attempt >= 2
    manifest = json.loads(slurmctl("inspect", job_id, "t0000000", root=root).out)["result"]
    assert manifest["items_resumed"] > 0  # the last attempt did only the rest
    out = tmp_path / "o.jsonl"
    assert slurmctl("results", job_id, "-o", str(out), root=root).code == 0
    assert [i for i, _ in rows_by_item(out)] == list(range(150))


@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_1100_tasks_split_at_max_array_size_1001(slurm_cluster, tmp_path):
    assert slurm_cluster.config.max_array_size == 1001  # the dev cluster's default (scripts/dev-cluster)
    job = make_job(tmp_path, 1100, 1, "{kind: slurm, mode: array, poll_max_s: 5}")
    root = tmp_path / "root"
    # 1,100 one-item elements, two arrays: the dev cluster starts 4-9 elements/s, so this takes minutes.
    job_id, r = submit_wait(job, root, timeout=1500)
    assert r.code == 0, r.err
    backend = local_backend(root)
    groups = load_job(backend, job_id).groups
    assert [(g.first_index, g.count, g.submissions[0]["array"]) for g in groups] == [
        (0, 1001, "0-1000"),
        (1001, 99, "0-98"),
    ]
    out = tmp_path / "o.jsonl"
    assert slurmctl("results", job_id, "-o", str(out), root=root).code == 0
    assert [i for i, _ in rows_by_item(out)] == list(range(1100))


def test_failed_sbatch_is_reported_and_leaves_the_job_consistent(slurm_cluster, tmp_path):
    job = make_job(tmp_path, 6, 2, "{kind: slurm, mode: array}")
    job.write_text(
        job.read_text().replace("resources: {mem_gb: 0.25}", "resources: {mem_gb: 0.25, partition: nope}")
    )
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), root=root)
    assert r.code == 7, r.err
    assert "sbatch failed" in r.err and "Invalid partition" in r.err and "slurmctl resubmit" in r.err
    assert "Traceback" not in r.err
    job_id = r.err.split("job ", 1)[1].split(":", 1)[0]
    backend = local_backend(root)
    assert load_job(backend, job_id).groups == []  # nothing recorded as submitted
    assert {t.state for t in task_statuses(backend, job_id)} == {TaskState.QUEUED}
    # Fix the cause (here: the partition in the stored config) and resubmit: every task exactly once.
    job_doc = load_job(backend, job_id)
    job_doc.config["resources"]["partition"] = None
    from slurmctl.coordinator import save_job

    save_job(backend, job_doc)
    r = slurmctl("resubmit", job_id, root=root)
    assert r.code == 0, r.err
    assert slurmctl("status", job_id, "--watch", root=root).code == 0
    out = tmp_path / "o.jsonl"
    assert slurmctl("results", job_id, "-o", str(out), root=root).code == 0
    assert [i for i, _ in rows_by_item(out)] == list(range(6))


def test_cancel_stops_the_arrays(slurm_cluster, tmp_path):
    job = make_job(tmp_path, 20, 5, "{kind: slurm, mode: array}", sleep=1.0)
    root = tmp_path / "root"
    r = slurmctl("submit", str(job), root=root)
    assert r.code == 0, r.err
    job_id = r.out.strip().splitlines()[-1]
    r = slurmctl("cancel", job_id, root=root)  # no --yes and no terminal: refuses
    assert r.code != 0
    r = slurmctl("cancel", job_id, "--yes", root=root)
    assert r.code == 0, r.err
    backend = local_backend(root)
    array_id = load_job(backend, job_id).groups[0].submissions[0]["array_job_id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        q = subprocess.run(["squeue", "-h", "-j", array_id], capture_output=True, text=True)
        if not q.stdout.strip():
            break
        time.sleep(1)
    assert not q.stdout.strip()
    st = json.loads(slurmctl("status", job_id, "--json", root=root).out)
    assert st["state"] == "cancelled"


def test_doctor_on_the_dev_cluster(slurm_cluster, tmp_path):
    r = slurmctl("doctor", "--tasks", "2500", root=tmp_path / "root")
    assert r.code == 0, r.out + r.err
    assert "controller" in r.out and "backend root" in r.out
    (tmp_path / "f").write_text("")
    r = slurmctl("doctor", root=tmp_path / "f" / "sub")
    assert r.code == 1 and "cannot write under" in r.out
