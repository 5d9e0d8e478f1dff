"""Jobs carry their submission token (unique; the sbatch's job name and comment) and their script.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("submit_token", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("script", sa.Text, nullable=True))
    op.create_index("ix_jobs_submit_token", "jobs", ["submit_token"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_submit_token", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("script")
        batch.drop_column("submit_token")
