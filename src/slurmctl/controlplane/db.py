"""Where the control plane's database is, how to connect, and its migrations.

The URL comes from ``$SLURMCTL_DATABASE_URL`` (e.g. ``postgresql+psycopg://user@host:5432/slurmctl``);
without it, an SQLite file in the user's data directory (``$XDG_DATA_HOME/slurmctl/control.db``,
default ``~/.local/share/slurmctl/control.db``): one person on a laptop or a login node needs no
database server. The schema is only ever changed by the Alembic revisions shipped in
``migrations/versions`` (``slurmctl db upgrade``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from slurmctl.errors import ConfigError, StorageError

DATABASE_URL_ENV = "SLURMCTL_DATABASE_URL"


def default_sqlite_path() -> Path:
    """The embedded database's file: ``$XDG_DATA_HOME/slurmctl/control.db``. Pure."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "slurmctl" / "control.db"


def database_url(url: str | None = None) -> str:
    """``url``, else ``$SLURMCTL_DATABASE_URL``, else the embedded SQLite file's URL."""
    url = url or os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{default_sqlite_path()}"


def make_engine(url: str | None = None) -> Any:
    """An SQLAlchemy Engine for ``url`` (see :func:`database_url`). SQLite gets its parent directory,
    foreign keys, WAL, a 30 s busy timeout and ``BEGIN IMMEDIATE`` transactions (writers queue at
    BEGIN, so a stale version is seen as a conflict rather than as "database is locked").
    Raises ConfigError for a malformed or unsupported URL."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    url = database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"{DATABASE_URL_ENV}: not a database URL: {url!r}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{DATABASE_URL_ENV}: unsupported database {parsed.get_backend_name()!r}",
            hint="use postgresql+psycopg://user@host/db or sqlite:///path",
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not psycopg2
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the directory of {parsed.database}: {exc}") from exc
        try:
            engine = create_engine(parsed, connect_args={"timeout": 30})
        except NoSuchModuleError as exc:
            raise ConfigError(f"{DATABASE_URL_ENV}: {exc}") from exc

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.drivername != "postgresql+psycopg":
        raise ConfigError(
            f"{DATABASE_URL_ENV}: PostgreSQL is reached through psycopg 3 (found {parsed.drivername!r})",
            hint="write the URL as postgresql+psycopg://user@host:port/database",
        )
    try:
        import psycopg  # noqa: F401  # SQLAlchemy would import it too; here a missing driver is a clear error
    except ImportError as exc:
        raise ConfigError("PostgreSQL needs psycopg 3", hint="pip install 'slurmctl[db]'") from exc
    return create_engine(parsed, pool_pre_ping=True)


def display_url(engine: Any) -> str:
    """The engine's URL without its password. Pure."""
    return engine.url.render_as_string(hide_password=True)


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("slurmctl.controlplane") / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _migrating(engine: Any) -> Iterator[Any]:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.begin() as conn:
            yield _alembic_config(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"database {display_url(engine)}: {exc.__class__.__name__}: {exc}") from exc


def upgrade(engine: Any, revision: str = "head") -> None:
    """Migrate the schema up to ``revision`` (default: the newest). Idempotent. Raises StorageError."""
    from alembic import command
    from alembic.util import CommandError

    try:
        with _migrating(engine) as cfg:
            command.upgrade(cfg, revision)
    except CommandError as exc:
        raise ConfigError(f"db upgrade: {exc}", hint="`slurmctl db history` lists the revisions") from exc


def downgrade(engine: Any, revision: str) -> None:
    """Migrate the schema down to ``revision`` (``base``: drop everything). Raises StorageError."""
    from alembic import command
    from alembic.util import CommandError

    try:
        with _migrating(engine) as cfg:
            command.downgrade(cfg, revision)
    except CommandError as exc:
        raise ConfigError(f"db downgrade: {exc}", hint="`slurmctl db history` lists the revisions") from exc


def current(engine: Any) -> str | None:
    """The database's revision, or None for an empty (never migrated) database."""
    from alembic.runtime.migration import MigrationContext

    with _migrating(engine) as cfg:
        return MigrationContext.configure(cfg.attributes["connection"]).get_current_revision()


def revisions() -> list[str]:
    """Every revision shipped, oldest first. Pure (reads the package)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def head() -> str:
    return revisions()[-1]
