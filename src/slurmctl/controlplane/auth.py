"""Authentication and authorization of the control plane (pure policy; no HTTP).

Principals come from an API token (``sct_<id>_<secret>``: the secret is shown once at creation and
stored as its sha256; a token has one scope, ``read`` < ``write`` < ``admin``, an expiry, and can
be revoked) or from a MUNGE credential (``munge -n`` on the client, ``unmunge`` on the server: the
trust Slurm itself uses; a MUNGE principal acts with its user's full rights, scope ``admin``). Site
admins are a configured set of users (:func:`admins_from_env`: ``$SLURMCTL_ADMINS``, default
``root``); project roles (owner, member, viewer) come from the project.

:func:`authorize` is the one check: :data:`ACTIONS` says, for every action, the scope it needs, the
project roles that may do it on any resource of the project, and the roles that may do it only on
their own resource (a member cancels the jobs they submitted; anyone manages their own tokens).
Admins may do everything. Raises ForbiddenError / AuthenticationError; messages never quote a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from slurmctl.controlplane.domain import ApiToken, ResearchProject, utcnow
from slurmctl.controlplane.repo import Actor, Repository
from slurmctl.errors import AuthenticationError, ConfigError, ForbiddenError, NotFoundError

MAX_TOKEN_DAYS = 366
TOKEN_RE = re.compile(r"^sct_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


class Scope(IntEnum):
    """A token's scope; each includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ConfigError(f"unknown scope {text!r} (read, write or admin)") from None


@dataclass(frozen=True)
class Principal:
    """Who calls: a user, whether a site admin, and the most their credential allows."""

    user: str
    admin: bool = False
    scope: Scope = Scope.ADMIN


@dataclass(frozen=True)
class Resource:
    """What an action is about: the project (None for site-wide actions) and the user who owns the
    object (a job's submitter, a token's user), for the actions allowed on one's own objects."""

    project: ResearchProject | None = None
    owner: str | None = None


@dataclass(frozen=True)
class Rule:
    scope: Scope
    roles: frozenset[str] = frozenset()
    """project roles allowed on any resource of the project ("any": every authenticated user)"""
    own: frozenset[str] = frozenset()
    """roles allowed only on their own resource ("any": every authenticated user)"""


def _r(scope: Scope, roles: str = "", own: str = "") -> Rule:
    return Rule(scope, frozenset(roles.split()), frozenset(own.split()))


ANY = "any"
ACTIONS: dict[str, Rule] = {
    "project.list": _r(Scope.READ, ANY),  # the listing shows the caller's projects only
    "project.create": _r(Scope.ADMIN),
    "project.read": _r(Scope.READ, "owner member viewer"),
    "project.update": _r(Scope.WRITE, "owner"),
    "project.member.add": _r(Scope.WRITE, "owner"),
    "project.member.remove": _r(Scope.WRITE, "owner"),
    "project.allocate": _r(Scope.ADMIN),
    "project.delete": _r(Scope.ADMIN),
    "project.sync": _r(Scope.ADMIN),
    "job.submit": _r(Scope.WRITE, "owner member"),
    "job.list": _r(Scope.READ, "owner member viewer"),
    "job.read": _r(Scope.READ, "owner member viewer"),
    "job.logs": _r(Scope.READ, "owner member viewer"),
    "job.cancel": _r(Scope.WRITE, "owner", own="member"),
    "audit.read": _r(Scope.READ, "owner"),  # a project's audit; the whole log: admins
    "token.create": _r(Scope.ADMIN, own=ANY),
    "token.list": _r(Scope.READ, own=ANY),
    "token.revoke": _r(Scope.WRITE, own=ANY),
}


def _role(principal: Principal, resource: Resource) -> str | None:
    if resource.project is None:
        return None
    role = resource.project.members.get(principal.user)
    return None if role is None else role.value


def authorize(principal: Principal, action: str, resource: Resource) -> None:
    """Allow or raise ForbiddenError. KeyError for an action not in :data:`ACTIONS` (a bug). Pure."""
    rule = ACTIONS[action]
    if principal.scope < rule.scope:
        raise ForbiddenError(f"{action}: needs a credential with scope {rule.scope.name.lower()}")
    if principal.admin:
        return
    role = _role(principal, resource)
    if ANY in rule.roles or (role is not None and role in rule.roles):
        return
    own = resource.owner is not None and resource.owner == principal.user
    if own and (ANY in rule.own or (role is not None and role in rule.own)):
        return
    where = f" on project {resource.project.name}" if resource.project else ""
    raise ForbiddenError(f"{action}: not allowed for {principal.user}{where}")


