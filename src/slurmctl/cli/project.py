"""``slurmctl project``: research projects in the control plane's database, and their Slurm accounts.

A thin layer: parse, call :mod:`slurmctl.controlplane`, print. The database is ``--url`` /
``$SLURMCTL_DATABASE_URL`` (default: the embedded SQLite file, created on first use). Changes are
made in the database; ``project sync`` makes Slurm match (``sacctmgr``), ``project import`` reads
existing Slurm accounts into projects. Every change is audited as ``cli@<host>`` by the Unix user.

Exit codes: 0 done; 2 invalid name, role or URL; 5 no such project/member; 6 the database failed or
the project changed meanwhile (run again); 7 sacctmgr failed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from slurmctl.cli.db import UrlOpt

if TYPE_CHECKING:
    from datetime import datetime

    from slurmctl.controlplane.domain import ResearchProject
    from slurmctl.controlplane.repo import Actor

project_app = typer.Typer(help="Research projects and their Slurm accounts.", no_args_is_help=True)

ClusterOpt = Annotated[
    str | None, typer.Option("--cluster", help="Slurm cluster (default: ClusterName of the local slurm.conf)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _actor() -> Actor:
    import getpass
    import socket

    from slurmctl.controlplane.repo import Actor

    return Actor(getpass.getuser(), f"cli@{socket.gethostname()}")


def _cluster(cluster: str | None, runner: object) -> str:
    if cluster:
        return cluster
    from slurmctl.errors import ConfigError
    from slurmctl.slurm.client import SlurmClient

    name = SlurmClient(runner).config().cluster_name  # type: ignore[arg-type]
    if not name:
        raise ConfigError("scontrol show config names no ClusterName", hint="pass --cluster")
    return name


def _describe(p: ResearchProject, version: int) -> str:
    lines = [
        f"project {p.name} (version {version})",
        f"  title: {p.title or '-'}",
        f"  pi: {p.pi}",
        f"  slurm account: {p.slurm_account} (parent {p.parent_account})",
        "  members: " + ", ".join(f"{u} ({r})" for u, r in p.members.items()),
    ]
    for a in p.allocations:
        where = a.cluster + (f"/{a.partition}" if a.partition else "")
        lines.append(
            f"  allocation {where}: {a.cpu_hours:g} core-h, {a.gpu_hours:g} GPU-h, {a.mem_gb_hours:g} GB-h, "
            f"{a.period_start:%Y-%m-%d} to {a.period_end:%Y-%m-%d}"
        )
    return "\n".join(lines)


@project_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="project name = Slurm account (lowercase, ≤ 64)")],
    pi: Annotated[str, typer.Option("--pi", help="principal investigator (Unix user; becomes an owner)")],
    title: Annotated[str, typer.Option("--title")] = "",
    parent: Annotated[str, typer.Option("--parent", help="parent Slurm account")] = "root",
    url: UrlOpt = None,
) -> None:
    """Create a project in the database (`project sync` creates its Slurm account)."""
    from slurmctl.controlplane.domain import ResearchProject
    from slurmctl.controlplane.repo import open_repository

    project = ResearchProject.build(name=name, pi=pi, title=title, parent_account=parent)
    stored = open_repository(url).create_project(project, _actor())
    print(f"created project {name} (version {stored.version})")


@project_app.command("list")
def list_(as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """List the projects: name, PI, parent account, members."""
    from slurmctl.controlplane.repo import open_repository

    projects = open_repository(url).list_projects()
    if as_json:
        print(
            json.dumps(
                [{**v.entity.model_dump(mode="json"), "version": v.version} for v in projects], indent=2
            )
        )
        return
    for v in projects:
        p = v.entity
        print(f"{p.name}\tpi={p.pi}\tparent={p.parent_account}\tmembers={len(p.members)}")


@project_app.command("show")
def show(name: str, as_json: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show one project with its members and allocations."""
    from slurmctl.controlplane.repo import open_repository

    v = open_repository(url).get_project(name)
    if as_json:
        print(json.dumps({**v.entity.model_dump(mode="json"), "version": v.version}, indent=2))
    else:
        print(_describe(v.entity, v.version))


@project_app.command("add-member")
def add_member(
    name: str,
    user: str,
    role: Annotated[str, typer.Option("--role", help="owner, member or viewer")] = "member",
    url: UrlOpt = None,
) -> None:
    """Add USER to the project (or change their role)."""
    from slurmctl.controlplane.domain import Role
    from slurmctl.controlplane.repo import open_repository
    from slurmctl.errors import ConfigError

    if role not in {r.value for r in Role}:
        raise ConfigError(f"--role: {role!r} is not a role", hint="owner, member or viewer")
    repo = open_repository(url)
    v = repo.get_project(name)
    stored = repo.save_project(
        v.entity.with_member(user, role), v.version, _actor(), action="project.add_member"
    )
    print(f"{user} is {role} of {name} (version {stored.version})")


