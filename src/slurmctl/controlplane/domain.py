"""The control plane's domain: research projects, their members and allocations, tracked jobs.

Pure Python (pydantic), no database: every invariant lives here, so the repository, the CLI and the
API cannot disagree about what a valid project or a legal job transition is. Entities are frozen;
changes return a new, re-validated entity (:meth:`ResearchProject.with_member`, :meth:`Job.advance`).
Invalid input raises :class:`~slurmctl.errors.ConfigError` (exit 2) listing every bad field; an
illegal job transition raises :class:`~slurmctl.errors.StateError` (exit 5).

Job::

    accepted ──▶ submitted ──▶ running ──▶ completed
       │            │  ▲         │
       │            │  └─────────┤          running ──▶ submitted: Slurm requeued it (preemption,
       │            │            │                      node failure, ``scontrol requeue``)
       └────────────┴────────────┴──▶ failed, cancelled   (terminal)

``accepted``: recorded, with its idempotency key, before anything reaches Slurm (so a crash between
accepting and sbatch is recoverable); ``submitted``: sbatch answered with Slurm job ids (the job is
PENDING in Slurm). A job may skip ``running``: one poll can see it pending and the next finished.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slurmctl.errors import ConfigError, StateError

# Slurm itself accepts almost anything as an account name (checked with sacctmgr 22.05): it lowercases
# silently, stores at most 255 bytes and truncates the rest silently, turns ' into `, and splits on
# commas into several accounts. A project name must survive that round trip unchanged and be easy to
# type in `sbatch -A`, so slurmctl accepts a strict subset: lowercase letter first, then lowercase
# letters, digits, '_' and '-', at most 64 characters (slurmctl's limit, well inside Slurm's 255).
ACCOUNT_NAME_MAX = 64
ACCOUNT_NAME = re.compile(r"[a-z][a-z0-9_-]*")
# POSIX-portable user names as useradd accepts them by default (Debian's NAME_REGEX), at most 32.
USER_NAME_MAX = 32
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]*\$?")


def check_account_name(value: str) -> str:
    """Return ``value`` if it is a valid project / Slurm account name, else raise ValueError. Pure."""
    if not ACCOUNT_NAME.fullmatch(value) or len(value) > ACCOUNT_NAME_MAX:
        raise ValueError(
            f"must be a Slurm account name: a lowercase letter, then lowercase letters, digits, '_' or '-', "
            f"at most {ACCOUNT_NAME_MAX} characters (found {value!r})"
        )
    return value


def check_user_name(value: str) -> str:
    """Return ``value`` if it is a valid Unix / Slurm user name, else raise ValueError. Pure."""
    if not USER_NAME.fullmatch(value) or len(value) > USER_NAME_MAX:
        raise ValueError(f"must be a Unix user name (lowercase, at most {USER_NAME_MAX}; found {value!r})")
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """Timestamps are timezone-aware UTC: a naive one is ambiguous (raises ValueError). Pure."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("must be timezone-aware (UTC)")
    return value.astimezone(UTC)


class _Entity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @classmethod
    def build(cls, **data: Any) -> Self:
        """Validate ``data`` into an entity; raise ConfigError listing every bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid(cls.__name__, exc) from None

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated again (pydantic's model_copy would skip validation)."""
        return type(self).build(**{**self.model_dump(), **changes})


def invalid(what: str, exc: ValidationError) -> ConfigError:
    """The ConfigError for a pydantic ValidationError: one line per bad field. Pure."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "<root>"
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return ConfigError(f"invalid {what}:\n  " + "\n  ".join(lines))


class Role(StrEnum):
    """What a person may do. ``admin`` is site-wide (granted by the authorization layer, never by a
    project); a project's members are owners, members or viewers."""

    ADMIN = "admin"
    """Everything, on every project."""
    OWNER = "owner"
    """Manage the project: members, allocations, settings; submit and cancel any of its jobs."""
    MEMBER = "member"
    """Submit jobs under the project's Slurm account; cancel their own jobs."""
    VIEWER = "viewer"
    """Read the project and its jobs; no Slurm association (cannot submit)."""

    @property
    def submits(self) -> bool:
        """Whether this role needs a Slurm association under the project's account."""
        return self in (Role.OWNER, Role.MEMBER)


MAX_HOURS = 1e12  # 6e13 minutes: far beyond any real grant, well inside Slurm's 64-bit TRES minutes


