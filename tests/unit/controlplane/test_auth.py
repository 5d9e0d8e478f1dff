"""Authorization: the full action x role x token scope matrix against a table written out here by
hand; API tokens (secret shown once, stored hashed, expiring, revocable); MUNGE credentials
verified by the real munged of the dev cluster."""

from __future__ import annotations

import getpass
import subprocess
from datetime import timedelta

import pytest

from slurmctl.controlplane import auth
from slurmctl.controlplane.auth import ACTIONS, Principal, Resource, Scope, authorize
from slurmctl.controlplane.domain import ResearchProject, utcnow
from slurmctl.controlplane.repo import Actor, Repository
from slurmctl.errors import AuthenticationError, ForbiddenError

ROLES = ("admin", "owner", "member", "viewer", "none")
A, OW, M, V = "admin", "owner", "member", "viewer"
# action: (scope it needs, roles allowed on any resource, roles allowed only on their own resource)
EXPECTED: dict[str, tuple[Scope, set[str], set[str]]] = {
    "project.list": (Scope.READ, {A, OW, M, V, "none"}, set()),
    "project.create": (Scope.ADMIN, {A}, set()),
    "project.read": (Scope.READ, {A, OW, M, V}, set()),
    "project.update": (Scope.WRITE, {A, OW}, set()),
    "project.member.add": (Scope.WRITE, {A, OW}, set()),
    "project.member.remove": (Scope.WRITE, {A, OW}, set()),
    "project.allocate": (Scope.ADMIN, {A}, set()),
    "project.delete": (Scope.ADMIN, {A}, set()),
    "project.sync": (Scope.ADMIN, {A}, set()),
    "job.submit": (Scope.WRITE, {A, OW, M}, set()),
    "job.list": (Scope.READ, {A, OW, M, V}, set()),
    "job.read": (Scope.READ, {A, OW, M, V}, set()),
    "job.logs": (Scope.READ, {A, OW, M, V}, set()),
    "job.cancel": (Scope.WRITE, {A, OW}, {M}),
    "audit.read": (Scope.READ, {A, OW}, set()),
    "token.create": (Scope.ADMIN, {A}, {OW, M, V, "none"}),
    "token.list": (Scope.READ, {A}, {OW, M, V, "none"}),
    "token.revoke": (Scope.WRITE, {A}, {OW, M, V, "none"}),
}

LAB = ResearchProject.build(name="lab", pi="olga", members={"mia": "member", "vic": "viewer"})
USER = {"admin": "root", "owner": "olga", "member": "mia", "viewer": "vic", "none": "nina"}


def test_the_table_is_the_one_tested():
    assert set(ACTIONS) == set(EXPECTED)


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("scope", list(Scope))
@pytest.mark.parametrize("own", [True, False])
def test_action_role_scope_matrix(action, role, scope, own):
    need, anywhere, own_only = EXPECTED[action]
    user = USER[role]
    principal = Principal(user=user, admin=role == "admin", scope=scope)
    resource = Resource(project=LAB, owner=user if own else "someone_else")
    allowed = scope >= need and (role in anywhere or (own and role in own_only))
    if allowed:
        authorize(principal, action, resource)
    else:
        with pytest.raises(ForbiddenError) as err:
            authorize(principal, action, resource)
        assert action in str(err.value)


def test_unknown_action_is_a_bug():
    with pytest.raises(KeyError):
        authorize(Principal("root", admin=True, scope=Scope.ADMIN), "project.nuke", Resource())


ACTOR = Actor("olga", "test")


def test_token_secret_shown_once_stored_hashed_and_verified(repo: Repository):
    issued = auth.create_token(repo, user="olga", name="laptop", scope=Scope.WRITE, days=30, actor=ACTOR)
    secret = issued.secret
    assert secret.startswith("sct_") and len(secret) > 40
    stored = repo.get_token(issued.token.id).entity
    assert secret not in stored.model_dump_json() and stored.secret_sha256 != secret
    p = auth.verify_token(repo, secret, admins={"root"})
    assert p == Principal(user="olga", admin=False, scope=Scope.WRITE)
    assert auth.verify_token(repo, secret, admins={"olga"}).admin
    for bad in ("", "nonsense", secret[:-1] + ("A" if secret[-1] != "A" else "B"), "sct_ffffffffffff_x"):
        with pytest.raises(AuthenticationError) as err:
            auth.verify_token(repo, bad, admins=set())
        assert secret not in str(err.value)


def test_expired_and_revoked_tokens_are_refused(repo: Repository):
    issued = auth.create_token(repo, user="olga", name="t", scope=Scope.READ, days=1, actor=ACTOR)
    auth.verify_token(repo, issued.secret, admins=set(), now=utcnow() + timedelta(hours=23))
    with pytest.raises(AuthenticationError, match="expired"):
        auth.verify_token(repo, issued.secret, admins=set(), now=utcnow() + timedelta(days=1, seconds=1))
    repo.revoke_token(issued.token.id, ACTOR)
    with pytest.raises(AuthenticationError, match="revoked"):
        auth.verify_token(repo, issued.secret, admins=set())
    assert [t.entity.revoked_at is not None for t in repo.list_tokens(user="olga")] == [True]
    actions = [e.action for e in repo.audit(entity_key=f"token/{issued.token.id}")]
    assert actions == ["token.create", "token.revoke"]


def test_token_lifetime_is_bounded(repo: Repository):
    from slurmctl.errors import ConfigError

    for days in (0, auth.MAX_TOKEN_DAYS + 1):
        with pytest.raises(ConfigError):
            auth.create_token(repo, user="olga", name="t", scope=Scope.READ, days=days, actor=ACTOR)


@pytest.mark.slurm
def test_munge_credential_round_trip_on_the_dev_cluster(slurm_cluster):
    cred = auth.munge_encode("payload-1")
    ident = auth.munge_verify(cred)
    assert (ident.user, ident.payload) == (getpass.getuser(), "payload-1")
    with pytest.raises(AuthenticationError, match=r"[Rr]eplayed"):
        auth.munge_verify(cred)  # munged refuses a credential decoded before
    with pytest.raises(AuthenticationError):
        auth.munge_verify(cred[:30] + ("A" if cred[30] != "A" else "B") + cred[31:])
    with pytest.raises(AuthenticationError):
        auth.munge_verify("not a credential")
    assert subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0
