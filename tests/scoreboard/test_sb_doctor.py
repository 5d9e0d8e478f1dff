"""``slurm-sb doctor``: what it says matches what it found, and a root the poller cannot write fails it."""

import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
import sbhelpers
from sbhelpers import BIN, FAKE_SACCT

from slurmctl.scoreboard import layout, probe
from slurmctl.scoreboard.errors import SacctError
from slurmctl.scoreboard.jsonlog import JsonLog
from slurmctl.scoreboard.sacct import Sacct


@pytest.fixture(scope="module")
def polled(tmp_path_factory):
    """A root one real poll wrote (world-readable: one test reads it as another user)."""
    top = tempfile.mkdtemp(prefix="sb-doctor-")
    os.chmod(top, 0o755)
    root = os.path.join(top, "root")
    env = dict(os.environ, FAKE_SACCT_DATA=sbhelpers.golden("handmade.sacct"))
    cmd = [sys.executable, BIN, "poll", "--once", "--quiet", "--root", root, "--cluster", "c1"]
    cmd += ["--sacct", FAKE_SACCT, "--config", "/nonexistent.yaml", "--backfill-start", "2026-10-01"]
    env.update(SLURM_SB_HOME_DIR="", SLURM_SB_LAG_SEC="0", SLURM_SB_RATE_LIMIT_PER_MIN="6000")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    yield root
    shutil.rmtree(top, ignore_errors=True)


def lines(root):
    return probe.doctor(root, "c1", 3600.0)


def test_derived_files_are_reported_as_matching_only_when_they_do(polled):
    out, _code = lines(polled)
    assert "OK   [c1] derived files match the month states" in out, out
    marker = layout.derived_marker(polled, "c1")
    saved = sbhelpers.read_text(marker)
    try:
        with open(marker, "w") as fh:
            fh.write('{"asof": "x", "generations": {}, "policy": "x"}')
        out, _code = lines(polled)
        said = [x for x in out if "derived files" in x]
        assert said == [
            "WARN [c1] derived files do not match the month states"
            " (the next poll rewrites them; `slurm-sb rebuild` does it now)"
        ], out
    finally:
        with open(marker, "w") as fh:
            fh.write(saved)


def _python_for(uid):
    """An interpreter the user ``uid`` may run (sys.executable may sit under /root)."""
    for exe in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            subprocess.run(
                [exe, "-c", "pass"], preexec_fn=lambda: (os.setgid(uid), os.setuid(uid)), check=True
            )
        except (OSError, subprocess.CalledProcessError):
            continue
        return exe
    pytest.fail("no python3 that an unprivileged user can run")


def test_a_root_the_poller_cannot_write_fails_the_doctor(polled):
    cmd = ["doctor", "--root", polled, "--cluster", "c1", "--config", "/nonexistent.yaml"]
    if os.geteuid() == 0:  # root writes anywhere: run the doctor as nobody, to whom the root is read-only
        nobody = 65534
        r = subprocess.run(
            [_python_for(nobody), BIN, *cmd],
            capture_output=True,
            text=True,
            preexec_fn=lambda: (os.setgid(nobody), os.setuid(nobody)),
            cwd="/",
        )
    else:
        state = layout.state_dir(polled, "c1")
        mode = stat.S_IMODE(os.stat(state).st_mode)
        os.chmod(state, 0o555)
        try:
            r = subprocess.run([sys.executable, BIN, *cmd], capture_output=True, text=True)
        finally:
            os.chmod(state, mode)
    assert r.returncode == 1, r.stdout + r.stderr
    fail = [x for x in r.stdout.splitlines() if x.startswith("FAIL")]
    assert len(fail) == 1 and "this user cannot write" in fail[0], r.stdout
    assert "polls fail (exit 6)" in fail[0]
    assert f"e.g. {polled}/" in fail[0]


def test_counts_take_the_singular_for_one(polled):
    temp = os.path.join(layout.users_dir(polled, "c1"), ".tmp-u1.json.dead")
    with open(temp, "w") as fh:
        fh.write("{")
    os.utime(temp, (0, 0))
    try:
        out, _code = lines(polled)
    finally:
        os.unlink(temp)
    text = "\n".join(out)
    assert "1 stale temp file (of a writer that died)" in text and "temp files" not in text, text
    months = len([m for m in os.listdir(os.path.join(layout.state_dir(polled, "c1"), "months"))])
    assert f"{months} month state{'s' if months != 1 else ''} readable" in text


@pytest.mark.parametrize("retries,said", [(0, "sacct failed once;"), (1, "sacct failed 2 times;")])
def test_sacct_failures_are_counted_in_plain_words(tmp_path, retries, said):
    fail = tmp_path / "sacct"
    fail.write_text("#!/bin/sh\necho 'slurmdbd: down' >&2\nexit 1\n")
    fail.chmod(0o755)
    sacct = Sacct(str(fail), retries=retries, sleep=lambda s: None, log=JsonLog("c1", None, io.StringIO()))
    with pytest.raises(SacctError) as exc:
        sacct.run(["-a"], lambda lines, finish: (list(lines), finish()))
    assert said in str(exc.value) and "slurmdbd: down" in str(exc.value), str(exc.value)
