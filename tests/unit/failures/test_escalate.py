"""Resource escalation without a cluster: the classification rule on real sacct rows of the dev
cluster (OverMemoryKill and a time limit, 2026-12-07), the escalation arithmetic and its caps, what
the lifecycle stores, and how the Slurm executor submits escalated tasks."""

from __future__ import annotations

import json
import time

import pytest

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.executors.slurm import SlurmExecutor
from slurmctl.failures.classify import MEMORY, TIME, UNKNOWN, classify_slurm, classify_task
from slurmctl.lifecycle import Element, Facts, Lifecycle, OwnArray, needs_escalation
from slurmctl.model.states import TaskState
from slurmctl.retry.escalate import escalate
from slurmctl.slurm.accounting import SEP, parse_sacct
from slurmctl.slurm.client import parse_partition_max_time
from slurmctl.slurm.states import JobState as SlurmState

# `sacct -P -n --noconvert -o JobID,State,ExitCode,ReqMem,MaxRSS` on the dev cluster: a 600 MB
# allocation under --mem=256M (OverMemoryKill), and `sleep 200` under --time=1.
REAL = "\n".join(
    SEP.join(row)
    for row in (
        ("14016", "FAILED", "0:9", "256M", ""),
        ("14016.batch", "CANCELLED by 0", "0:9", "", "645955584"),
        ("14017", "TIMEOUT", "0:0", "256M", ""),
        ("14017.batch", "CANCELLED", "0:15", "", "4796416"),
    )
)
FIELDS = ("JobID", "State", "ExitCode", "ReqMem", "MaxRSS")


def test_real_sacct_rows_classify_as_memory_and_time():
    oom, oom_batch, to, _ = parse_sacct(REAL, FIELDS)
    req = 256 * 1024 * 1024
    assert classify_slurm(oom.state, oom.exit_code, max_rss=oom_batch.max_rss_bytes, req_mem=req) == MEMORY
    assert classify_slurm(to.state, to.exit_code) == TIME


def test_sigkill_far_below_the_limit_is_not_memory():
    req = 1024 * 1024 * 1024
    assert classify_slurm(SlurmState.FAILED, (0, 9), max_rss=int(0.95 * req), req_mem=req) == MEMORY
    assert classify_slurm(SlurmState.FAILED, (0, 9), max_rss=10 * 1024 * 1024, req_mem=req) == UNKNOWN
    # without sacct's sizes, the exit table decides: SIGKILL is memory
    assert classify_slurm(SlurmState.FAILED, (0, 9)) == MEMORY
    assert classify_slurm(SlurmState.OUT_OF_MEMORY) == MEMORY
    assert classify_slurm(SlurmState.FAILED, (4, 0)).category == "permanent"


def test_the_task_records_cause_wins():
    assert classify_task("worker x ended (failed in Slurm)", None, "resources/memory", "failed") == MEMORY
    assert classify_task("worker x ended (failed in Slurm)", None) == UNKNOWN


CFG = {
    "resources": {"mem_gb": 0.25, "time_min": 1},
    "retry": {"attempts": {"resources": 3}, "escalate": {"memory_factor": 2.0, "time_factor": 2.0}},
}


def test_escalation_arithmetic_and_caps():
    first = escalate(None, "memory", CFG, None)
    assert first == {"mem_mb": 512, "time_min": 1, "steps": 1}
    assert escalate(first, "memory", CFG, None)["mem_mb"] == 1024
    assert escalate({**first, "steps": 2}, "memory", CFG, None) is None  # attempts.resources - 1 steps
    capped = {**CFG, "retry": {**CFG["retry"], "escalate": {"memory_factor": 4.0, "memory_max_gb": 0.75}}}
    assert escalate(None, "memory", capped, None)["mem_mb"] == 768
    assert escalate({"mem_mb": 768, "steps": 1}, "memory", capped, None) is None  # at the cap
    # time: x factor, at most the partition's MaxTime; UNLIMITED (None): the factor alone
    assert escalate(None, "time", CFG, None)["time_min"] == 2
    assert escalate({"time_min": 20}, "time", CFG, 30)["time_min"] == 30
    assert escalate({"time_min": 30}, "time", CFG, 30) is None
    # no limit of its own in the job file: nothing to raise
    assert escalate(None, "memory", {"resources": {}, "retry": {}}, None) is None
    assert escalate(None, "time", {"resources": {}, "retry": {}}, None) is None


