"""``slurmctl token``: API tokens of the control plane (for remote and web use of its API).

The caller is the Unix user; ``--user`` (another user's tokens) needs a site admin
(``$SLURMCTL_ADMINS``, default ``root``). The secret is printed once, by ``create``; the database
keeps its sha256. Exit codes: 0 done; 2 bad scope, lifetime or URL; 5 no such token; 6 the database
failed; 14 not allowed.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from slurmctl.cli.db import UrlOpt
from slurmctl.cli.project import JsonOpt, _actor

token_app = typer.Typer(help="API tokens: create (secret shown once), list, revoke.", no_args_is_help=True)

UserOpt = Annotated[str | None, typer.Option("--user", help="another user's tokens (site admins only)")]


def _caller():  # type: ignore[no-untyped-def]
    from slurmctl.controlplane.auth import Principal, Scope, admins_from_env

    actor = _actor()
    return actor, Principal(user=actor.user, admin=actor.user in admins_from_env(), scope=Scope.ADMIN)


@token_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="a label (where the token is used)")] = "",
    scope: Annotated[str, typer.Option("--scope", help="read, write or admin")] = "read",
    days: Annotated[int, typer.Option("--days", help="lifetime in days (1 to 366)")] = 30,
    user: UserOpt = None,
    url: UrlOpt = None,
) -> None:
    """Create a token and print its secret (once: it cannot be shown again)."""
    from slurmctl.controlplane import auth
    from slurmctl.controlplane.repo import open_repository

    actor, principal = _caller()
    owner = user or actor.user
    auth.authorize(principal, "token.create", auth.Resource(owner=owner))
    issued = auth.create_token(
        open_repository(url), user=owner, name=name, scope=auth.Scope.parse(scope), days=days, actor=actor
    )
    t = issued.token
    print(f"token {t.id} for {t.user}, scope {t.scope}, expires {t.expires_at:%Y-%m-%d %H:%M} UTC")
    print(issued.secret)


@token_app.command("list")
def list_(
    user: UserOpt = None,
    every: Annotated[bool, typer.Option("--all", help="every user's tokens (site admins only)")] = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List tokens (never their secrets): id, user, scope, expiry, revocation."""
    from slurmctl.controlplane import auth
    from slurmctl.controlplane.domain import utcnow
    from slurmctl.controlplane.repo import open_repository

    actor, principal = _caller()
    owner = None if every else (user or actor.user)
    auth.authorize(principal, "token.list", auth.Resource(owner=owner))
    tokens = [v.entity for v in open_repository(url).list_tokens(user=owner)]
    if as_json:
        print(json.dumps([t.model_dump(mode="json", exclude={"secret_sha256"}) for t in tokens], indent=2))
        return
    now = utcnow()
    for t in tokens:
        status = "revoked" if t.revoked_at else ("expired" if t.expires_at <= now else "active")
        print(f"{t.id}\t{t.user}\t{t.scope}\t{status}\texpires={t.expires_at:%Y-%m-%d}\t{t.name}")


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id (`token list`)")], url: UrlOpt = None
) -> None:
    """Revoke a token now (your own; any token for site admins)."""
    from slurmctl.controlplane import auth
    from slurmctl.controlplane.repo import open_repository

    actor, principal = _caller()
    repo = open_repository(url)
    token = repo.get_token(token_id).entity
    auth.authorize(principal, "token.revoke", auth.Resource(owner=token.user))
    repo.revoke_token(token_id, actor)
    print(f"revoked token {token_id} of {token.user}")