@project_app.command("remove-member")
def remove_member(name: str, user: str, url: UrlOpt = None) -> None:
    """Remove USER from the project (not the PI)."""
    from slurmctl.controlplane.repo import open_repository

    repo = open_repository(url)
    v = repo.get_project(name)
    stored = repo.save_project(
        v.entity.without_member(user), v.version, _actor(), action="project.remove_member"
    )
    print(f"{user} removed from {name} (version {stored.version})")


def _when(text: str, flag: str) -> datetime:
    """An ISO date (UTC midnight) or date-time (UTC unless it carries an offset). Raises ConfigError."""
    from datetime import UTC, datetime

    from slurmctl.errors import ConfigError

    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: not an ISO date or date-time: {text!r}", hint="e.g. 2027-01-01") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@project_app.command("allocate")
def allocate(
    name: str,
    cluster: Annotated[str, typer.Option("--cluster", help="Slurm cluster")],
    end: Annotated[str, typer.Option("--end", help="end of the period (ISO date or date-time, UTC)")],
    start: Annotated[str | None, typer.Option("--start", help="start of the period (default: now)")] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="one partition (not enforced)")] = None,
    cpu_hours: Annotated[float, typer.Option("--cpu-hours", help="core-hours")] = 0.0,
    gpu_hours: Annotated[float, typer.Option("--gpu-hours", help="GPU-hours")] = 0.0,
    mem_gb_hours: Annotated[float, typer.Option("--mem-gb-hours", help="GB-hours of memory")] = 0.0,
    url: UrlOpt = None,
) -> None:
    """Add an allocation to the project (`project sync` turns whole-cluster ones into GrpTRESMins)."""
    from slurmctl.controlplane.domain import ResourceAllocation, utcnow
    from slurmctl.controlplane.repo import open_repository

    grant = ResourceAllocation.build(
        cluster=cluster,
        partition=partition,
        cpu_hours=cpu_hours,
        gpu_hours=gpu_hours,
        mem_gb_hours=mem_gb_hours,
        period_start=_when(start, "--start") if start else utcnow(),
        period_end=_when(end, "--end"),
    )
    repo = open_repository(url)
    v = repo.get_project(name)
    changed = v.entity.replace(allocations=[*v.entity.allocations, grant])
    stored = repo.save_project(changed, v.version, _actor(), action="project.allocate")
    print(f"allocated to {name} on {cluster}: {grant.tres_minutes()} TRES-minutes (version {stored.version})")


@project_app.command("sync")
def sync(
    cluster: ClusterOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the sacctmgr changes, make none")] = False,
    url: UrlOpt = None,
) -> None:
    """Make the cluster's Slurm accounts and associations match the projects (only the differences)."""
    from slurmctl.controlplane import slurm_accounts
    from slurmctl.controlplane.repo import open_repository
    from slurmctl.slurm.runner import CommandRunner

    projects = [v.entity for v in open_repository(url).list_projects()]
    runner = CommandRunner()
    where = _cluster(cluster, runner)
    changes = slurm_accounts.sync(runner, projects, where, dry_run=dry_run)
    for change in changes:
        print(f"{'would ' if dry_run else ''}{change.summary}")
    verb = "would make" if dry_run else "made"
    print(f"{where}: {len(projects)} project(s), {verb} {len(changes)} change(s)")


@project_app.command("import")
def import_(
    cluster: ClusterOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be imported")] = False,
    url: UrlOpt = None,
) -> None:
    """Create projects from the cluster's existing Slurm accounts and user associations."""
    from slurmctl.controlplane import slurm_accounts
    from slurmctl.controlplane.repo import open_repository
    from slurmctl.slurm.runner import CommandRunner

    repo = open_repository(url)
    runner = CommandRunner()
    where = _cluster(cluster, runner)
    known = [v.entity.slurm_account for v in repo.list_projects()]
    projects, skipped = slurm_accounts.plan_import(
        slurm_accounts.read_associations(runner, where), where, known=known
    )
    actor = _actor()
    for p in projects:
        if not dry_run:
            repo.create_project(p, actor)
        print(f"{'would import' if dry_run else 'imported'} {p.name}: pi {p.pi}, {len(p.members)} member(s)")
    for s in skipped:
        print(f"skipped {s.account}: {s.reason}")
    done = "to import" if dry_run else "imported"
    print(f"{where}: {len(projects)} project(s) {done}, {len(skipped)} skipped")