def test_partition_max_time():
    out = (
        "PartitionName=debug Default=YES MaxTime=UNLIMITED State=UP\n"
        "PartitionName=short Default=NO MaxTime=01:30:00 State=UP\n"
        "PartitionName=long MaxTime=2-00:00:00\n"
    )
    assert parse_partition_max_time(out, None) is None
    assert parse_partition_max_time(out, "short") == 90
    assert parse_partition_max_time(out, "long") == 2880
    assert parse_partition_max_time(out, "absent") is None


@pytest.fixture
def job(tmp_path):
    (tmp_path / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3)))
    (tmp_path / "job.yaml").write_text(
        "name: esc\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 1}\n"
        "resources: {mem_gb: 0.25, time_min: 1}\nexecutor: {kind: slurm, mode: pilot, workers: 2}\n"
    )
    backend, j = prepare(load_config(tmp_path / "job.yaml"), root_override=str(tmp_path / "r"))
    return backend, j


class FakeClient:
    def __init__(self, max_time):
        self.max_time, self.calls = max_time, 0

    def config(self):
        return type("Config", (), {"max_array_size": 1001})()

    def partition_max_time(self, name):
        self.calls += 1
        return self.max_time


def _killed(lc, tid, element, owner="otherhost:1"):
    lc.queue([tid])
    lc.claim(tid, owner=owner, items=1, lease_s=60, honour_leases=False, submission=element.name)
    facts = Facts(elements={element.name: element}, by_task={tid: [element]})
    return lc.settle(facts)


def test_lifecycle_keeps_slurms_facts_and_escalated_tasks_leave_the_pilots(job):
    backend, j = job
    lc = Lifecycle.of(backend, j.job_id, j.config)
    now = time.time()
    mib = 1024 * 1024
    el = Element("200", 0, now - 30, SlurmState.FAILED, (0, 9), 616 * mib, 256 * mib)
    assert "t0000000" in _killed(lc, "t0000000", el)
    st = lc.task("t0000000")
    assert (st.state, st.slurm_state, st.slurm_exit, st.cause) == (
        TaskState.FAILED,
        "failed",
        "0:9",
        "resources/memory",
    )
    assert needs_escalation(st, lc.max_attempts) == "memory"
    # a pilot does not run it, and live pilots do not cover it: it is resubmitted at once
    with pytest.raises(OwnArray):
        lc.claim("t0000000", owner="pilot:2", items=1, lease_s=60, honour_leases=True)
    live_pilots = Facts(
        elements={"300_0": Element("300", 0, now, SlurmState.RUNNING)},
        pool=[Element("300", 0, now, SlurmState.RUNNING)],
    )
    assert "t0000000" in lc.settle(live_pilots)
    # the executor decides the resources (once per failed attempt) and plans an array of its own
    ex = SlurmExecutor(backend, j, client=FakeClient(None))
    own = ex.escalated(["t0000000", "t0000001"])
    assert own == {"t0000000": {"mem_mb": 512, "time_min": 1, "steps": 1, "attempt": 1}}
    assert ex.escalated(["t0000000"]) == own  # idempotent: decided for attempt 1 already
    plans = ex.plan(["t0000000", "t0000001"], own)
    assert [(p["mode"], p["tasks"]) for p in plans] == [("pilot", ["t0000001"]), ("array", ["t0000000"])]
    assert "#SBATCH --mem=512M" in plans[1]["script"] and "#SBATCH --mem=256M" in plans[0]["script"]
    assert ex.client.calls == 0  # no time escalation: the partition is not asked


def test_timeout_escalates_time_capped_by_maxtime(job):
    backend, j = job
    lc = Lifecycle.of(backend, j.job_id, j.config)
    el = Element("201", 1, time.time() - 90, SlurmState.TIMEOUT)
    _killed(lc, "t0000001", el)
    assert lc.task("t0000001").cause == "resources/time"
    ex = SlurmExecutor(backend, j, client=FakeClient(2))
    assert ex.escalated(["t0000001"])["t0000001"]["time_min"] == 2
    assert "#SBATCH --time=2" in ex.plan(["t0000001"], ex.escalated(["t0000001"]))[0]["script"]
    assert ex.client.calls == 1


def test_an_interrupted_end_is_no_resource_failure(job):
    backend, j = job
    lc = Lifecycle.of(backend, j.job_id, j.config)
    _killed(lc, "t0000002", Element("202", 2, time.time() - 5, SlurmState.CANCELLED))
    st = lc.task("t0000002")
    assert st.state == TaskState.QUEUED and st.cause is None and st.resources is None
