"""A project is a Slurm account: keep accounts and user associations in step with the projects.

One ``sacctmgr -P -n show assoc`` reads every association of the cluster; :func:`plan_sync` (pure)
compares it with the projects and returns only the changes; :func:`apply` runs them with
``sacctmgr -i``, at most one call per change (an account's new users go in one ``add user name=a,b``).
A second sync of an unchanged state costs exactly one sacctmgr call.

What a project decides in Slurm (on one cluster):

* its account exists, under ``parent_account`` (created parents first when the parent is a project
  too; a parent that is neither a project nor an existing account is an error before any change);
* its owners and members have a user association under the account; viewers have none; other user
  associations under the account are removed;
* GrpTRESMins on the account association is the sum of the project's whole-cluster allocations active
  now (``cpu`` core-minutes, ``gres/gpu`` GPU-minutes, ``mem`` MB-minutes). A project without any
  allocation on the cluster leaves the account's GrpTRESMins alone (so imported limits survive).

Accounts that are not projects are never touched. Real Slurm behaviour worth knowing (sacctmgr 22.05):
GrpTRESMins counts usage since the last decay/reset (PriorityDecayHalfLife, PriorityUsageResetPeriod),
not per allocation period; removing the association of a user's default account succeeds and leaves
that user without a default account; ``sacctmgr add user`` creates a Slurm user that does not exist
yet (with the account as its default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from slurmctl.controlplane.domain import ResearchProject, Role, check_account_name, check_user_name, utcnow
from slurmctl.errors import ConfigError
from slurmctl.slurm.runner import NO_RETRY, CommandRunner

SACCTMGR = "sacctmgr"
ASSOC_FORMAT = "cluster,account,user,partition,parentname,grptresmins"


@dataclass(frozen=True)
class Association:
    """One row of ``sacctmgr show assoc``: an account's own association (``user == ""``) or a user's."""

    cluster: str
    account: str
    user: str
    partition: str
    parent: str
    grp_tres_mins: dict[str, int] = field(default_factory=dict)


def _by_account(
    associations: Iterable[Association], cluster: str
) -> tuple[dict[str, Association], dict[str, set[str]]]:
    """``cluster``'s account associations (no user, no partition) by account, and the users
    associated with each account."""
    accounts: dict[str, Association] = {}
    users: dict[str, set[str]] = {}
    for a in associations:
        if a.cluster != cluster:
            continue
        if a.user:
            users.setdefault(a.account, set()).add(a.user)
        elif not a.partition:
            accounts[a.account] = a
    return accounts, users


def parse_tres(text: str) -> dict[str, int]:
    """``cpu=600,gres/gpu=60`` → ``{"cpu": 600, "gres/gpu": 60}``. Pure."""
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        out[name] = int(value)
    return out


def format_tres(tres: dict[str, int]) -> str:
    """The inverse of :func:`parse_tres`, sorted by name. Pure."""
    return ",".join(f"{k}={v}" for k, v in sorted(tres.items()))


def parse_associations(text: str) -> list[Association]:
    """Parse ``sacctmgr -P -n show assoc format=<ASSOC_FORMAT>``. Pure. Raises ConfigError on a row
    that does not have the six fields (a different format string)."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 6:
            raise ConfigError(f"sacctmgr show assoc, line {lineno}: expected 6 fields, found {line!r}")
        cluster, account, user, partition, parent, tres = fields
        rows.append(Association(cluster, account, user, partition, parent, parse_tres(tres)))
    return rows


def read_associations(runner: CommandRunner, cluster: str) -> list[Association]:
    """Every association of ``cluster``, in one sacctmgr call. Raises SchedulerQueryError."""
    argv = [SACCTMGR, "-P", "-n", "show", "assoc", f"cluster={cluster}", f"format={ASSOC_FORMAT}"]
    return parse_associations(runner.run(argv).stdout)


@dataclass(frozen=True)
class Change:
    """One sacctmgr call of a sync: what it does (for people) and its arguments (after ``-i``)."""

    summary: str
    args: tuple[str, ...]

    def argv(self) -> list[str]:
        return [SACCTMGR, "-i", *self.args]


def _ordered(projects: Sequence[ResearchProject]) -> list[ResearchProject]:
    """Projects with every project-parent before its children (a parent cycle is a ConfigError). Pure."""
    by_account = {p.slurm_account: p for p in projects}
    done: dict[str, ResearchProject] = {}
    for p in sorted(projects, key=lambda p: p.name):
        chain: list[str] = []
        node: ResearchProject | None = p
        while node is not None and node.slurm_account not in done:
            if node.slurm_account in chain:
                raise ConfigError(f"parent accounts form a cycle: {' → '.join([*chain, node.slurm_account])}")
            chain.append(node.slurm_account)
            node = by_account.get(node.parent_account)
        for account in reversed(chain):
            done[account] = by_account[account]
    return list(done.values())


