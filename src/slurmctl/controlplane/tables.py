"""The control plane's tables (SQLAlchemy 2 typed ORM). Written only by :mod:`.repo`.

The schema itself is created and changed by the Alembic revisions in ``migrations/versions``, never
by ``metadata.create_all``; ``tests/unit/controlplane/test_migrations.py`` checks that the two agree.

``version`` columns are SQLAlchemy version counters: every UPDATE says ``WHERE version = <the version
read>`` and bumps it, so a write based on a stale read fails instead of overwriting (the API will
publish the version as the ETag). Members and allocations belong to their project's version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every engine (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the control plane stores UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ProjectRow(Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    pi: Mapped[str] = mapped_column(String(32))
    slurm_account: Mapped[str] = mapped_column(String(64), unique=True)
    parent_account: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    members: Mapped[list[MemberRow]] = relationship(
        cascade="all, delete-orphan", order_by="MemberRow.user", lazy="selectin"
    )
    allocations: Mapped[list[AllocationRow]] = relationship(
        cascade="all, delete-orphan", order_by="AllocationRow.id", lazy="selectin"
    )

    __mapper_args__ = {"version_id_col": version}


class MemberRow(Base):
    __tablename__ = "project_members"

    project: Mapped[str] = mapped_column(ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True)
    user: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (CheckConstraint("role IN ('owner', 'member', 'viewer')", name="ck_member_role"),)


class AllocationRow(Base):
    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name", ondelete="CASCADE"), index=True)
    cluster: Mapped[str] = mapped_column(String(64))
    partition: Mapped[str | None] = mapped_column(String(64))
    cpu_hours: Mapped[float] = mapped_column(Float)
    gpu_hours: Mapped[float] = mapped_column(Float)
    mem_gb_hours: Mapped[float] = mapped_column(Float)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("period_end > period_start", name="ck_allocation_period"),
        CheckConstraint(
            "cpu_hours >= 0 AND gpu_hours >= 0 AND mem_gb_hours >= 0", name="ck_allocation_nonnegative"
        ),
    )


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    submitted_by: Mapped[str] = mapped_column(String(32))
    project: Mapped[str] = mapped_column(ForeignKey("projects.name", ondelete="RESTRICT"), index=True)
    cluster: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    slurm_job_ids: Mapped[str] = mapped_column(String, default="")  # comma-separated
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    submit_token: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    script: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("submitted_by", "idempotency_key", name="uq_job_idempotency"),)
    __mapper_args__ = {"version_id_col": version}


class AuditRow(Base):
    """Append-only: a trigger refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_key: Mapped[str] = mapped_column(String(64), index=True)
    before_sha256: Mapped[str | None] = mapped_column(String(64))
    after_sha256: Mapped[str | None] = mapped_column(String(64))


class TokenRow(Base):
    """API tokens: the sha256 of the secret, never the secret."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    user: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(8))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("scope IN ('read', 'write', 'admin')", name="ck_token_scope"),)


class IdempotencyRow(Base):
    """The answer given to a POST with an Idempotency-Key, replayed when the same request comes again."""

    __tablename__ = "idempotency_keys"

    user: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
