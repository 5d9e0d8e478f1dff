"""Exactly-once submission logic against a recording fake Slurm client: the job row is committed in
state ``accepted`` with its token before sbatch; the sbatch carries the token and the project's
account; recovery looks every token up with one squeue call (and one sacct call for what squeue does
not know), records the ids it finds and submits the rest. The real crash test is in
tests/faults/test_kill_cp_submit.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from slurmctl.controlplane.domain import JobState, ResearchProject, utcnow
from slurmctl.controlplane.repo import Actor, Repository
from slurmctl.controlplane.submit import TOKEN_PREFIX, Submitter
from slurmctl.errors import SubmissionError

ACTOR = Actor("alice", "test")
SCRIPT = "#!/bin/sh\ntrue\n"


class FakeSlurm:
    """Records every call; ``queue``/``acct`` map tokens to ids; ``sbatch`` assigns new ids."""

    def __init__(self, repo: Repository | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.queue: dict[str, str] = {}
        self.acct: dict[str, str] = {}
        self.next_id = 100
        self.fail: SubmissionError | None = None
        self.repo = repo
        self.seen_states: list[str] = []

    def sbatch(self, *, script_text: str, options: list[str], token: str) -> str:
        self.calls.append(("sbatch", (script_text, tuple(options), token)))
        if self.repo is not None:  # what the database holds while sbatch runs
            jobs = self.repo.list_jobs()
            self.seen_states += [j.entity.state.value for j in jobs if j.entity.submit_token == token]
        if self.fail is not None:
            raise self.fail
        self.next_id += 1
        self.queue[token] = str(self.next_id)
        return str(self.next_id)

    def find_names_in_queue(self, names):
        self.calls.append(("squeue", tuple(names)))
        return {n: self.queue[n] for n in names if n in self.queue}

    def find_names_in_accounting(self, names, since):
        self.calls.append(("sacct", (tuple(names), since)))
        return {n: self.acct[n] for n in names if n in self.acct}


@pytest.fixture
def lab(repo: Repository) -> ResearchProject:
    p = ResearchProject.build(name="lab", pi="alice", slurm_account="lab_acct")
    repo.create_project(p, ACTOR)
    return p


def _submitter(repo, fake, grace=timedelta(0), unix_user="alice"):
    return Submitter(repo, fake, cluster="dev", grace=grace, unix_user=unix_user)


def test_accept_commits_before_sbatch_and_submit_records_the_id(repo: Repository, lab):
    fake = FakeSlurm(repo)
    sub = _submitter(repo, fake)
    v = sub.accept(project="lab", script=SCRIPT, actor=ACTOR)
    assert v.entity.state == JobState.ACCEPTED and v.entity.submit_token.startswith(TOKEN_PREFIX)
    assert repo.get_job(v.entity.id).entity.script == SCRIPT
    assert fake.calls == []
    done = sub.submit(v, ACTOR)
    assert fake.seen_states == ["accepted"]
    ((name, (script, options, token)),) = fake.calls
    assert name == "sbatch" and script == SCRIPT and token == v.entity.submit_token
    assert "--account=lab_acct" in options and f"--job-name={token}" in options
    assert done.entity.state == JobState.SUBMITTED and done.entity.slurm_job_ids == ("101",)
    assert repo.get_job(v.entity.id).entity.slurm_job_ids == ("101",)


def test_same_idempotency_key_gives_the_same_job(repo: Repository, lab):
    sub = _submitter(repo, FakeSlurm())
    a = sub.accept(project="lab", script=SCRIPT, actor=ACTOR, idempotency_key="k")
    b = sub.accept(project="lab", script=SCRIPT, actor=ACTOR, idempotency_key="k")
    assert a.entity.id == b.entity.id and a.entity.submit_token == b.entity.submit_token


def test_definitive_sbatch_refusal_fails_the_job(repo: Repository, lab):
    fake = FakeSlurm()
    fake.fail = SubmissionError("sbatch failed", returncode=1, stderr="sbatch: error: Invalid account")
    sub = _submitter(repo, fake)
    v = sub.accept(project="lab", script=SCRIPT, actor=ACTOR)
    with pytest.raises(SubmissionError):
        sub.submit(v, ACTOR)
    assert repo.get_job(v.entity.id).entity.state == JobState.FAILED


def test_transient_sbatch_failure_leaves_the_job_for_recovery(repo: Repository, lab):
    fake = FakeSlurm()
    fake.fail = SubmissionError("sbatch failed", returncode=1, stderr="Socket timed out on send/recv")
    sub = _submitter(repo, fake)
    v = sub.accept(project="lab", script=SCRIPT, actor=ACTOR)
    with pytest.raises(SubmissionError):
        sub.submit(v, ACTOR)
    assert repo.get_job(v.entity.id).entity.state == JobState.ACCEPTED


def test_recover_looks_all_tokens_up_at_once_then_records_or_submits(repo: Repository, lab):
    fake = FakeSlurm()
    sub = _submitter(repo, fake)
    jobs = [sub.accept(project="lab", script=SCRIPT, actor=ACTOR).entity for _ in range(4)]
    fake.queue[jobs[0].submit_token] = "7"  # sbatched, still in slurmctld
    fake.acct[jobs[1].submit_token] = "8"  # sbatched long ago: only accounting knows it
    report = sub.recover(ACTOR)
    kinds = [c[0] for c in fake.calls]
    assert kinds == ["squeue", "sacct", "sbatch", "sbatch"]
    assert sorted(fake.calls[0][1]) == sorted(j.submit_token for j in jobs)
    assert sorted(fake.calls[1][1][0]) == sorted(j.submit_token for j in jobs[1:])
    assert fake.calls[1][1][1] <= min(j.created_at for j in jobs)
    assert repo.get_job(jobs[0].id).entity.slurm_job_ids == ("7",)
    assert repo.get_job(jobs[1].id).entity.slurm_job_ids == ("8",)
    assert all(repo.get_job(j.id).entity.state == JobState.SUBMITTED for j in jobs)
    assert (report.found, report.submitted, report.failed) == (2, 2, 0)
    fake.calls.clear()
    assert sub.recover(ACTOR).found == 0 and fake.calls == []  # nothing accepted: no Slurm call


def test_recover_leaves_other_users_jobs_to_them(repo: Repository, lab):
    """sbatch runs a job as whoever calls it: recovery run by bob (or root) records the ids of
    alice's jobs that reached Slurm but never sbatches her script itself."""
    fake = FakeSlurm()
    alices = _submitter(repo, fake)
    jobs = [alices.accept(project="lab", script=SCRIPT, actor=ACTOR).entity for _ in range(2)]
    fake.queue[jobs[0].submit_token] = "7"
    report = _submitter(repo, fake, unix_user="bob").recover(Actor("bob", "test"))
    assert (report.found, report.submitted, report.others) == (1, 0, 1)
    assert "sbatch" not in [c[0] for c in fake.calls]
    assert repo.get_job(jobs[1].id).entity.state == JobState.ACCEPTED
    assert _submitter(repo, fake).recover(ACTOR).submitted == 1  # alice's own recovery submits it


