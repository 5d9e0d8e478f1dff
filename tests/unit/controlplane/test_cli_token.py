"""``slurmctl token create|list|revoke`` as a subprocess on SQLite: the secret is printed once and
works; list never shows it; revoke refuses it afterwards; another user's tokens need an admin."""

from __future__ import annotations

import os
import subprocess
import sys

from slurmctl.controlplane import auth
from slurmctl.controlplane.repo import open_repository
from slurmctl.errors import AuthenticationError


def _cli(url: str, *args: str, admins: str = "root") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLURMCTL_DATABASE_URL=url, SLURMCTL_ADMINS=admins)
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", "token", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_token_commands(tmp_path):
    import getpass

    me = getpass.getuser()
    url = f"sqlite:///{tmp_path}/control.db"
    p = _cli(url, "create", "--name", "laptop", "--scope", "write", "--days", "7")
    assert p.returncode == 0, p.stderr
    secret = p.stdout.splitlines()[1]
    token_id = p.stdout.split()[1]
    repo = open_repository(url)
    assert auth.verify_token(repo, secret, admins=set()).user == me
    listed = _cli(url, "list")
    assert (
        token_id in listed.stdout and "active" in listed.stdout and secret.split("_")[2] not in listed.stdout
    )
    assert secret.split("_")[2] not in _cli(url, "list", "--json").stdout
    assert _cli(url, "create", "--scope", "root").returncode == 2
    assert _cli(url, "create", "--days", "0").returncode == 2
    assert _cli(url, "revoke", "ffffffffffff").returncode == 5
    # another user's tokens: only a site admin
    denied = _cli(url, "create", "--user", "someone", admins="nobody_else")
    assert denied.returncode == 14 and "token.create" in denied.stderr
    assert _cli(url, "list", "--all", admins="nobody_else").returncode == 14
    assert _cli(url, "create", "--user", "someone", admins=me).returncode == 0
    assert _cli(url, "revoke", token_id).returncode == 0
    try:
        auth.verify_token(repo, secret, admins=set())
        raise AssertionError("a revoked token was accepted")
    except AuthenticationError as exc:
        assert "revoked" in str(exc)
    assert "revoked" in _cli(url, "list").stdout
