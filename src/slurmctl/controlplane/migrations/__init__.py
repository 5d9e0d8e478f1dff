"""Alembic migrations of the control plane's database (run by ``slurmctl db upgrade``)."""
