"""The lifecycle's side of job control: the paused flag and the event history (compare-and-set,
idempotent, bounded), claims refused while paused or purging, purge's records deleted with the job
record last; and which `scontrol hold` failures mean only "that array has ended"."""

from __future__ import annotations

import pytest

from slurmctl.errors import JobNotFoundError, StateError
from slurmctl.lifecycle import (
    EVENTS_KEPT,
    JobClosed,
    Lifecycle,
    Paused,
    begin_purge,
    create_job,
    create_tasks,
    forget_job,
    job_status,
    record_event,
    set_job_state,
    set_paused,
)
from slurmctl.model.core import JobStatus, TaskStatus
from slurmctl.model.states import JobState, TaskState
from slurmctl.slurm.client import _only_ended_ids
from slurmctl.slurm.runner import CommandResult
from slurmctl.storage import keys
from slurmctl.storage.local import local_backend


@pytest.fixture
def backend(tmp_path):
    b = local_backend(tmp_path / "root")
    create_job(b, JobStatus(job_id="j", name="j", state=JobState.SUBMITTED, tasks=2))
    create_tasks(b, "j", [TaskStatus(task_id="t0000000"), TaskStatus(task_id="t0000001")])
    return b


def claim(b, tid="t0000000"):
    return Lifecycle(b, "j").claim(tid, owner="h:1", items=1, lease_s=30, honour_leases=True)


def test_pause_is_idempotent_and_recorded(backend):
    st, changed = set_paused(backend, "j", True, who="ann@h")
    assert changed and st.paused
    _, changed = set_paused(backend, "j", True, who="ann@h")
    assert not changed
    st, changed = set_paused(backend, "j", False, who="bob@h", detail="after the fix")
    assert changed and not st.paused
    assert [(e["what"], e["who"], e["detail"]) for e in st.events] == [
        ("pause", "ann@h", ""),
        ("resume", "bob@h", "after the fix"),
    ]
    assert st.events[0]["at"] <= st.events[1]["at"]
    with pytest.raises(JobNotFoundError):
        set_paused(backend, "nope", True)


def test_no_claim_while_paused(backend):
    set_paused(backend, "j", True)
    with pytest.raises(Paused):
        claim(backend)
    t = Lifecycle(backend, "j").task("t0000000")
    assert t.state == TaskState.PENDING and t.attempt == 0  # nothing spent
    set_paused(backend, "j", False)
    assert claim(backend).attempt == 1


def test_a_finished_job_cannot_be_paused(backend):
    set_job_state(backend, "j", JobState.SUCCEEDED)
    with pytest.raises(StateError, match="no work to pause"):
        set_paused(backend, "j", True)


def test_events_are_bounded(backend):
    for i in range(EVENTS_KEPT + 5):
        record_event(backend, "j", "note", str(i))
    events = job_status(backend, "j").events
    assert len(events) == EVENTS_KEPT and events[-1]["detail"] == str(EVENTS_KEPT + 4)


def test_purging_refuses_claims_and_forget_deletes_the_job_record_last(backend):
    st = begin_purge(backend, "j")
    assert st.state == JobState.PURGING and st.events[-1]["what"] == "purge"
    assert begin_purge(backend, "j").events == st.events  # idempotent: no second event
    with pytest.raises(JobClosed):
        claim(backend)
    deleted: list[str] = []
    real = backend.state.delete
    backend.state.delete = lambda table, key: (deleted.append(table), real(table, key))  # type: ignore[method-assign]
    assert forget_job(backend, "j") == 2 + 1 + 1  # two tasks, one progress group, the job
    assert deleted[-1] == keys.JOBS_TABLE and deleted.count(keys.JOBS_TABLE) == 1
    assert backend.state.scan(keys.TASKS_TABLE, "j/") == []
    assert forget_job(backend, "j") == 0  # idempotent


@pytest.mark.parametrize(
    ("stderr", "ok"),
    [
        ("Job has already finished for job 11356\nslurm_suspend error: Job has already finished\n", True),
        ("Invalid job id specified for job 9\nslurm_suspend error: Invalid job id specified\n", True),
        ("Job has already finished for job 1\nslurm_suspend error: No error\n", True),
        ("11358_0-3: Job has already finished\n", True),
        ("slurm_suspend error: Access/permission denied\n", False),
        ("scontrol: error: Unable to contact slurm controller\n", False),
        ("", False),
    ],
)
def test_hold_failures_that_mean_the_array_ended(stderr, ok):
    assert _only_ended_ids(CommandResult(("scontrol", "hold", "1"), 1, "", stderr, 1)) is ok
