"""The poller against a fake Slurm client: one squeue call per poll for every tracked job, one
bounded sacct call only for the jobs squeue lost, state changes through the repository, intervals
that grow while nothing changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from slurmctl.controlplane.domain import Job, JobState, ResearchProject, utcnow
from slurmctl.controlplane.poller import Poller, job_state
from slurmctl.controlplane.repo import Actor, Repository
from slurmctl.slurm.jobids import parse_job_id
from slurmctl.slurm.states import JobState as S
from slurmctl.slurm.watcher import BackoffSchedule

ACTOR = Actor("slurmctl-poller", "test")


@dataclass
class Row:
    job_id: str
    state: S

    @property
    def ref(self):
        return parse_job_id(self.job_id)

    is_step = False


class FakeSlurm:
    def __init__(self) -> None:
        self.queue: dict[str, S] = {}
        self.acct: dict[str, S] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def squeue(self, job_ids):
        ids = tuple(job_ids)
        self.calls.append(("squeue", ids))
        return [Row(i, self.queue[i.split("_")[0]]) for i in self.queue if i.split("_")[0] in ids]

    def sacct(self, job_ids, *, start, allocations_only, fields):
        ids = tuple(job_ids)
        assert start is not None and allocations_only
        self.calls.append(("sacct", ids))
        return [Row(i, s) for i, s in self.acct.items() if i in ids]


@pytest.fixture
def tracked(repo: Repository) -> list[Job]:
    repo.create_project(ResearchProject.build(name="lab", pi="alice"), ACTOR)
    jobs = []
    for n in range(60):
        j = Job.build(id=f"j{n:03d}", kind="sbatch", submitted_by="alice", project="lab", cluster="dev")
        v, _ = repo.create_job(j, ACTOR)
        j = j.advance(JobState.SUBMITTED, slurm_job_ids=(str(1000 + n),))
        repo.save_job(j, v.version, ACTOR)
        jobs.append(j)
    return jobs


def test_job_state_reduces_slurm_states():
    assert job_state([S.PENDING]) == JobState.SUBMITTED
    assert job_state([S.REQUEUED]) == JobState.SUBMITTED
    assert job_state([S.RUNNING, S.PENDING]) == JobState.RUNNING
    assert job_state([S.COMPLETED, S.PENDING]) == JobState.RUNNING  # an array part done
    assert job_state([S.COMPLETED, S.COMPLETED]) == JobState.COMPLETED
    assert job_state([S.COMPLETED, S.CANCELLED]) == JobState.CANCELLED
    assert job_state([S.CANCELLED, S.TIMEOUT]) == JobState.FAILED
    assert job_state([S.OUT_OF_MEMORY]) == JobState.FAILED
    assert job_state([S.UNKNOWN]) is None
    assert job_state([]) is None


def test_one_squeue_per_poll_and_sacct_only_for_lost_jobs(repo: Repository, tracked: list[Job]):
    fake = FakeSlurm()
    for j in tracked[:50]:
        fake.queue[j.slurm_job_ids[0]] = S.PENDING
    fake.queue[tracked[0].slurm_job_ids[0]] = S.RUNNING
    fake.queue[tracked[1].slurm_job_ids[0]] = S.CANCELLED
    for j in tracked[50:55]:  # gone from slurmctld: accounting knows how they ended
        fake.acct[j.slurm_job_ids[0]] = S.COMPLETED
    poller = Poller(repo, fake, cluster="dev", actor=ACTOR)
    report = poller.poll_once()
    assert [c[0] for c in fake.calls] == ["squeue", "sacct"]
    assert len(fake.calls[0][1]) == 60
    assert sorted(fake.calls[1][1]) == sorted(j.slurm_job_ids[0] for j in tracked[50:])
    state = {j.id: repo.get_job(j.id).entity.state for j in tracked}
    assert state[tracked[0].id] == JobState.RUNNING and state[tracked[1].id] == JobState.CANCELLED
    assert all(state[j.id] == JobState.COMPLETED for j in tracked[50:55])
    assert all(state[j.id] == JobState.SUBMITTED for j in tracked[55:])  # seen nowhere: unchanged
    assert (report.tracked, report.changed, report.unseen) == (60, 7, 5)
    fake.calls.clear()
    report = poller.poll_once()  # final jobs are no longer tracked
    assert [len(c[1]) for c in fake.calls] == [54, 5] and report.changed == 0


def test_no_tracked_jobs_no_slurm_call(repo: Repository):
    fake = FakeSlurm()
    assert Poller(repo, fake, cluster="dev", actor=ACTOR).poll_once().tracked == 0 and fake.calls == []


def test_run_grows_the_interval_while_nothing_changes(repo: Repository, tracked: list[Job]):
    fake = FakeSlurm()
    for j in tracked:
        fake.queue[j.slurm_job_ids[0]] = S.PENDING
    waits: list[float] = []
    poller = Poller(repo, fake, cluster="dev", actor=ACTOR, schedule=BackoffSchedule(1, 2, 5))
    poller.run(max_polls=3, sleep=waits.append)
    assert waits == [1, 2]
    fake.queue[tracked[0].slurm_job_ids[0]] = S.RUNNING
    poller.run(max_polls=2, sleep=waits.append)
    assert waits == [1, 2, 1]  # no wait after the last poll
    assert [c[0] for c in fake.calls] == ["squeue"] * 5


def test_poll_uses_the_submission_time_as_the_sacct_window(repo: Repository, tracked: list[Job]):
    fake = FakeSlurm()
    seen = {}

    def sacct(job_ids, *, start, allocations_only, fields):
        seen["start"] = start
        return []

    fake.sacct = sacct  # type: ignore[method-assign]
    Poller(repo, fake, cluster="dev", actor=ACTOR).poll_once()
    first = min(repo.get_job(j.id).entity.submitted_at for j in tracked)
    assert first - timedelta(minutes=5) <= seen["start"] <= first <= utcnow()


def test_a_failed_poll_is_logged_and_the_next_one_runs(repo: Repository, tracked: list[Job]):
    """squeue timing out once (slurmctld busy) must not end the poller daemon."""
    from slurmctl.errors import SchedulerQueryError

    fake = FakeSlurm()
    real = fake.squeue
    failures = iter([True])

    def squeue(job_ids):
        if next(failures, False):
            raise SchedulerQueryError("squeue timed out")
        return real(job_ids)

    fake.squeue = squeue  # type: ignore[method-assign]
    for j in tracked:
        fake.queue[j.slurm_job_ids[0]] = S.RUNNING
    reports: list = []
    Poller(repo, fake, cluster="dev", actor=ACTOR).run(
        max_polls=2, sleep=lambda s: None, on_poll=reports.append
    )
    assert reports[0].tracked == 0 and reports[1].changed == len(tracked)


def test_the_sacct_window_is_bounded(repo: Repository, tracked: list[Job], monkeypatch):
    """A job lost for months does not make every poll ask slurmdbd about months."""
    from slurmctl.controlplane import poller as mod

    fake = FakeSlurm()
    seen = {}

    def sacct(job_ids, *, start, allocations_only, fields):
        seen["start"] = start
        return []

    fake.sacct = sacct  # type: ignore[method-assign]
    monkeypatch.setattr(mod, "utcnow", lambda: utcnow() + timedelta(days=90))
    Poller(repo, fake, cluster="dev", actor=ACTOR).poll_once()
    assert seen["start"] >= utcnow() + timedelta(days=90) - mod.SACCT_LOOKBACK - timedelta(minutes=1)
