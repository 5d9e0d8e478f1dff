"""Fixtures for the control plane's database tests: every test that takes ``db_engine`` (an empty
database) or ``repo`` (a migrated one) runs twice, on SQLite and on a real PostgreSQL.

PostgreSQL is the server of ``scripts/dev-postgres up`` (scripts/test starts it and exports
``SLURMCTL_TEST_POSTGRES_URL``); each test gets a database of its own, dropped afterwards. When the
server does not answer, the PostgreSQL half FAILS under CI=true and skips otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POSTGRES_URL_ENV = "SLURMCTL_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Any]:
    """An autocommit engine on the dev PostgreSQL's maintenance database (fail under CI, else skip)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    url = os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        message = f"dev PostgreSQL unavailable at {url}: {exc.orig} (run: scripts/dev-postgres up)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty database (no schema) and its Engine, made by slurmctl's own make_engine."""
    from sqlalchemy import text

    from slurmctl.controlplane.db import make_engine

    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
        yield engine
        engine.dispose()
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"sct_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(admin.url.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def repo(db_engine: Any) -> Any:
    """A Repository on a database migrated to the newest revision."""
    from slurmctl.controlplane.db import upgrade
    from slurmctl.controlplane.repo import Repository

    upgrade(db_engine)
    return Repository(db_engine)
