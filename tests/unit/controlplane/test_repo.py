"""The repository on SQLite and on a real PostgreSQL: CRUD, optimistic concurrency, idempotency
keys, the job state machine at the storage edge, and the append-only audit log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from slurmctl.controlplane.domain import Job, ResearchProject, ResourceAllocation, Role
from slurmctl.controlplane.repo import Actor, Repository, digest
from slurmctl.errors import ConflictError, NotFoundError, StateError

ALICE = Actor("alice", "cli@login1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def project(**kw) -> ResearchProject:
    return ResearchProject.build(**{"name": "lab", "pi": "alice", "title": "Lab", **kw})


def job(**kw) -> Job:
    return Job.build(
        **{"id": "j1", "kind": "sbatch", "submitted_by": "alice", "project": "lab", "cluster": "dev", **kw}
    )


def test_project_round_trip_with_members_and_allocations(repo: Repository):
    a = ResourceAllocation.build(
        cluster="dev", partition="gpu", gpu_hours=10.5, period_start=T0, period_end=T0 + timedelta(days=30)
    )
    p = project(members={"bob": "member", "carol": "viewer"}, allocations=[a], parent_account="chem")
    stored = repo.create_project(p, ALICE)
    assert stored.version == 1
    got = repo.get_project("lab")
    assert got.entity == p and got.version == 1
    assert got.entity.allocations[0].period_start == T0  # aware UTC back from every engine
    assert [v.entity.name for v in repo.list_projects()] == ["lab"]


def test_create_twice_conflicts(repo: Repository):
    repo.create_project(project(), ALICE)
    with pytest.raises(ConflictError, match="exists"):
        repo.create_project(project(), ALICE)


def test_account_taken_by_another_project_conflicts(repo: Repository):
    repo.create_project(project(), ALICE)
    with pytest.raises(ConflictError, match="refused by the database"):
        repo.create_project(project(name="lab2", slurm_account="lab"), ALICE)


def test_save_bumps_version_and_stale_version_conflicts(repo: Repository):
    v1 = repo.create_project(project(), ALICE)
    v2 = repo.save_project(v1.entity.with_member("bob", "member"), v1.version, ALICE)
    assert v2.version == 2
    v3 = repo.save_project(v2.entity.with_member("bob", "viewer").without_member("bob"), v2.version, ALICE)
    assert v3.version == 3 and "bob" not in repo.get_project("lab").entity.members
    with pytest.raises(ConflictError, match="version 2 expected, the project is at 3"):
        repo.save_project(v2.entity.with_member("dan", "member"), v2.version, ALICE)
    assert "dan" not in repo.get_project("lab").entity.members


def test_member_role_change_persists(repo: Repository):
    v1 = repo.create_project(project(members={"bob": "member"}), ALICE)
    repo.save_project(v1.entity.with_member("bob", "owner"), v1.version, ALICE)
    assert repo.get_project("lab").entity.members["bob"] == Role.OWNER


def test_slurm_account_is_immutable(repo: Repository):
    v1 = repo.create_project(project(), ALICE)
    with pytest.raises(ConflictError, match="Slurm account"):
        repo.save_project(v1.entity.replace(slurm_account="other"), v1.version, ALICE)


def test_missing_project(repo: Repository):
    with pytest.raises(NotFoundError, match="no project 'nope'"):
        repo.get_project("nope")
    with pytest.raises(NotFoundError):
        repo.save_project(project(name="nope"), 1, ALICE)
    with pytest.raises(NotFoundError):
        repo.delete_project("nope", 1, ALICE)


def test_concurrent_updates_one_wins(repo: Repository, db_engine):
    """Two writers read version 1 and write at the same moment: exactly one succeeds, the other gets
    ConflictError (on PostgreSQL the loser's UPDATE ... WHERE version = 1 matches no row once the
    winner commits; on SQLite BEGIN IMMEDIATE queues it and it then reads version 2)."""
    v1 = repo.create_project(project(), ALICE)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def write(user: str) -> None:
        other = Repository(db_engine)
        barrier.wait()
        try:
            results.append(other.save_project(v1.entity.with_member(user, "member"), v1.version, ALICE))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=write, args=(u,)) for u in ("bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "Versioned"]
    final = repo.get_project("lab")
    assert final.version == 2 and len(final.entity.members) == 2


def test_lost_update_between_read_and_write_is_detected(repo: Repository, db_engine, monkeypatch):
    """The version check in Python passes, then another writer commits before our UPDATE: the
    database-level ``WHERE version = ...`` must still refuse."""
    import slurmctl.controlplane.repo as repo_mod

    v1 = repo.create_project(project(), ALICE)
    real_fill = repo_mod._fill_project
    sneaked = []

    def fill_after_someone_else(row, p):
        if not sneaked:
            sneaked.append(1)
            with db_engine.begin() as conn:  # a concurrent writer: another connection, committed
                conn.execute(
                    text("UPDATE projects SET version = version + 1, title = 'x' WHERE name = 'lab'")
                )
        real_fill(row, p)

    monkeypatch.setattr(repo_mod, "_fill_project", fill_after_someone_else)
    if db_engine.dialect.name == "sqlite":
        pytest.skip("SQLite: BEGIN IMMEDIATE holds the write lock, another writer cannot commit meanwhile")
    with pytest.raises(ConflictError, match="changed by someone else"):
        repo.save_project(v1.entity.with_member("bob", "member"), v1.version, ALICE)


def test_delete_project(repo: Repository):
    v1 = repo.create_project(project(members={"bob": "member"}), ALICE)
    with pytest.raises(ConflictError):
        repo.delete_project("lab", 7, ALICE)
    repo.delete_project("lab", v1.version, ALICE)
    assert repo.list_projects() == []
    repo.create_project(project(), ALICE)  # the name is free again, members gone with it
    assert repo.get_project("lab").entity.members == {"alice": Role.OWNER}


def test_project_with_jobs_cannot_be_deleted(repo: Repository):
    v1 = repo.create_project(project(), ALICE)
    repo.create_job(job(), ALICE)
    with pytest.raises(StateError, match="has jobs"):
        repo.delete_project("lab", v1.version, ALICE)


def test_job_idempotency_key(repo: Repository):
    repo.create_project(project(), ALICE)
    first, created = repo.create_job(job(idempotency_key="k1"), ALICE)
    assert created and first.version == 1
    again, created = repo.create_job(job(id="j2", idempotency_key="k1"), ALICE)
    assert not created and again.entity.id == "j1"
    _, created = repo.create_job(job(id="j3", idempotency_key="k1", submitted_by="bob"), ALICE)
    assert created  # keys are per submitter
    with pytest.raises(ConflictError, match="job with this id"):
        repo.create_job(job(), ALICE)
    assert [a.action for a in repo.audit(entity_key="job/j2")] == []


def test_job_needs_a_project(repo: Repository):
    with pytest.raises(NotFoundError, match="no project 'lab'"):
        repo.create_job(job(), ALICE)


def test_job_states_persist_and_machine_is_enforced(repo: Repository):
    repo.create_project(project(), ALICE)
    v, _ = repo.create_job(job(created_at=T0), ALICE)
    s = repo.save_job(
        v.entity.advance("submitted", at=T0 + timedelta(seconds=1), slurm_job_ids=("41", "42")), 1, ALICE
    )
    assert s.version == 2
    got = repo.get_job("j1")
    assert got.entity.slurm_job_ids == ("41", "42") and got.entity.submitted_at == T0 + timedelta(seconds=1)
    # A forged entity that skips the state machine is refused at the storage edge too.
    forged = Job.build(
        **{**got.entity.model_dump(), "state": "accepted", "submitted_at": None, "slurm_job_ids": ()}
    )
    with pytest.raises(StateError, match="cannot go from submitted to accepted"):
        repo.save_job(forged, got.version, ALICE)
    done = repo.save_job(got.entity.advance("completed", at=T0 + timedelta(seconds=2)), got.version, ALICE)
    assert repo.list_jobs(states=["completed"])[0].entity == done.entity
    assert repo.list_jobs(states=["running"]) == []


def test_list_jobs_filters_and_pages(repo: Repository):
    repo.create_project(project(), ALICE)
    repo.create_project(project(name="other"), ALICE)
    for i in range(5):
        repo.create_job(job(id=f"j{i}", project="lab" if i % 2 == 0 else "other"), ALICE)
    assert [v.entity.id for v in repo.list_jobs(project="lab")] == ["j0", "j2", "j4"]
    page1 = repo.list_jobs(limit=2)
    page2 = repo.list_jobs(limit=2, after=page1[-1].entity.id)
    assert [v.entity.id for v in page1 + page2] == ["j0", "j1", "j2", "j3"]


def test_every_mutation_is_audited_with_digests(repo: Repository):
    p = project()
    v1 = repo.create_project(p, ALICE)
    p2 = v1.entity.with_member("bob", "member")
    repo.save_project(p2, v1.version, Actor("root", "api 10.0.0.7"))
    repo.delete_project("lab", 2, ALICE)
    entries = repo.audit(entity_key="project/lab")
    assert [(e.action, e.actor, e.source) for e in entries] == [
        ("project.create", "alice", "cli@login1"),
        ("project.update", "root", "api 10.0.0.7"),
        ("project.delete", "alice", "cli@login1"),
    ]
    assert (entries[0].before_sha256, entries[0].after_sha256) == (None, digest(p))
    assert (entries[1].before_sha256, entries[1].after_sha256) == (digest(p), digest(p2))
    assert (entries[2].before_sha256, entries[2].after_sha256) == (digest(p2), None)
    assert entries[0].at <= entries[1].at <= entries[2].at and entries[0].at.tzinfo is not None
    assert repo.audit(since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_failed_mutation_writes_no_audit(repo: Repository):
    v1 = repo.create_project(project(), ALICE)
    with pytest.raises(ConflictError):
        repo.save_project(v1.entity.with_member("bob", "member"), 99, ALICE)
    assert [e.action for e in repo.audit()] == ["project.create"]


def test_digest_is_canonical():
    p = project(members={"bob": "member", "carol": "viewer"})
    q = project(members={"carol": "viewer", "bob": "member"})
    assert digest(p) == digest(q) and len(digest(p)) == 64
    assert digest(p) != digest(p.with_member("dan", "member"))


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"])
def test_audit_log_is_append_only_in_the_database(repo: Repository, db_engine, statement):
    repo.create_project(project(), ALICE)
    with pytest.raises(DBAPIError, match="append-only"), db_engine.begin() as conn:
        conn.execute(text(statement))
    assert [e.actor for e in repo.audit()] == ["alice"]


def test_audit_log_refuses_truncate_on_postgresql(repo: Repository, db_engine):
    if db_engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    repo.create_project(project(), ALICE)
    with pytest.raises(DBAPIError, match="append-only"), db_engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))
    assert len(repo.audit()) == 1


def test_repository_has_no_audit_write_path():
    public = {n for n in dir(Repository) if not n.startswith("_")}
    assert not {n for n in public if "audit" in n} - {"audit"}