class ResourceAllocation(_Entity):
    """Compute granted to a project on one cluster (optionally one partition) for a period.

    Units are in the names: core-hours, GPU-hours, GB-hours of memory. ``partition=None`` means the
    whole cluster; only whole-cluster allocations become the account's GrpTRESMins (Slurm sets
    GrpTRESMins on the account association, which has no partition).
    """

    cluster: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    partition: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # Bounded so that GrpTRESMins (minutes, a 64-bit integer in Slurm) can hold them.
    cpu_hours: float = Field(default=0, ge=0, le=MAX_HOURS, allow_inf_nan=False)
    gpu_hours: float = Field(default=0, ge=0, le=MAX_HOURS, allow_inf_nan=False)
    mem_gb_hours: float = Field(default=0, ge=0, le=MAX_HOURS, allow_inf_nan=False)
    period_start: datetime
    period_end: datetime

    _aware_times = field_validator("period_start", "period_end")(_aware)

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.period_end <= self.period_start:
            raise ValueError(
                f"period_end ({self.period_end}) must be after period_start ({self.period_start})"
            )
        if not (self.cpu_hours or self.gpu_hours or self.mem_gb_hours):
            raise ValueError("an allocation grants something: cpu_hours, gpu_hours or mem_gb_hours > 0")
        return self

    def active(self, at: datetime) -> bool:
        """Whether ``at`` falls in [period_start, period_end). Pure."""
        return self.period_start <= at < self.period_end

    def tres_minutes(self) -> dict[str, int]:
        """This allocation as Slurm TRES-minutes (``cpu``, ``gres/gpu``, ``mem`` in MB-minutes),
        rounded down, zero entries left out. Pure."""
        out = {
            "cpu": int(self.cpu_hours * 60),
            "gres/gpu": int(self.gpu_hours * 60),
            "mem": int(self.mem_gb_hours * 1024 * 60),
        }
        return {k: v for k, v in out.items() if v > 0}


class ResearchProject(_Entity):
    """A research project: a Slurm account with a PI, members with roles, and allocations.

    Invariants: the name is a valid account name (it is the Slurm account unless ``slurm_account``
    says otherwise); the PI is a member with role owner and cannot be removed or demoted; no member
    holds the site-wide ``admin`` role; a project is not its own parent.
    """

    name: str
    title: str = Field(default="", max_length=200)
    pi: str
    members: Mapping[str, Role] = Field(default_factory=dict)
    slurm_account: str = ""
    parent_account: str = "root"
    allocations: tuple[ResourceAllocation, ...] = ()

    _name = field_validator("name", "parent_account")(check_account_name)
    _pi = field_validator("pi")(check_user_name)

    @field_validator("slurm_account")
    @classmethod
    def _account(cls, value: str) -> str:
        return value and check_account_name(value)

    @field_validator("members")
    @classmethod
    def _members(cls, value: Mapping[str, Role]) -> dict[str, Role]:
        for user, role in value.items():
            check_user_name(user)
            if role == Role.ADMIN:
                raise ValueError(f"{user}: admin is a site-wide role, not a project role")
        return dict(sorted(value.items()))

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("slurm_account"):
                data["slurm_account"] = data.get("name", "")
            members = dict(data.get("members") or {})
            pi = data.get("pi")
            if isinstance(pi, str) and pi not in members:
                members[pi] = Role.OWNER
            data["members"] = members
        return data

    @model_validator(mode="after")
    def _invariants(self) -> Self:
        if self.members.get(self.pi) != Role.OWNER:
            raise ValueError(f"the PI {self.pi!r} must be an owner of the project")
        if self.parent_account == self.slurm_account:
            raise ValueError(f"the parent account cannot be the project's own account ({self.slurm_account})")
        return self

    def with_member(self, user: str, role: Role | str) -> ResearchProject:
        """A copy with ``user`` holding ``role`` (added or changed). Raises ConfigError."""
        return self.replace(members={**self.members, user: Role(role)})

    def without_member(self, user: str) -> ResearchProject:
        """A copy without ``user``. Raises ConfigError for the PI, StateError for a non-member."""
        if user == self.pi:
            raise ConfigError(f"{user} is the PI of {self.name}: make someone else PI first")
        if user not in self.members:
            raise StateError(f"{user} is not a member of {self.name}")
        return self.replace(members={u: r for u, r in self.members.items() if u != user})

    def submitters(self) -> list[str]:
        """Members that need a Slurm association (owners and members), sorted. Pure."""
        return [u for u, r in self.members.items() if r.submits]

    def grp_tres_mins(self, cluster: str, at: datetime) -> dict[str, int] | None:
        """The account's GrpTRESMins on ``cluster``: the sum of the whole-cluster allocations active at
        ``at``; ``{}`` when the project has allocations there but none active (the limit is cleared);
        ``None`` when it has none on that cluster at all (slurmctl leaves the limit alone). Pure."""
        mine = [a for a in self.allocations if a.cluster == cluster and a.partition is None]
        if not mine:
            return None
        total: dict[str, int] = {}
        for alloc in mine:
            if alloc.active(at):
                for tres, minutes in alloc.tres_minutes().items():
                    total[tres] = total.get(tres, 0) + minutes
        return total


class JobKind(StrEnum):
    MAP = "map"
    """A slurmctl map job (a job file; many Slurm array tasks)."""
    SBATCH = "sbatch"
    """A plain batch script."""