def admins_from_env() -> frozenset[str]:
    """Site admins: ``$SLURMCTL_ADMINS`` (comma-separated users), default ``root``."""
    return frozenset(u.strip() for u in os.environ.get("SLURMCTL_ADMINS", "root").split(",") if u.strip())


# --- API tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str
    """``sct_<id>_<secret>``: shown to the user once; only its hash is stored."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    repo: Repository, *, user: str, name: str, scope: Scope, days: int, actor: Actor
) -> IssuedToken:
    """Create a token for ``user`` valid ``days`` days (1 to MAX_TOKEN_DAYS). Raises ConfigError."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise ConfigError(f"a token lives 1 to {MAX_TOKEN_DAYS} days (asked: {days})")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken.build(
        id=token_id,
        user=user,
        name=name,
        scope=scope.name.lower(),
        secret_sha256=_hash(secret),
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    repo.create_token(token, actor)
    return IssuedToken(token, f"sct_{token_id}_{secret}")


def verify_token(
    repo: Repository, presented: str, *, admins: frozenset[str] | set[str], now: datetime | None = None
) -> Principal:
    """The principal of a presented token. Raises AuthenticationError (malformed, unknown, wrong
    secret, expired, revoked) without quoting the token."""
    m = TOKEN_RE.match(presented.strip())
    if m is None:
        raise AuthenticationError("malformed API token")
    try:
        token = repo.get_token(m.group(1)).entity
    except NotFoundError:
        raise AuthenticationError("unknown API token") from None
    if not hmac.compare_digest(token.secret_sha256, _hash(m.group(2))):
        raise AuthenticationError("unknown API token")
    if token.revoked_at is not None:
        raise AuthenticationError(f"API token {token.id} is revoked")
    if (now or utcnow()) >= token.expires_at:
        raise AuthenticationError(f"API token {token.id} expired at {token.expires_at:%Y-%m-%d %H:%M} UTC")
    return Principal(user=token.user, admin=token.user in admins, scope=Scope.parse(token.scope))


# --- MUNGE ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MungeIdentity:
    user: str
    uid: int
    gid: int
    payload: str
    encoded_at: str


def munge_encode(payload: str = "", *, timeout: float = 10) -> str:
    """A MUNGE credential of the calling user carrying ``payload`` (``munge``). Raises
    AuthenticationError when munged does not answer."""
    try:
        r = subprocess.run(
            ["munge", "-s", payload] if payload else ["munge", "-n"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthenticationError(f"munge: {exc}") from exc
    if r.returncode != 0:
        raise AuthenticationError(f"munge failed: {r.stderr.strip() or r.returncode}")
    return r.stdout.strip()


_META = re.compile(r"^([A-Z_]+):\s*(.*)$")


def munge_verify(credential: str, *, timeout: float = 10) -> MungeIdentity:
    """Decode a credential with ``unmunge`` (munged checks its MAC, its TTL and that it was not
    decoded before). Raises AuthenticationError naming munged's status."""
    try:
        r = subprocess.run(
            ["unmunge"],
            input=credential.strip() + "\n",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthenticationError(f"unmunge: {exc}") from exc
    head, _, payload = r.stdout.partition("\n\n")
    meta = {m.group(1): m.group(2).strip() for line in head.splitlines() if (m := _META.match(line))}
    status = meta.get("STATUS", r.stderr.strip().removeprefix("unmunge: Error: ") or "no answer")
    if r.returncode != 0 or not status.startswith("Success"):
        raise AuthenticationError(f"MUNGE credential refused: {status}")
    uid_m = re.match(r"^(\S+) \((\d+)\)$", meta.get("UID", ""))
    gid_m = re.match(r"^(\S+) \((\d+)\)$", meta.get("GID", ""))
    if uid_m is None or gid_m is None:
        raise AuthenticationError("MUNGE credential without a user")
    return MungeIdentity(
        user=uid_m.group(1),
        uid=int(uid_m.group(2)),
        gid=int(gid_m.group(2)),
        payload=payload.rstrip("\n") if payload else "",
        encoded_at=meta.get("ENCODE_TIME", ""),
    )


def munge_principal(credential: str, *, admins: frozenset[str] | set[str]) -> Principal:
    """The principal of a MUNGE credential: its user, with that user's full rights."""
    ident = munge_verify(credential)
    return Principal(user=ident.user, admin=ident.user in admins, scope=Scope.ADMIN)
