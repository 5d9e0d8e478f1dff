"""Projects, members, allocations, jobs and the append-only audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)

# SQLite only auto-increments INTEGER PRIMARY KEY (a BIGINT key would stay NULL).
BIG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
REFUSE = "audit_log is append-only"


def _project_fk(ondelete: str) -> sa.ForeignKey:
    return sa.ForeignKey("projects.name", ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("pi", sa.String(32), nullable=False),
        sa.Column("slurm_account", sa.String(64), nullable=False, unique=True),
        sa.Column("parent_account", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
    )
    op.create_table(
        "project_members",
        sa.Column("project", sa.String(64), _project_fk("CASCADE"), primary_key=True),
        sa.Column("user", sa.String(32), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.CheckConstraint("role IN ('owner', 'member', 'viewer')", name="ck_member_role"),
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "project", sa.String(64), sa.ForeignKey("projects.name", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("cluster", sa.String(64), nullable=False),
        sa.Column("partition", sa.String(64), nullable=True),
        sa.Column("cpu_hours", sa.Float, nullable=False),
        sa.Column("gpu_hours", sa.Float, nullable=False),
        sa.Column("mem_gb_hours", sa.Float, nullable=False),
        sa.Column("period_start", UTC_TS, nullable=False),
        sa.Column("period_end", UTC_TS, nullable=False),
        sa.CheckConstraint("period_end > period_start", name="ck_allocation_period"),
        sa.CheckConstraint(
            "cpu_hours >= 0 AND gpu_hours >= 0 AND mem_gb_hours >= 0", name="ck_allocation_nonnegative"
        ),
    )
    op.create_index("ix_allocations_project", "allocations", ["project"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("submitted_by", sa.String(32), nullable=False),
        sa.Column(
            "project", sa.String(64), sa.ForeignKey("projects.name", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("cluster", sa.String(64), nullable=False),
        sa.Column("backend", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("slurm_job_ids", sa.String, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("submitted_at", UTC_TS, nullable=True),
        sa.Column("started_at", UTC_TS, nullable=True),
        sa.Column("ended_at", UTC_TS, nullable=True),
        sa.UniqueConstraint("submitted_by", "idempotency_key", name="uq_job_idempotency"),
    )
    op.create_index("ix_jobs_project", "jobs", ["project"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("at", UTC_TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_key", sa.String(64), nullable=False),
        sa.Column("before_sha256", sa.String(64), nullable=True),
        sa.Column("after_sha256", sa.String(64), nullable=True),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_entity_key", "audit_log", ["entity_key"])
    # Append-only, enforced by the database itself: no code path, ours or anyone's, rewrites history.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{REFUSE}: % refused', TG_OP; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{op_name.lower()} BEFORE {op_name} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSE}: {op_name} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    op.drop_table("audit_log")
    op.drop_table("jobs")
    op.drop_table("allocations")
    op.drop_table("project_members")
    op.drop_table("projects")