class JobState(StrEnum):
    ACCEPTED = "accepted"
    """Recorded with its idempotency key; not yet handed to Slurm."""
    SUBMITTED = "submitted"
    """sbatch answered; the Slurm job ids are known (PENDING in Slurm)."""
    RUNNING = "running"
    """Slurm runs it (for a map job: at least one array task runs)."""
    COMPLETED = "completed"
    """Ended with exit code 0."""
    FAILED = "failed"
    """Refused by sbatch, or ended badly (non-zero exit, timeout, out of memory, node failure)."""
    CANCELLED = "cancelled"
    """Cancelled by a user or an administrator."""

    @property
    def terminal(self) -> bool:
        return not TRANSITIONS[self]


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.ACCEPTED: frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUBMITTED: frozenset(
        {JobState.RUNNING, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUBMITTED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class Job(_Entity):
    """A job the control plane tracks: who submitted what, for which project, where, and its state.

    Invariants: once submitted (and in every later state except a failure before sbatch) the Slurm
    job ids are known; timestamps are UTC and ordered (created ≤ submitted ≤ started ≤ ended);
    ``ended_at`` is set exactly in terminal states. State changes only through :meth:`advance`.
    """

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: JobKind
    submitted_by: str
    project: str
    cluster: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    backend: str = Field(default="slurm", pattern=r"^(slurm|local)$")
    state: JobState = JobState.ACCEPTED
    slurm_job_ids: tuple[str, ...] = ()
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    submit_token: str | None = Field(default=None, pattern=r"^[a-z0-9-]{16,64}$")
    """Unique per submission; the sbatch carries it as job name and comment, so that recovery can
    tell whether a job accepted before a crash reached Slurm."""
    script: str | None = Field(default=None, min_length=1, max_length=1_000_000)
    """The batch script of an sbatch job (what recovery submits when Slurm never got it)."""
    created_at: datetime = Field(default_factory=utcnow)
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    _user = field_validator("submitted_by")(check_user_name)
    _project = field_validator("project")(check_account_name)
    _times = field_validator("created_at", "submitted_at", "started_at", "ended_at")(_aware)

    @field_validator("slurm_job_ids")
    @classmethod
    def _ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for job_id in value:
            if not re.fullmatch(r"\d+", job_id):
                raise ValueError(f"a Slurm job id is a number (found {job_id!r})")
        return value

    @model_validator(mode="after")
    def _invariants(self) -> Self:
        needs_ids = self.state in (JobState.SUBMITTED, JobState.RUNNING, JobState.COMPLETED)
        if needs_ids and not self.slurm_job_ids:
            raise ValueError(f"a {self.state} job has Slurm job ids")
        if needs_ids and self.submitted_at is None:
            raise ValueError(f"a {self.state} job has submitted_at")
        if self.state.terminal != (self.ended_at is not None):
            raise ValueError("ended_at is set exactly when the job is in a terminal state")
        times = [t for t in (self.created_at, self.submitted_at, self.started_at, self.ended_at) if t]
        if times != sorted(times):
            raise ValueError("timestamps must be ordered: created ≤ submitted ≤ started ≤ ended")
        return self

    def advance(
        self, state: JobState | str, *, at: datetime | None = None, slurm_job_ids: tuple[str, ...] = ()
    ) -> Job:
        """The job in ``state`` at ``at`` (default now), with the timestamps that state implies.
        Raises StateError for a transition the state machine forbids, ConfigError for bad ids/times."""
        new = JobState(state)
        if new not in TRANSITIONS[self.state]:
            allowed = ", ".join(sorted(TRANSITIONS[self.state])) or "none: it is terminal"
            raise StateError(f"job {self.id}: cannot go from {self.state} to {new} (allowed: {allowed})")
        at = at or utcnow()
        changes: dict[str, Any] = {"state": new}
        if slurm_job_ids:
            changes["slurm_job_ids"] = tuple(slurm_job_ids)
        if new == JobState.SUBMITTED and self.submitted_at is None:
            changes["submitted_at"] = at
        if new == JobState.RUNNING and self.started_at is None:
            changes["started_at"] = at
        if new.terminal:
            changes["ended_at"] = at
        return self.replace(**changes)


class WorkflowRunState(StrEnum):
    """Placeholder states of a workflow run (the workflow engine will own the transitions)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowRun(_Entity):
    """A run of a workflow for a project: its id, the workflow's name and the spec's digest, and the
    Job ids it created. Only what is certain now; the workflow engine extends it."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    project: str
    workflow: str = Field(min_length=1, max_length=128)
    spec_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    state: WorkflowRunState = WorkflowRunState.PENDING
    job_ids: tuple[str, ...] = ()
    created_at: datetime = Field(default_factory=utcnow)

    _project = field_validator("project")(check_account_name)
    _created = field_validator("created_at")(_aware)


class ApiToken(_Entity):
    """An API token as stored: who it acts for, its scope (``read`` < ``write`` < ``admin``), its
    lifetime, and the sha256 of its secret (the secret itself is shown once and never stored)."""

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    user: str
    name: str = Field(default="", max_length=100)
    scope: str = Field(pattern=r"^(read|write|admin)$")
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None

    _user = field_validator("user")(check_user_name)
    _times = field_validator("created_at", "expires_at", "revoked_at")(_aware)

    @model_validator(mode="after")
    def _invariants(self) -> Self:
        if self.expires_at <= self.created_at:
            raise ValueError("a token expires after it is created")
        if self.revoked_at is not None and self.revoked_at < self.created_at:
            raise ValueError("a token is revoked after it is created")
        return self
