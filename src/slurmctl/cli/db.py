"""``slurmctl db``: the control plane's database schema (Alembic migrations shipped in the package).

The database is ``--url`` / ``$SLURMCTL_DATABASE_URL``, else the embedded SQLite file
(``~/.local/share/slurmctl/control.db``). Exit codes: 0 done; 2 a bad URL or unknown revision;
6 the database failed (unreachable, refused the change).
"""

from __future__ import annotations

from typing import Annotated

import typer

db_app = typer.Typer(help="The control plane's database: migrations.", no_args_is_help=True)

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="SLURMCTL_DATABASE_URL",
        help="database URL (default: ~/.local/share/slurmctl SQLite)",
    ),
]


@db_app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head", url: UrlOpt = None
) -> None:
    """Migrate the schema up to REVISION (default: the newest). Idempotent."""
    from slurmctl.controlplane import db

    engine = db.make_engine(url)
    before = db.current(engine)
    db.upgrade(engine, revision)
    print(f"{db.display_url(engine)}: {before or 'empty'} → {db.current(engine)}")


@db_app.command("downgrade")
def downgrade(
    revision: Annotated[str, typer.Argument(help="target revision; 'base' drops every table")],
    url: UrlOpt = None,
) -> None:
    """Migrate the schema down to REVISION ('base': drop the control plane's tables and their data)."""
    from slurmctl.controlplane import db

    engine = db.make_engine(url)
    before = db.current(engine)
    db.downgrade(engine, revision)
    print(f"{db.display_url(engine)}: {before or 'empty'} → {db.current(engine) or 'empty'}")


@db_app.command("current")
def current(url: UrlOpt = None) -> None:
    """Print the database's revision ('empty' when never migrated) and whether it is the newest."""
    from slurmctl.controlplane import db

    engine = db.make_engine(url)
    rev = db.current(engine)
    state = "up to date" if rev == db.head() else f"behind: `slurmctl db upgrade` brings it to {db.head()}"
    print(f"{db.display_url(engine)}: {rev or 'empty'} ({state})")


@db_app.command("history")
def history() -> None:
    """List the revisions shipped with this slurmctl, oldest first."""
    from slurmctl.controlplane import db

    for rev in db.revisions():
        print(rev)