def plan_sync(
    projects: Sequence[ResearchProject], associations: Iterable[Association], cluster: str, at: datetime
) -> list[Change]:
    """The sacctmgr calls that make ``cluster`` match ``projects`` (empty when it already does). Pure.
    Raises ConfigError for a parent account that is neither a project nor a Slurm account."""
    accounts, users = _by_account(associations, cluster)
    planned = set(accounts) | {p.slurm_account for p in projects}
    missing = sorted({p.parent_account for p in projects} - planned)
    if missing:
        raise ConfigError(
            f"parent account(s) {', '.join(missing)}: neither a project nor a Slurm account on {cluster}",
            hint="create the parent first (`slurmctl project create`, or `sacctmgr add account`)",
        )
    changes: list[Change] = []
    where = f"cluster={cluster}"
    for p in _ordered(projects):
        acct = p.slurm_account
        limits = p.grp_tres_mins(cluster, at)
        have = accounts.get(acct)
        if have is None:
            args = ["add", "account", acct, where, f"parent={p.parent_account}"]
            args.append(f"description={p.title or p.name}")
            if limits:
                args.append(f"GrpTRESMins={format_tres(limits)}")
            changes.append(Change(f"create account {acct} under {p.parent_account}", tuple(args)))
        else:
            sets, what = [], []
            if have.parent != p.parent_account:
                sets.append(f"parent={p.parent_account}")
                what.append(f"parent {have.parent} → {p.parent_account}")
            if limits is not None and limits != have.grp_tres_mins:
                # A TRES no longer granted is cleared with -1 (sacctmgr's "no limit").
                target = {**{k: -1 for k in have.grp_tres_mins}, **limits}
                sets.append(f"GrpTRESMins={format_tres(target)}")
                old, new = format_tres(have.grp_tres_mins) or "none", format_tres(limits) or "none"
                what.append(f"GrpTRESMins {old} → {new}")
            if sets:
                args = ["modify", "account", "where", f"name={acct}", where, "set", *sets]
                changes.append(Change(f"account {acct}: {'; '.join(what)}", tuple(args)))
        present = users.get(acct, set())
        wanted = set(p.submitters())
        if add := sorted(wanted - present):
            args = ["add", "user", f"name={','.join(add)}", f"account={acct}", where]
            changes.append(Change(f"account {acct}: add users {', '.join(add)}", tuple(args)))
        if remove := sorted(present - wanted):
            args = ["delete", "user", f"name={','.join(remove)}", f"account={acct}", where]
            changes.append(Change(f"account {acct}: remove users {', '.join(remove)}", tuple(args)))
    return changes


def apply(runner: CommandRunner, changes: Sequence[Change]) -> None:
    """Run ``changes`` in order, each once (no retry: a sacctmgr change that timed out may still
    have happened; the next sync reads the state again and plans what is left). Raises
    SchedulerQueryError at the first failure; the changes before it are made."""
    for change in changes:
        runner.run(change.argv(), retry=NO_RETRY)


def sync(
    runner: CommandRunner,
    projects: Sequence[ResearchProject],
    cluster: str,
    *,
    at: datetime | None = None,
    dry_run: bool = False,
) -> list[Change]:
    """Read the cluster's associations (one call), plan, and unless ``dry_run`` apply. Returns the
    changes (made or, with ``dry_run``, to be made). Idempotent: a second run plans nothing."""
    changes = plan_sync(projects, read_associations(runner, cluster), cluster, at or utcnow())
    if not dry_run:
        apply(runner, changes)
    return changes


def delete_account(runner: CommandRunner, account: str, cluster: str) -> None:
    """Remove ``account`` and every association under it from ``cluster``. Raises SchedulerQueryError."""
    runner.run([SACCTMGR, "-i", "delete", "account", f"name={account}", f"cluster={cluster}"], retry=NO_RETRY)


@dataclass(frozen=True)
class Skipped:
    account: str
    reason: str


def plan_import(
    associations: Iterable[Association], cluster: str, *, known: Iterable[str] = ()
) -> tuple[list[ResearchProject], list[Skipped]]:
    """Projects for the accounts of ``cluster`` that are not ``known`` project accounts yet. Pure.

    Each account's users become members (role member); the PI is the first user by name (an owner;
    change it later). Skipped, with the reason: ``root``; accounts without users (they stay plain
    Slurm accounts that projects can still name as parent); names slurmctl does not accept as
    project or user names (importing them would make the next sync remove what it cannot represent).
    GrpTRESMins are not imported as allocations: a project without allocations leaves them alone.
    """
    known = set(known)
    accounts, users = _by_account(associations, cluster)
    projects, skipped = [], []
    for name, assoc in sorted(accounts.items()):
        if name == "root" or name in known:
            continue
        members = sorted(users.get(name, ()))
        try:
            check_account_name(name)
            check_account_name(assoc.parent)
            for user in members:
                check_user_name(user)
        except ValueError as exc:
            skipped.append(Skipped(name, str(exc)))
            continue
        if not members:
            skipped.append(Skipped(name, "no users (stays a plain Slurm account; usable as a parent)"))
            continue
        projects.append(
            ResearchProject.build(
                name=name,
                pi=members[0],
                members=dict.fromkeys(members, Role.MEMBER) | {members[0]: Role.OWNER},
                parent_account=assoc.parent,
            )
        )
    return projects, skipped
