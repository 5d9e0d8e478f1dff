"""The Alembic migrations, on SQLite and on a real PostgreSQL: an empty database upgrades, every
earlier revision upgrades to head, head downgrades to base, and the migrated schema is exactly what
the ORM (tables.py) describes."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from slurmctl.controlplane import db
from slurmctl.controlplane.tables import Base
from slurmctl.errors import ConfigError

TABLES = {"projects", "project_members", "allocations", "jobs", "audit_log", "api_tokens", "idempotency_keys"}


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_revisions_form_one_line():
    revs = db.revisions()
    assert revs[0] == "0001" and db.head() == revs[-1] and len(set(revs)) == len(revs)


def test_empty_database_upgrades_to_head_idempotently(db_engine):
    assert db.current(db_engine) is None
    db.upgrade(db_engine)
    assert db.current(db_engine) == db.head()
    assert _tables(db_engine) == TABLES
    db.upgrade(db_engine)  # again: nothing to do
    assert db.current(db_engine) == db.head()


@pytest.mark.parametrize("start", db.revisions())
def test_every_revision_upgrades_to_head(db_engine, start):
    db.upgrade(db_engine, start)
    assert db.current(db_engine) == start
    db.upgrade(db_engine)
    assert db.current(db_engine) == db.head()
    assert _tables(db_engine) == TABLES


def test_downgrade_to_base_and_up_again(db_engine):
    db.upgrade(db_engine)
    db.downgrade(db_engine, "base")
    assert db.current(db_engine) is None
    assert _tables(db_engine) == set()
    if db_engine.dialect.name == "postgresql":
        with db_engine.connect() as conn:
            assert (
                conn.scalar(text("SELECT count(*) FROM pg_proc WHERE proname = 'audit_log_append_only'")) == 0
            )
    db.upgrade(db_engine)
    assert _tables(db_engine) == TABLES


def test_migrated_schema_matches_the_orm(db_engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db.upgrade(db_engine)
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_unknown_revision_is_a_clear_error(db_engine):
    with pytest.raises(ConfigError, match="db upgrade"):
        db.upgrade(db_engine, "9999")


def test_bad_urls_are_config_errors():
    with pytest.raises(ConfigError, match="not a database URL"):
        db.make_engine("::nonsense::")
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        db.make_engine("mysql://x@y/z")
    with pytest.raises(ConfigError, match="psycopg 3"):
        db.make_engine("postgresql+psycopg2://x@y/z")


def test_default_url_is_sqlite_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(db.DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert db.database_url() == f"sqlite:///{tmp_path}/slurmctl/control.db"
    monkeypatch.setenv(db.DATABASE_URL_ENV, "postgresql://u@h/d")
    assert db.database_url() == "postgresql://u@h/d"
    assert db.make_engine().url.drivername == "postgresql+psycopg"
