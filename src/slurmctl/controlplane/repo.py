"""The repository: the one owner of writes to the control plane's tables.

Every method is one transaction. Every mutation writes its audit row (who, from where, when, what,
and the sha256 of the entity's canonical JSON before and after) in that same transaction: the change
and its audit entry commit together or not at all. Writes are optimistic: a caller passes the version
it read (the API's If-Match); a stale version raises ConflictError, as does a concurrent writer that
committed between our read and our write (SQLAlchemy's version counter, ``UPDATE ... WHERE version``).

Raises: NotFoundError (no such project/job), ConflictError (stale version, duplicate name or id),
StateError (a job transition the state machine forbids, a project that still has jobs),
StorageError (the database failed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import literal, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from slurmctl.controlplane.domain import (
    TRANSITIONS,
    ApiToken,
    Job,
    ResearchProject,
    ResourceAllocation,
    utcnow,
)
from slurmctl.controlplane.tables import (
    AllocationRow,
    AuditRow,
    IdempotencyRow,
    JobRow,
    MemberRow,
    ProjectRow,
    TokenRow,
)
from slurmctl.errors import ConflictError, NotFoundError, SlurmctlError, StateError, StorageError

T = TypeVar("T", bound=BaseModel)


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who makes a change and from where (``cli@login1``, ``api 10.1.2.3``): recorded in the audit."""

    user: str
    source: str


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """An entity as stored, with the version a later write must name (the ETag)."""

    entity: T
    version: int


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    source: str
    action: str
    entity: str
    entity_key: str
    before_sha256: str | None
    after_sha256: str | None


AUDIT_FIELDS = tuple(AuditEntry.__dataclass_fields__)


def _stale(key: str, expected: int, actual: int) -> ConflictError:
    what = key.split("/", 1)[0]
    return ConflictError(key, f"version {expected} expected, the {what} is at {actual}")