def test_a_replayed_key_looks_its_token_up_before_sbatch(repo: Repository, lab):
    """The first `cp submit` with a key timed out in sbatch after Slurm took the job: the replay
    (a new process, the same key) finds it by its token and does not submit it again."""
    fake = FakeSlurm()
    v = _submitter(repo, fake).accept(project="lab", script=SCRIPT, actor=ACTOR, idempotency_key="k")
    fake.queue[v.entity.submit_token] = "9"  # the first sbatch reached slurmctld
    again = _submitter(repo, fake)
    w = again.accept(project="lab", script=SCRIPT, actor=ACTOR, idempotency_key="k")
    done = again.submit(w, ACTOR)
    assert done.entity.slurm_job_ids == ("9",) and "sbatch" not in [c[0] for c in fake.calls]


def test_recover_leaves_jobs_younger_than_the_grace_period(repo: Repository, lab):
    fake = FakeSlurm()
    sub = _submitter(repo, fake, grace=timedelta(minutes=5))
    v = sub.accept(project="lab", script=SCRIPT, actor=ACTOR)
    assert sub.recover(ACTOR).submitted == 0 and fake.calls == []
    sub.recover(ACTOR, now=utcnow() + timedelta(minutes=6))
    assert repo.get_job(v.entity.id).entity.state == JobState.SUBMITTED


def test_recover_only_touches_its_cluster(repo: Repository, lab):
    fake = FakeSlurm()
    other = Submitter(repo, fake, cluster="other", grace=timedelta(0), unix_user="alice")
    v = other.accept(project="lab", script=SCRIPT, actor=ACTOR)
    assert _submitter(repo, fake).recover(ACTOR).submitted == 0 and fake.calls == []
    assert repo.get_job(v.entity.id).entity.state == JobState.ACCEPTED
