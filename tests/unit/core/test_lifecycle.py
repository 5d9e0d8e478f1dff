"""The one owner of task state: settling from scheduler facts, the attempt budget, leases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.lifecycle import (
    LOST_AFTER_S,
    Busy,
    Element,
    Facts,
    LeaseLost,
    Lifecycle,
    owner_alive,
    this_host,
)
from slurmctl.model.states import JobState, TaskState
from slurmctl.slurm.states import JobState as SlurmState


@pytest.fixture
def job(tmp_path):
    (tmp_path / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(4)))
    (tmp_path / "job.yaml").write_text(
        "name: lc\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 1}\n"
        "retry: {max_attempts: 2}\n"
    )
    backend, job = prepare(load_config(tmp_path / "job.yaml"), root_override=str(tmp_path / "r"))
    return Lifecycle.of(backend, job.job_id, job.config), job


def pilots(sub: str, n: int, state: SlurmState | None, submitted_at: float) -> list[Element]:
    return [Element(sub, i, submitted_at, state) for i in range(n)]


def pool_facts(*groups: list[Element]) -> Facts:
    els = [e for g in groups for e in g]
    return Facts(elements={e.name: e for e in els}, pool=els)


FOREIGN = "otherhost:4242"  # a worker this host cannot see: only its lease and Slurm speak for it


def test_new_pilot_submission_not_listed_yet_keeps_tasks_alive(job):
    """The race of the pilot chaos runs: the old pilots ended, the new submission is not listed
    (slurmdbd lists a new array seconds late) — nothing is failed, nothing resubmitted."""
    lc, j = job
    lc.queue(j.task_ids())
    now = time.time()
    old = pilots("100", 2, SlurmState.CANCELLED, now - 120)
    new = pilots("101", 2, None, now - 1)
    assert lc.settle(pool_facts(old, new)) == []
    assert {t.state for t in lc.tasks()} == {TaskState.QUEUED}
    assert all(t.failures == 0 for t in lc.tasks())
    # ...and once the grace period of the new submission is over without a listing, it is lost.
    lost = pilots("101", 2, None, now - LOST_AFTER_S - 1)
    assert sorted(lc.settle(pool_facts(old, lost))) == j.task_ids()
    assert all(t.failures == 0 for t in lc.tasks())  # cancelled pilots are not the tasks' fault


def test_live_lease_is_not_settled_by_other_elements(job):
    lc, j = job
    lc.queue(j.task_ids())
    lc.claim("t0000000", owner=FOREIGN, items=1, lease_s=60, honour_leases=True, submission="100_1")
    now = time.time()
    facts = pool_facts(
        [Element("100", 0, now - 60, SlurmState.COMPLETED), Element("100", 1, now - 60, SlurmState.RUNNING)]
    )
    lc.settle(facts)
    st = lc.task("t0000000")
    assert st.state == TaskState.RUNNING and st.owner == FOREIGN
    # The holder's own element ended (kill -9 of the worker): settled at once, one failed attempt.
    facts = pool_facts(
        [Element("100", 0, now - 60, SlurmState.COMPLETED), Element("100", 1, now - 60, SlurmState.FAILED)]
    )
    again = lc.settle(facts)
    st = lc.task("t0000000")
    assert st.state == TaskState.FAILED and st.failures == 1
    assert "t0000000" in again


def test_scancelled_holder_requeues_without_a_failure(job):
    lc, j = job
    lc.queue(j.task_ids())
    lc.claim("t0000000", owner=FOREIGN, items=1, lease_s=60, honour_leases=True, submission="100_0")
    facts = pool_facts([Element("100", 0, time.time() - 60, SlurmState.CANCELLED)])
    assert "t0000000" in lc.settle(facts)
    st = lc.task("t0000000")
    assert st.state == TaskState.QUEUED and st.failures == 0


def test_only_the_latest_submission_speaks_for_an_array_task(job):
    lc, _j = job
    lc.queue(["t0000000"])
    now = time.time()
    old = Element("100", 0, now - 100, SlurmState.FAILED)
    new = Element("101", 0, now - 1, None)  # resubmitted, not listed yet
    facts = Facts(elements={old.name: old, new.name: new}, by_task={"t0000000": [new]})
    assert "t0000000" not in lc.settle(facts)  # (the never-submitted others are listed)
    assert lc.task("t0000000").state == TaskState.QUEUED


def test_a_failed_array_element_that_never_claimed_counts_one_failure(job):
    lc, _j = job
    lc.queue(["t0000000"])
    el = Element("100", 0, time.time() - 10, SlurmState.FAILED)
    facts = Facts(elements={el.name: el}, by_task={"t0000000": [el]})
    assert "t0000000" in lc.settle(facts)
    st = lc.task("t0000000")
    assert st.state == TaskState.FAILED and st.failures == 1


def test_settle_from_stale_records_never_overrides_a_claim(job):
    """A settle decision and a claim cannot both win: the decision is re-checked by CAS."""
    lc, _j = job
    lc.queue(["t0000000"])
    stale = lc.tasks()  # read before the claim below
    el = Element("100", 0, time.time() - 10, SlurmState.FAILED)
    facts = Facts(elements={el.name: el}, by_task={"t0000000": [el]})
    lc.claim("t0000000", owner=FOREIGN, items=1, lease_s=60, honour_leases=False, submission="101_0")
    lc.settle(facts, statuses=stale)
    st = lc.task("t0000000")
    assert st.state == TaskState.RUNNING and st.owner == FOREIGN and st.failures == 0


def test_attempt_budget_counts_failures_not_interruptions(job):
    lc, j = job
    lc.set_job(JobState.SUBMITTED)
    tid = "t0000000"
    for _ in range(5):  # interruptions (SIGTERM with a checkpoint) are free
        lc.claim(tid, owner="w:1", items=1, lease_s=60, honour_leases=True)
        lc.interrupted(tid, owner="w:1", exit_code=75)
    assert lc.task(tid).failures == 0 and lc.task(tid).attempt == 5
    lc.claim(tid, owner="w:1", items=1, lease_s=60, honour_leases=True)
    lc.failed(tid, owner="w:1", error="boom", exit_code=1)
    lc.claim(tid, owner="w:1", items=1, lease_s=60, honour_leases=True)
    lc.failed(tid, owner="w:1", error="boom", exit_code=1)
    st = lc.task(tid)
    assert st.state == TaskState.FAILED and st.failures == 2  # max_attempts is 2: final
    with pytest.raises(Busy):
        lc.claim(tid, owner="w:2", items=1, lease_s=60, honour_leases=True)
    assert lc.settle(Facts()) == [t for t in j.task_ids() if t != tid]
    assert lc.refresh_job().state.value == "running"


def test_lease_lost_and_renew(job):
    lc, _j = job
    lc.claim("t0000000", owner="w:1", items=1, lease_s=0.01, honour_leases=True)
    time.sleep(0.02)
    lc.claim("t0000000", owner="w:2", items=1, lease_s=60, honour_leases=True)  # lease expired
    st = lc.task("t0000000")
    assert st.owner == "w:2" and st.failures == 1  # the lapsed holder counts as a failed attempt
    with pytest.raises(LeaseLost):
        lc.renew("t0000000", owner="w:1", lease_s=60, done=1, failed=0)


def test_dead_holder_on_this_host_is_taken_over_at_once(job):
    """A pilot honours live leases, but a holder whose pid is gone on this host holds nothing."""
    lc, _j = job
    proc = subprocess.Popen([sys.executable, "-c", "import slurmctl"])
    proc.wait()
    dead = f"{this_host()}:{proc.pid}"
    assert owner_alive(dead) is False
    assert owner_alive(f"{this_host()}:{os.getpid()}") is True
    lc.claim("t0000000", owner=dead, items=1, lease_s=3600, honour_leases=True)
    st = lc.claim("t0000000", owner="w:2", items=1, lease_s=60, honour_leases=True)
    assert st is not None and st.owner == "w:2" and st.failures == 1


def test_live_holder_on_this_host_is_never_taken_over(job):
    """A one-task worker takes over a lease by default (its Slurm element replaced the holder's),
    but not from a holder it sees alive on this host."""
    lc, _j = job
    me = f"{this_host()}:{os.getpid()}"
    lc.claim("t0000000", owner=me, items=1, lease_s=60, honour_leases=True)
    with pytest.raises(Busy):
        lc.claim("t0000000", owner="w:2", items=1, lease_s=60, honour_leases=False)
    lc.claim("t0000001", owner=FOREIGN, items=1, lease_s=60, honour_leases=True)
    st = lc.claim("t0000001", owner="w:2", items=1, lease_s=60, honour_leases=False)
    assert st.owner == "w:2" and st.failures == 1


def test_an_element_that_put_its_task_back_cleanly_is_no_failure(job):
    """Time limit: the worker checkpoints and exits 75, which Slurm records as FAILED."""
    lc, _j = job
    lc.queue(["t0000000"])
    lc.claim("t0000000", owner=FOREIGN, items=1, lease_s=60, honour_leases=False, submission="100_0")
    lc.interrupted("t0000000", owner=FOREIGN, exit_code=75)
    el = Element("100", 0, time.time() - 60, SlurmState.FAILED)
    assert "t0000000" in lc.settle(Facts(elements={el.name: el}, by_task={"t0000000": [el]}))
    st = lc.task("t0000000")
    assert st.state == TaskState.QUEUED and st.failures == 0


def test_pilots_that_all_failed_before_any_work_count_a_failure(job):
    """A broken environment (pilots die at start) must not be resubmitted for ever; pilots that
    ran tasks and then failed (e.g. exit 75 at the time limit) leave the rest without a failure."""
    lc, j = job
    lc.queue(j.task_ids())
    dead = pilots("100", 2, SlurmState.FAILED, time.time() - 60)
    lc.settle(pool_facts(dead))
    assert {t.failures for t in lc.tasks()} == {1}
    lc.queue(j.task_ids())
    lc.claim("t0000000", owner=FOREIGN, items=1, lease_s=60, honour_leases=True, submission="101_0")
    lc.interrupted("t0000000", owner=FOREIGN, exit_code=75)
    ran = pilots("101", 2, SlurmState.FAILED, time.time() - 30)
    assert sorted(lc.settle(pool_facts(dead, ran))) == j.task_ids()
    assert {t.failures for t in lc.tasks()} == {1}


def test_fresh_budget_for_tasks_that_used_up_their_attempts(job):
    """`resubmit --failed`: after a full disk burnt every attempt, the tasks run again."""
    lc, _j = job
    for _ in range(2):
        lc.claim("t0000000", owner="w:1", items=1, lease_s=60, honour_leases=True)
        lc.failed("t0000000", owner="w:1", error="No space left on device", exit_code=6)
    assert "t0000000" not in lc.settle(Facts())
    assert lc.fresh_budget() == ["t0000000"]
    assert "t0000000" in lc.settle(Facts())
    assert lc.task("t0000000").failures == 0 and lc.fresh_budget() == []


def test_a_late_result_completes_a_job_stored_failed(job):
    lc, j = job
    lc.set_job(JobState.SUBMITTED)
    for tid in j.task_ids():
        lc.claim(tid, owner="w:1", items=1, lease_s=60, honour_leases=True)
        if tid == "t0000000":
            lc.failed(tid, owner="w:1", error="boom", exit_code=1)
        else:
            lc.succeeded(tid, owner="w:1", items_done=1, items_failed=0)
    lc.claim("t0000000", owner="w:2", items=1, lease_s=60, honour_leases=True)
    lc.failed("t0000000", owner="w:2", error="boom", exit_code=1)
    assert lc.refresh_job().state == JobState.FAILED
    lc.published("t0000000")  # a worker thought lost published after all
    assert lc.refresh_job().state == JobState.SUCCEEDED


def test_broken_environment_after_a_good_submission_still_counts(job):
    """Pilots of an earlier submission ran work; the newest submission's pilots all die at start
    (the venv is gone): that counts, so resubmission cannot go on for ever."""
    lc, _j = job
    lc.queue(["t0000000"])
    lc.claim("t0000000", owner=FOREIGN, items=1, lease_s=60, honour_leases=True, submission="100_0")
    lc.interrupted("t0000000", owner=FOREIGN, exit_code=75)
    good = pilots("100", 2, SlurmState.COMPLETED, time.time() - 120)
    broken = pilots("101", 2, SlurmState.FAILED, time.time() - 10)
    lc.settle(pool_facts(good, broken))
    assert lc.task("t0000000").failures == 1


def test_a_result_published_after_the_holder_was_settled_dead_wins(job):
    lc, _j = job
    lc.claim("t0000000", owner=FOREIGN, items=1, lease_s=60, honour_leases=True, submission="100_0")
    lc.settle(pool_facts([Element("100", 0, time.time() - 60, SlurmState.FAILED)]))
    assert lc.task("t0000000").state == TaskState.FAILED
    lc.succeeded("t0000000", owner=FOREIGN, items_done=1, items_failed=0)  # the slow worker publishes
    assert lc.task("t0000000").state == TaskState.SUCCEEDED


def test_cancelled_tasks_are_never_claimed_and_exhausted_ones_never_queued(job):
    lc, _j = job
    lc.set_job(JobState.SUBMITTED)
    lc.cancel()
    with pytest.raises(Busy):
        lc.claim("t0000000", owner="w:1", items=1, lease_s=60, honour_leases=False)
    lc.queue(["t0000001"])
    assert lc.task("t0000001").state == TaskState.QUEUED  # a resubmission makes it runnable again