def digest(entity: BaseModel | None) -> str | None:
    """sha256 of the entity's canonical JSON (sorted keys, no spaces), or None. Pure."""
    if entity is None:
        return None
    text = json.dumps(entity.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _project(row: ProjectRow) -> ResearchProject:
    return ResearchProject.build(
        name=row.name,
        title=row.title,
        pi=row.pi,
        members={m.user: m.role for m in row.members},
        slurm_account=row.slurm_account,
        parent_account=row.parent_account,
        allocations=[
            ResourceAllocation.build(
                cluster=a.cluster,
                partition=a.partition,
                cpu_hours=a.cpu_hours,
                gpu_hours=a.gpu_hours,
                mem_gb_hours=a.mem_gb_hours,
                period_start=a.period_start,
                period_end=a.period_end,
            )
            for a in row.allocations
        ],
    )


def _job(row: JobRow) -> Job:
    return Job.build(
        id=row.id,
        kind=row.kind,
        submitted_by=row.submitted_by,
        project=row.project,
        cluster=row.cluster,
        backend=row.backend,
        state=row.state,
        slurm_job_ids=tuple(i for i in row.slurm_job_ids.split(",") if i),
        idempotency_key=row.idempotency_key,
        submit_token=row.submit_token,
        script=row.script,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


def _fill_project(row: ProjectRow, p: ResearchProject) -> None:
    row.title, row.pi, row.parent_account = p.title, p.pi, p.parent_account
    # Members by diff: deleting and re-inserting the same (project, user) key in one flush collides.
    by_user = {m.user: m for m in row.members}
    for user in set(by_user) - set(p.members):
        row.members.remove(by_user[user])
    for user, role in p.members.items():
        if user in by_user:
            by_user[user].role = role.value
        else:
            row.members.append(MemberRow(project=p.name, user=user, role=role.value))
    row.allocations = [AllocationRow(project=p.name, **a.model_dump()) for a in p.allocations]


def _fill_job(row: JobRow, job: Job) -> None:
    for name in (
        "kind",
        "submitted_by",
        "project",
        "cluster",
        "backend",
        "state",
        "idempotency_key",
        "submit_token",
        "script",
    ):
        setattr(row, name, getattr(job, name))
    row.slurm_job_ids = ",".join(job.slurm_job_ids)
    row.created_at, row.submitted_at = job.created_at, job.submitted_at
    row.started_at, row.ended_at = job.started_at, job.ended_at


class Repository:
    """Reads and writes of projects, jobs and the audit log on one SQLAlchemy Engine."""

    def __init__(self, engine: Any, *, audit_jsonl: str | os.PathLike[str] | None = None) -> None:
        self.engine = engine
        self.audit_jsonl = Path(audit_jsonl) if audit_jsonl is not None else None

    @contextmanager
    def _tx(self, key: str = "") -> Iterator[Session]:
        written: list[AuditRow] = []
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                session.info["audit"] = written
                yield session
        except SlurmctlError:
            raise
        except StaleDataError as exc:
            raise ConflictError(key, "changed by someone else meanwhile; read it again") from exc
        except IntegrityError as exc:
            raise ConflictError(key, f"refused by the database: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"control plane database: {exc.__class__.__name__}: {exc}") from exc
        if written and self.audit_jsonl is not None:
            try:
                _append_jsonl(self.audit_jsonl, [_entry(r) for r in written])
            except StorageError as exc:  # committed: the table holds the audit rows; the copy lags
                log.warning("audit copy %s not appended (the table has the rows): %s", self.audit_jsonl, exc)

    def _audit(
        self,
        s: Session,
        actor: Actor,
        action: str,
        key: str,
        before: BaseModel | None,
        after: BaseModel | None,
    ) -> None:
        entity = key.split("/", 1)[0]
        row = AuditRow(
            at=utcnow(),
            actor=actor.user,
            source=actor.source,
            action=action,
            entity=entity,
            entity_key=key,
            before_sha256=digest(before),
            after_sha256=digest(after),
        )
        s.add(row)
        s.info["audit"].append(row)

    # --- projects -------------------------------------------------------------------------------

    def create_project(self, project: ResearchProject, actor: Actor) -> Versioned[ResearchProject]:
        """Store a new project (version 1). Raises ConflictError if the name or account is taken."""
        key = f"project/{project.name}"
        with self._tx(key) as s:
            if s.get(ProjectRow, project.name) is not None:
                raise ConflictError(key, "a project of that name exists")
            now = utcnow()
            row = ProjectRow(
                name=project.name, slurm_account=project.slurm_account, created_at=now, updated_at=now
            )
            _fill_project(row, project)
            s.add(row)
            s.flush()
            self._audit(s, actor, "project.create", key, None, project)
            return Versioned(project, row.version)

    def get_project(self, name: str) -> Versioned[ResearchProject]:
        """The project and its version. Raises NotFoundError."""
        with self._tx() as s:
            row = s.get(ProjectRow, name)
            if row is None:
                raise NotFoundError(f"no project {name!r}", hint="`slurmctl project list` lists them")
            return Versioned(_project(row), row.version)

    def list_projects(self) -> list[Versioned[ResearchProject]]:
        """Every project, by name."""
        with self._tx() as s:
            rows = s.scalars(select(ProjectRow).order_by(ProjectRow.name)).all()
            return [Versioned(_project(r), r.version) for r in rows]

    def save_project(
        self, project: ResearchProject, expected_version: int, actor: Actor, action: str = "project.update"
    ) -> Versioned[ResearchProject]:
        """Replace the stored project (members and allocations included) if it is still at
        ``expected_version``; return it with its new version. The name and Slurm account are
        immutable (Slurm cannot rename an account). Raises NotFoundError, ConflictError, ConfigError."""
        key = f"project/{project.name}"
        with self._tx(key) as s:
            row = s.get(ProjectRow, project.name)
            if row is None:
                raise NotFoundError(f"no project {project.name!r}")
            if row.version != expected_version:
                raise ConflictError(
                    key, f"version {expected_version} expected, the project is at {row.version}"
                )
            before = _project(row)
            if project.slurm_account != before.slurm_account:
                raise ConflictError(key, "the Slurm account of a project cannot change")
            _fill_project(row, project)
            row.updated_at = utcnow()  # always an UPDATE of the row: the version moves with its members
            s.flush()
            self._audit(s, actor, action, key, before, project)
            return Versioned(project, row.version)

    def delete_project(self, name: str, expected_version: int, actor: Actor) -> None:
        """Delete a project without jobs. Raises NotFoundError, ConflictError, StateError (has jobs)."""
        key = f"project/{name}"
        with self._tx(key) as s:
            row = s.get(ProjectRow, name)
            if row is None:
                raise NotFoundError(f"no project {name!r}")
            if row.version != expected_version:
                raise ConflictError(
                    key, f"version {expected_version} expected, the project is at {row.version}"
                )
            if s.scalar(select(JobRow.id).where(JobRow.project == name).limit(1)) is not None:
                raise StateError(f"project {name} has jobs: it cannot be deleted")
            before = _project(row)
            s.delete(row)
            s.flush()
            self._audit(s, actor, "project.delete", key, before, None)

    # --- jobs -----------------------------------------------------------------------------------

    def create_job(self, job: Job, actor: Actor) -> tuple[Versioned[Job], bool]:
        """Record a new job; return it and True. If the submitter already recorded a job with the
        same idempotency key, return that job and False (nothing written): retried POSTs are safe.
        Raises NotFoundError (unknown project), ConflictError (job id taken)."""
        key = f"job/{job.id}"
        try:
            with self._tx(key) as s:
                existing = self._by_idempotency_key(s, job)
                if existing is not None:
                    return existing, False
                # A bare SELECT of the key: s.get() would also load the project's members and allocations.
                if s.scalar(select(ProjectRow.name).where(ProjectRow.name == job.project)) is None:
                    raise NotFoundError(f"no project {job.project!r}")
                if s.get(JobRow, job.id) is not None:
                    raise ConflictError(key, "a job with this id exists")
                row = JobRow(id=job.id)
                _fill_job(row, job)
                s.add(row)
                s.flush()
                self._audit(s, actor, "job.create", key, None, job)
                return Versioned(job, row.version), True
        except ConflictError:
            # Two requests with the same key raced: the loser finds the winner's job.
            with self._tx(key) as s:
                existing = self._by_idempotency_key(s, job)
            if existing is None:
                raise
            return existing, False

    @staticmethod
    def _by_idempotency_key(s: Session, job: Job) -> Versioned[Job] | None:
        if job.idempotency_key is None:
            return None
        row = s.scalar(
            select(JobRow).where(
                JobRow.submitted_by == job.submitted_by, JobRow.idempotency_key == job.idempotency_key
            )
        )
        return None if row is None else Versioned(_job(row), row.version)

    def get_job(self, job_id: str) -> Versioned[Job]:
        """The job and its version. Raises NotFoundError."""
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"no job {job_id!r} in the control plane")
            return Versioned(_job(row), row.version)

    def list_jobs(
        self,
        *,
        project: str | None = None,
        cluster: str | None = None,
        states: Sequence[str] = (),
        created_before: datetime | None = None,
        limit: int = 100,
        after: str = "",
    ) -> list[Versioned[Job]]:
        """Jobs by id, filtered by project, cluster, states and creation time; ``after`` (an id)
        pages (keyset pagination)."""
        q = select(JobRow).where(JobRow.id > after).order_by(JobRow.id).limit(limit)
        if project is not None:
            q = q.where(JobRow.project == project)
        if cluster is not None:
            q = q.where(JobRow.cluster == cluster)
        if created_before is not None:
            q = q.where(JobRow.created_at <= created_before)
        if states:
            q = q.where(JobRow.state.in_(list(states)))
        with self._tx() as s:
            return [Versioned(_job(r), r.version) for r in s.scalars(q).all()]

    def save_job(self, job: Job, expected_version: int, actor: Actor) -> Versioned[Job]:
        """Store a job's new state if it is still at ``expected_version``. The change must be one the
        state machine allows (or no state change). Raises NotFoundError, ConflictError, StateError."""
        key = f"job/{job.id}"
        with self._tx(key) as s:
            row = s.get(JobRow, job.id)
            if row is None:
                raise NotFoundError(f"no job {job.id!r} in the control plane")
            if row.version != expected_version:
                raise _stale(key, expected_version, row.version)
            before = _job(row)
            if job.state != before.state and job.state not in TRANSITIONS[before.state]:
                raise StateError(f"job {job.id}: cannot go from {before.state} to {job.state}")
            if (job.project, job.submitted_by, job.kind) != (
                before.project,
                before.submitted_by,
                before.kind,
            ):
                raise ConflictError(key, "a job's project, submitter and kind cannot change")
            _fill_job(row, job)
            s.flush()
            self._audit(s, actor, f"job.{job.state.value}", key, before, job)
            return Versioned(job, row.version)

    # --- API tokens -----------------------------------------------------------------------------

    @staticmethod
    def _token(row: TokenRow) -> Versioned[ApiToken]:
        fields = {c: getattr(row, c) for c in ApiToken.model_fields}
        return Versioned(ApiToken.build(**fields), 1)

    def create_token(self, token: ApiToken, actor: Actor) -> Versioned[ApiToken]:
        """Store a new API token (its secret's hash). Raises ConflictError if the id is taken."""
        key = f"token/{token.id}"
        with self._tx(key) as s:
            if s.get(TokenRow, token.id) is not None:
                raise ConflictError(key, "a token with this id exists")
            s.add(TokenRow(**token.model_dump()))
            s.flush()
            self._audit(s, actor, "token.create", key, None, token)
            return Versioned(token, 1)

    def get_token(self, token_id: str) -> Versioned[ApiToken]:
        """The token. Raises NotFoundError."""
        with self._tx() as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no token {token_id!r}", hint="`slurmctl token list` lists them")
            return self._token(row)

    def list_tokens(self, *, user: str | None = None) -> list[Versioned[ApiToken]]:
        """Tokens (revoked and expired included), oldest first, optionally of one user."""
        q = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id)
        if user is not None:
            q = q.where(TokenRow.user == user)
        with self._tx() as s:
            return [self._token(r) for r in s.scalars(q).all()]

    def revoke_token(self, token_id: str, actor: Actor) -> Versioned[ApiToken]:
        """Revoke the token now (a revoked token stays revoked: revoking again changes nothing).
        Raises NotFoundError."""
        key = f"token/{token_id}"
        with self._tx(key) as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no token {token_id!r}", hint="`slurmctl token list` lists them")
            before = self._token(row).entity
            if before.revoked_at is not None:
                return Versioned(before, 1)
            row.revoked_at = max(utcnow(), before.created_at)
            after = self._token(row).entity
            s.flush()
            self._audit(s, actor, "token.revoke", key, before, after)
            return Versioned(after, 1)

    # --- idempotency keys of the API -------------------------------------------------------------

    def recalled(self, user: str, key: str) -> tuple[str, int, str] | None:
        """The (request sha256, status, response JSON) remembered for ``user``'s ``key``, or None."""
        with self._tx() as s:
            row = s.get(IdempotencyRow, (user, key))
            return None if row is None else (row.request_sha256, row.status, row.response)

    def remember(self, user: str, key: str, request_sha256: str, status: int, response: str) -> None:
        """Remember the answer to ``user``'s request with ``key`` (not audited: the change it answers
        is). Raises ConflictError if the key is already remembered (a concurrent retry won)."""
        with self._tx(f"idempotency/{key}") as s:
            s.add(
                IdempotencyRow(
                    user=user,
                    key=key,
                    request_sha256=request_sha256,
                    status=status,
                    response=response,
                    created_at=utcnow(),
                )
            )

    # --- audit ----------------------------------------------------------------------------------

    def audit(
        self, *, entity_key: str | None = None, project: str | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        """Audit entries, oldest first, optionally of one entity (``project/lab``), of one project
        (the project's entries and its jobs'), or since a time."""
        q = select(AuditRow).order_by(AuditRow.id)
        if entity_key is not None:
            q = q.where(AuditRow.entity_key == entity_key)
        if project is not None:
            jobs = select(literal("job/") + JobRow.id).where(JobRow.project == project)
            q = q.where(or_(AuditRow.entity_key == f"project/{project}", AuditRow.entity_key.in_(jobs)))
        if since is not None:
            q = q.where(AuditRow.at >= since)
        with self._tx() as s:
            return [_entry(r) for r in s.scalars(q).all()]


def _entry(r: AuditRow) -> AuditEntry:
    return AuditEntry(
        r.id, r.at, r.actor, r.source, r.action, r.entity, r.entity_key, r.before_sha256, r.after_sha256
    )


def audit_json(e: AuditEntry) -> dict[str, Any]:
    """An audit entry as the JSON object of the JSON-lines copy and ``slurmctl audit --json``."""
    return {**{f: getattr(e, f) for f in AUDIT_FIELDS}, "at": e.at.isoformat()}


def _append_jsonl(path: Path, entries: list[AuditEntry]) -> None:
    """Append one JSON line per entry to ``path`` (created 0600), under an exclusive lock so that
    processes sharing the file never interleave lines, then fsync. The file is opened for every
    append, so renaming it away (log rotation) makes the next append start a new one. Raises
    StorageError (the change itself is committed)."""
    data = "".join(json.dumps(audit_json(e), separators=(",", ":")) + "\n" for e in entries).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                if n <= 0:
                    raise OSError(f"short write ({n} bytes)")
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(
            f"audit JSON-lines copy {path}: {exc} (the change and its audit row are committed)"
        ) from exc


def open_repository(url: str | None = None) -> Repository:
    """A Repository on ``url`` (see :func:`slurmctl.controlplane.db.database_url`) whose schema is at
    the newest revision. The embedded SQLite database is created and migrated on first use; any
    other database must be migrated with ``slurmctl db upgrade`` (a shared server is upgraded on
    purpose, not as a side effect of some command). Raises StorageError, ConfigError."""
    from slurmctl.controlplane import db

    engine = db.make_engine(url)
    rev = db.current(engine)
    if rev is None and engine.dialect.name == "sqlite":
        db.upgrade(engine)
    elif rev != db.head():
        raise StorageError(
            f"database {db.display_url(engine)} is at revision {rev or 'empty'}; slurmctl needs {db.head()}",
            hint="run `slurmctl db upgrade`",
        )
    return Repository(engine, audit_jsonl=audit_jsonl_path(engine))


def audit_jsonl_path(engine: Any) -> Path | None:
    """Where the audit log's JSON-lines copy goes: ``$SLURMCTL_AUDIT_JSONL`` (empty: no copy), else
    ``audit.jsonl`` next to an SQLite database file; a PostgreSQL database has no copy unless the
    variable names one (each server writes its own file)."""
    configured = os.environ.get("SLURMCTL_AUDIT_JSONL")
    if configured is not None:
        return Path(configured) if configured else None
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return None
    return Path(database).parent / "audit.jsonl"
