"""The audit log's JSON-lines copy (one line per committed audit row, appended and fsynced; nothing
for a transaction that rolled back), audit queries by project (its jobs included) and time, and
``slurmctl audit``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from slurmctl.controlplane.domain import Job, ResearchProject, utcnow
from slurmctl.controlplane.repo import Actor, Repository, open_repository
from slurmctl.errors import ConflictError

ACTOR = Actor("olga", "test")


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_committed_audit_row_is_copied_once(db_engine, tmp_path):
    from slurmctl.controlplane.db import upgrade

    upgrade(db_engine)
    path = tmp_path / "logs" / "audit.jsonl"
    repo = Repository(db_engine, audit_jsonl=path)
    v = repo.create_project(ResearchProject.build(name="lab", pi="olga"), ACTOR)
    repo.save_project(v.entity.with_member("mia", "member"), v.version, ACTOR)
    with pytest.raises(ConflictError):  # rolled back: no row, no line
        repo.save_project(v.entity.with_member("vic", "viewer"), v.version, ACTOR)
    job = Job.build(id="j1", kind="sbatch", submitted_by="mia", project="lab", cluster="dev")
    repo.create_job(job, Actor("mia", "test"))
    rows = repo.audit()
    lines = _lines(path)
    assert [r["id"] for r in lines] == [e.id for e in rows] and len(rows) == 3
    assert lines[0] == {
        "id": rows[0].id,
        "at": rows[0].at.isoformat(),
        "actor": "olga",
        "source": "test",
        "action": "project.create",
        "entity": "project",
        "entity_key": "project/lab",
        "before_sha256": None,
        "after_sha256": rows[0].after_sha256,
    }
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    os.rename(
        path, tmp_path / "logs" / "audit.jsonl.1"
    )  # rotation by rename: the next append makes a new file
    repo.save_job(job.advance("cancelled"), 1, ACTOR)
    assert [r["action"] for r in _lines(path)] == ["job.cancelled"]


def test_a_copy_that_cannot_be_appended_does_not_fail_the_committed_change(db_engine, tmp_path):
    """The copy is appended after the commit: failing it there would report a committed job as
    failed (and invite a second submission); the table keeps the rows, the change stands."""
    from slurmctl.controlplane.db import upgrade

    upgrade(db_engine)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    repo = Repository(db_engine, audit_jsonl=blocker / "audit.jsonl")  # its parent is a file
    v = repo.create_project(ResearchProject.build(name="lab", pi="olga"), ACTOR)
    assert v.entity.name == "lab" and [r.action for r in repo.audit()] == ["project.create"]


def test_audit_by_project_includes_its_jobs_and_since(repo: Repository):
    repo.create_project(ResearchProject.build(name="lab", pi="olga"), ACTOR)
    repo.create_project(ResearchProject.build(name="other", pi="olga"), ACTOR)
    for pid, project in (("j1", "lab"), ("j2", "other")):
        repo.create_job(
            Job.build(id=pid, kind="sbatch", submitted_by="olga", project=project, cluster="dev"), ACTOR
        )
    assert [e.entity_key for e in repo.audit(project="lab")] == ["project/lab", "job/j1"]
    assert repo.audit(since=utcnow() + timedelta(minutes=1)) == []


def _cli(url: str, *args: str, user_admins: str = "root") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLURMCTL_DATABASE_URL=url, SLURMCTL_ADMINS=user_admins)
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", "audit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_audit_command(tmp_path):
    import getpass

    me = getpass.getuser()
    url = f"sqlite:///{tmp_path}/control.db"
    repo = open_repository(url)
    repo.create_project(ResearchProject.build(name="lab", pi=me), Actor(me, "test"))
    repo.create_project(ResearchProject.build(name="other", pi="olga"), ACTOR)
    out = _cli(url, "--project", "lab", "--json", user_admins="nobody_else")
    assert out.returncode == 0, out.stderr
    assert [e["entity_key"] for e in json.loads(out.stdout)] == ["project/lab"]
    assert _cli(url, "--project", "other", user_admins="nobody_else").returncode == 14  # not its owner
    assert _cli(url, user_admins="nobody_else").returncode == 14  # the whole log: admins
    everything = _cli(url, "--since", "1h", user_admins=me)
    assert (
        everything.returncode == 0
        and "project.create" in everything.stdout
        and "project/other" in everything.stdout
    )
    assert _cli(url, "--since", "2999-01-01", user_admins=me).stdout == ""
    assert _cli(url, "--since", "yesterday", user_admins=me).returncode == 2
    # the JSON-lines copy next to the embedded database
    assert [r["entity_key"] for r in _lines(tmp_path / "audit.jsonl")] == ["project/lab", "project/other"]
