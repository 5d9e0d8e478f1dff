"""docs/first-job.md, followed from a new account on the dev cluster: every ```bash block of the
page, in order, as one bash script, then a check of the merged result.

As root the test creates a new unprivileged Unix user whose home is a new directory (on the dev
cluster the login node and the compute node are one machine, so every local filesystem is "shared"),
copies the source tree to ``~/slurmctl`` (the clone the page starts from) and runs the script as that
user with an empty environment. The dev cluster does not enforce accounting associations
(``AccountingStorageEnforce = none``), so the user needs no ``sacctmgr`` entry; the test checks that.
Not as root, it runs the script as the current user with a new, empty HOME.
"""

# ruff: noqa: F811  -- pytest fixtures imported from tests/slurm_fixtures.py are redefined as arguments
from __future__ import annotations

import csv
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, home of slurm_fixtures
from slurm_fixtures import SlurmCluster, slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "first-job.md"
RECORDS = 200


def page_script(text: str) -> str:
    """The page's ```bash blocks, in order, joined into one script."""
    return "\n".join(re.findall(r"^```bash\n(.*?)^```$", text, re.M | re.S))


def test_page_script_is_the_page_commands():
    script = page_script(PAGE.read_text())
    order = ["python3 -m venv", "srun", "slurmctl doctor", "cat > job.yaml", "slurmctl submit", "--watch"]
    positions = [script.index(step) for step in order]
    assert positions == sorted(positions)
    assert script.rstrip().endswith('slurmctl results "$JOB"')
    assert "```" not in script


def copy_source(dest: Path) -> None:
    """The files `pip install` needs from a clone."""
    dest.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(
        REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    )


@pytest.fixture
def account(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[tuple[str | None, Path]]:
    """(user, home): a new Unix user and its home as root; (None, a new empty HOME) otherwise."""
    if os.geteuid() != 0:
        home = tmp_path / "home"
        home.mkdir()
        copy_source(home / "slurmctl")
        yield None, home
        return
    enforce = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True)
    line = next(x for x in enforce.stdout.splitlines() if x.startswith("AccountingStorageEnforce"))
    assert "assoc" not in line, f"the cluster enforces associations ({line}): the new user needs one"
    base = Path(tempfile.mkdtemp(prefix="slurmctl-first-job-"))
    base.chmod(0o755)
    user = "sctl" + secrets.token_hex(4)
    home = base / user
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group", user],
        check=True,
        capture_output=True,
    )
    try:
        copy_source(home / "slurmctl")
        subprocess.run(["chown", "-R", f"{user}:{user}", str(home / "slurmctl")], check=True)
        yield user, home
    finally:
        subprocess.run(["scancel", "--user", user], capture_output=True, check=False)
        subprocess.run(["userdel", "--force", user], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_first_job_page_from_a_fresh_account(account: tuple[str | None, Path]) -> None:
    user, home = account
    script = "set -x\n" + page_script(PAGE.read_text())
    if user is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURMCTL_", "VIRTUAL_ENV"))}
        env["HOME"] = str(home)
        cmd = ["bash", "-euo", "pipefail", "-c", script]
    else:
        env = None
        clean = {"HOME": str(home), "USER": user, "LOGNAME": user, "LANG": "C.UTF-8"}
        clean["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        cmd = ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in clean.items())]
        cmd += ["bash", "-euo", "pipefail", "-c", script]
    proc = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"

    out = home / "first-job" / "wordcount.csv"
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["id"]) for r in rows) == list(range(RECORDS))
    assert all(int(r["words"]) == int(r["id"]) % 7 + 1 for r in rows)
    assert "200 rows from 4 tasks" in proc.stdout + proc.stderr
    if user is not None:  # the Slurm jobs ran as the new user: their logs are its files
        logs = list((home / ".slurmctl" / "jobs").glob("*/logs/slurm/*.out"))
        assert len(logs) == 4
        assert {pwd.getpwuid(p.stat().st_uid).pw_name for p in logs} == {user}
