"""Projects as Slurm accounts on the real dev cluster: sync creates accounts (parents first) and the
members' associations, a second sync costs one sacctmgr call and changes nothing, allocation and
membership changes apply as single calls, and existing accounts import into projects that are
already in sync. Every sacctmgr call goes through a PATH shim that logs it.

Accounts are named ``sct_<random>_*`` and removed at teardown; the Unix users ``sbtest`` and
``nobody`` become Slurm users only for the test (removed again when the test made them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slurmctl.controlplane import slurm_accounts as sa
from slurmctl.controlplane.domain import ResearchProject, ResourceAllocation, Role
from slurmctl.controlplane.repo import Actor, open_repository
from slurmctl.slurm.runner import CommandRunner

pytestmark = pytest.mark.slurm

USERS = ("sbtest", "nobody")
ADMIN = Actor("root", "test")


def _sacctmgr(*args: str) -> str:
    return subprocess.run(["sacctmgr", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def _slurm_users() -> set[str]:
    return set(_sacctmgr("-P", "-n", "show", "user", "format=user").split())


class Shim:
    """``sacctmgr`` on a private PATH that appends its arguments to a log, then runs the real one."""

    def __init__(self, tmp: Path) -> None:
        real = shutil.which("sacctmgr")
        assert real, "sacctmgr not on PATH"
        self.log = tmp / "sacctmgr.log"
        self.log.touch()
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "sacctmgr"
        shim.write_text(f'#!/bin/sh\necho "$*" >> {self.log}\nexec {real} "$@"\n')
        shim.chmod(0o755)
        self.path = f"{bin_dir}:{os.environ['PATH']}"
        self.runner = CommandRunner(timeout=60, env=dict(os.environ, PATH=self.path))

    def calls(self) -> list[str]:
        lines = self.log.read_text().splitlines()
        self.log.write_text("")
        return lines


@pytest.fixture
def prefix(slurm_cluster) -> Iterator[str]:
    users_before = _slurm_users()
    name = f"sct_{uuid.uuid4().hex[:8]}"
    yield name
    mine = [
        a for a in _sacctmgr("-P", "-n", "show", "account", "format=account").split() if a.startswith(name)
    ]
    if mine:
        _sacctmgr("-i", "delete", "account", f"name={','.join(mine)}")
    for user in sorted(_slurm_users() - users_before):
        # Only users this test created, and only once no association of theirs is left.
        if not _sacctmgr("-P", "-n", "show", "assoc", f"user={user}", "format=account").strip():
            _sacctmgr("-i", "delete", "user", f"name={user}")


def _assocs(cluster: str, prefix: str) -> set[tuple[str, str, str, str]]:
    """(account, user, parent, GrpTRESMins) of our accounts, read without the shim."""
    out = _sacctmgr(
        "-P", "-n", "show", "assoc", f"cluster={cluster}", "format=account,user,parentname,grptresmins"
    )
    return {tuple(line.split("|")) for line in out.splitlines() if line.startswith(prefix)}  # type: ignore[misc]


def test_sync_and_import_on_the_dev_cluster(slurm_cluster, prefix, tmp_path):
    cluster = slurm_cluster.config.cluster_name or "dev"
    shim = Shim(tmp_path)
    # The Slurm side does not depend on the database engine (the repository suite runs on both).
    repo = open_repository(f"sqlite:///{tmp_path / 'cp.db'}")
    dept, lab = f"{prefix}_dept", f"{prefix}_lab"
    repo.create_project(ResearchProject.build(name=dept, pi="sbtest"), ADMIN)
    lab_v = repo.create_project(
        ResearchProject.build(
            name=lab, pi="sbtest", parent_account=dept, members={"nobody": "member", "slurm": "viewer"}
        ),
        ADMIN,
    )

    def projects() -> list[ResearchProject]:
        return [v.entity for v in repo.list_projects() if v.entity.name.startswith(prefix)]

    # First sync: one read, then per account one add and one add of its users; the parent first.
    changes = sa.sync(shim.runner, projects(), cluster)
    calls = shim.calls()
    assert len(calls) == 5 and calls[0].startswith("-P -n show assoc"), calls
    assert calls[1].startswith(f"-i add account {dept} ") and calls[3].startswith(f"-i add account {lab} ")
    assert len(changes) == 4
    assert _assocs(cluster, prefix) == {
        (dept, "", "root", ""),
        (dept, "sbtest", "", ""),
        (lab, "", dept, ""),
        (lab, "nobody", "", ""),
        (lab, "sbtest", "", ""),  # the viewer "slurm" has no association
    }

    # In sync: exactly one sacctmgr call, no change.
    assert sa.sync(shim.runner, projects(), cluster) == []
    assert len(shim.calls()) == 1

    # An allocation becomes GrpTRESMins; a removed member loses the association: one call each.
    now = datetime.now(UTC)
    grant = ResourceAllocation.build(
        cluster=cluster,
        cpu_hours=10,
        gpu_hours=0.5,
        period_start=now - timedelta(hours=1),
        period_end=now + timedelta(days=1),
    )
    changed = lab_v.entity.without_member("nobody").replace(allocations=[grant])
    repo.save_project(changed, lab_v.version, ADMIN)
    changes = sa.sync(shim.runner, projects(), cluster)
    assert [c.summary for c in changes] == [
        f"account {lab}: GrpTRESMins none → cpu=600,gres/gpu=30",
        f"account {lab}: remove users nobody",
    ]
    assert len(shim.calls()) == 3
    assert _assocs(cluster, prefix) == {
        (dept, "", "root", ""),
        (dept, "sbtest", "", ""),
        (lab, "", dept, "cpu=600,gres/gpu=30"),
        (lab, "sbtest", "", ""),
    }

    # Import into an empty database: both accounts come back as projects already in sync (one call).
    fresh = [
        p
        for p in sa.plan_import(sa.read_associations(shim.runner, cluster), cluster)[0]
        if p.name.startswith(prefix)
    ]
    assert len(shim.calls()) == 1
    assert [(p.name, p.pi, dict(p.members), p.parent_account) for p in fresh] == [
        (dept, "sbtest", {"sbtest": Role.OWNER}, "root"),
        (lab, "sbtest", {"sbtest": Role.OWNER}, dept),
    ]
    assert sa.sync(shim.runner, fresh, cluster) == []  # no allocations: the imported limit is left alone
    assert len(shim.calls()) == 1

    # Deleting a project's account removes its associations.
    sa.delete_account(shim.runner, lab, cluster)
    assert {a[0] for a in _assocs(cluster, prefix)} == {dept}


def test_cli_project_commands_sync_and_import(slurm_cluster, prefix, tmp_path):
    cluster = slurm_cluster.config.cluster_name or "dev"
    shim = Shim(tmp_path)
    env = dict(os.environ, PATH=shim.path, SLURMCTL_DATABASE_URL=f"sqlite:///{tmp_path / 'cp.db'}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "slurmctl", "project", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    lab = f"{prefix}_cli"
    assert run("create", lab, "--pi", "sbtest", "--title", "CLI lab").returncode == 0
    p = run("add-member", lab, "nobody")
    assert p.returncode == 0 and "nobody is member" in p.stdout
    p = run("sync", "--cluster", cluster, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert f"would create account {lab} under root" in p.stdout and _assocs(cluster, prefix) == set()
    p = run("sync", "--cluster", cluster)
    assert p.returncode == 0, p.stderr
    assert f"account {lab}: add users nobody, sbtest" in p.stdout
    assert (lab, "nobody", "", "") in _assocs(cluster, prefix)
    shim.calls()
    p = run("sync", "--cluster", cluster)
    assert p.returncode == 0 and "made 0 change(s)" in p.stdout
    assert len(shim.calls()) == 1
    p = run("allocate", lab, "--cluster", cluster, "--gpu-hours", "2", "--end", "2099-01-01")
    assert p.returncode == 0, p.stderr
    p = run("sync", "--cluster", cluster)
    assert f"account {lab}: GrpTRESMins none → gres/gpu=120" in p.stdout
    assert len(shim.calls()) == 2 and (lab, "", "root", "gres/gpu=120") in _assocs(cluster, prefix)

    # A second database imports the account the first one created.
    env["SLURMCTL_DATABASE_URL"] = f"sqlite:///{tmp_path / 'other.db'}"
    p = run("import", "--cluster", cluster)
    assert p.returncode == 0, p.stderr
    assert f"imported {lab}: pi nobody, 2 member(s)" in p.stdout  # the first user by name is the PI
    p = run("show", lab, "--json")
    assert p.returncode == 0 and '"pi": "nobody"' in p.stdout
