"""Alembic's environment, run programmatically by :mod:`slurmctl.controlplane.db` (there is no
alembic.ini): the caller passes an open connection in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from slurmctl.controlplane.tables import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run the control plane's migrations with `slurmctl db upgrade`")
# render_as_batch: SQLite cannot ALTER most things; Alembic copies the table instead.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
