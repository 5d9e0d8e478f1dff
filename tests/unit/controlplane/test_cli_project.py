"""``slurmctl db`` and ``slurmctl project`` as a user runs them (subprocess), on SQLite and on
PostgreSQL: migrations, messages, exit codes (errors.py), and the audit of CLI changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from slurmctl.controlplane import db
from slurmctl.controlplane.repo import Repository


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLURMCTL_DATABASE_URL=url, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_db_and_project_commands(db_engine):
    url = db_engine.url.render_as_string(hide_password=False)
    if db_engine.dialect.name == "postgresql":
        # A shared server is never migrated as a side effect.
        p = _cli(url, "project", "list")
        assert p.returncode == 6 and "run `slurmctl db upgrade`" in p.stderr, p.stderr
        p = _cli(url, "db", "current")
        assert p.returncode == 0 and ": empty (behind" in p.stdout
        p = _cli(url, "db", "upgrade")
        assert p.returncode == 0 and f"empty → {db.head()}" in p.stdout, p.stderr
    assert _cli(url, "project", "create", "lab", "--pi", "alice", "--title", "Lab").returncode == 0
    p = _cli(url, "db", "current")
    assert p.stdout.strip().endswith(f"{db.head()} (up to date)")

    p = _cli(url, "project", "add-member", "lab", "bob", "--role", "viewer")
    assert p.returncode == 0 and "bob is viewer of lab (version 2)" in p.stdout
    p = _cli(url, "project", "show", "lab")
    assert "members: alice (owner), bob (viewer)" in p.stdout and "version 2" in p.stdout
    p = _cli(url, "project", "list", "--json")
    assert [r["name"] for r in json.loads(p.stdout)] == ["lab"]
    p = _cli(url, "project", "remove-member", "lab", "bob")
    assert p.returncode == 0 and "(version 3)" in p.stdout
    p = _cli(
        url, "project", "allocate", "lab", "--cluster", "dev", "--cpu-hours", "10", "--end", "2099-01-01"
    )
    assert p.returncode == 0 and "{'cpu': 600} TRES-minutes (version 4)" in p.stdout, p.stderr
    p = _cli(url, "project", "show", "lab")
    assert "allocation dev: 10 core-h, 0 GPU-h, 0 GB-h" in p.stdout and "to 2099-01-01" in p.stdout

    # Bad input: a message and the documented exit code, never a traceback (the same on both engines
    # but for the duplicate, which the database refuses: checked on both, the rest on SQLite).
    cases = [
        (["project", "create", "Lab X", "--pi", "alice"], 2, "must be a Slurm account name"),
        (["project", "create", "lab", "--pi", "alice"], 6, "a project of that name exists"),
        (["project", "show", "nope"], 5, "no project 'nope'"),
        (["project", "add-member", "lab", "carol", "--role", "boss"], 2, "not a role"),
        (["project", "add-member", "lab", "carol", "--role", "admin"], 2, "site-wide role"),
        (["project", "remove-member", "lab", "alice"], 2, "is the PI"),
        (["project", "remove-member", "lab", "zed"], 5, "not a member"),
        (["db", "upgrade", "9999"], 2, "9999"),
        (["project", "allocate", "lab", "--cluster", "dev", "--cpu-hours", "1", "--end", "soon"], 2, "--end"),
        (
            ["project", "allocate", "lab", "--cluster", "dev", "--cpu-hours", "1", "--end", "2001-01-01"],
            2,
            "after",
        ),
        (["project", "allocate", "lab", "--cluster", "dev", "--end", "2099-01-01"], 2, "grants something"),
    ]
    for args, code, says in cases if db_engine.dialect.name == "sqlite" else cases[1:2]:
        p = _cli(url, *args)
        assert (p.returncode, "Traceback" in p.stderr) == (code, False), (args, p.stderr)
        assert says in p.stderr, (args, p.stderr)

    actions = [(e.action, e.source.split("@")[0]) for e in Repository(db_engine).audit()]
    assert actions == [
        ("project.create", "cli"),
        ("project.add_member", "cli"),
        ("project.remove_member", "cli"),
        ("project.allocate", "cli"),
    ]

    p = _cli(url, "db", "downgrade", "base")
    assert p.returncode == 0 and f"{db.head()} → empty" in p.stdout


def test_bad_database_url_exits_2():
    p = _cli("mysql://x@y/z", "project", "list")
    assert p.returncode == 2 and "unsupported database 'mysql'" in p.stderr
