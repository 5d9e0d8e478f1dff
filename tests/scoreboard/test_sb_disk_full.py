"""A write cut short (a nearly full disk, ``ulimit -f``) fails the poll instead of leaving a truncated file.

The file size limit (RLIMIT_FSIZE, set in the poller's process; SIGXFSZ ignored so the write returns
short, then fails with EFBIG) makes a real write stop part-way, without root or a full disk.
"""

import errno
import os
import resource
import signal
import subprocess
import sys

import pytest
from sbhelpers import BIN, FAKE_SACCT

from slurmctl.portable import diskio
from slurmctl.scoreboard import layout, synth


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _slurm_sb(root: str, data: str, *args: str, preexec=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, FAKE_SACCT_DATA=data)
    cmd = [sys.executable, BIN, *args, "--root", root, "--config", os.path.join(root, "none.yaml")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=300)


def _snapshot(root: str) -> dict:
    files = {}
    for d, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if "/agg/" in p or "/leaderboards/" in p:
                with open(p, "rb") as fh:
                    files[p] = fh.read()
    return files


def test_a_short_write_fails_the_poll_and_keeps_the_previous_files(tmp_path):
    root, data = str(tmp_path / "root"), str(tmp_path / "sacct.txt")
    with open(data, "w") as fh:
        synth.generate(fh, 3000, month="2026-11", n_users=400, seed=3)
    poll = ("poll", "--once", "--cluster", "c1", "--sacct", FAKE_SACCT, "--rate-limit", "6000")
    poll += ("--backfill-start", "2026-11-01")
    r = _slurm_sb(root, data, *poll)
    assert r.returncode == 0, r.stderr
    before = _snapshot(root)
    rollup = layout.rollup_file(root, "c1", "2026-11")
    size = len(before[rollup])
    assert size > 50000 and all(len(b) < size for p, b in before.items() if p != rollup)

    os.unlink(layout.derived_marker(root, "c1"))  # the next poll rewrites every derived file
    r = _slurm_sb(root, data, *poll, preexec=_limit_file_size(size * 2 // 3))
    assert r.returncode == 6, (r.returncode, r.stderr[-500:])
    assert f"cannot write {rollup}" in r.stderr and "File too large" in r.stderr, r.stderr
    assert _snapshot(root) == before  # every derived file as the previous poll left it, none cut
    leftovers = [n for _d, _s, names in os.walk(root) for n in names if n.startswith(".tmp-")]
    assert leftovers == []

    r = _slurm_sb(root, data, "doctor", "--cluster", "c1")
    assert "File too large" in r.stdout and "derived files do not match" in r.stdout, r.stdout
    assert "OK   [c1] derived files match" not in r.stdout


def test_write_all_writes_what_a_short_write_left_and_refuses_a_write_of_nothing(monkeypatch):
    r, w = os.pipe()
    real = os.write
    monkeypatch.setattr(diskio.os, "write", lambda fd, data: real(fd, bytes(data[:3])))
    diskio.write_all(w, b"0123456789")
    assert os.read(r, 100) == b"0123456789"
    monkeypatch.setattr(diskio.os, "write", lambda fd, data: 0)
    with pytest.raises(OSError, match="wrote 0 of 4 bytes") as exc:
        diskio.write_all(w, b"abcd")
    assert exc.value.errno == errno.ENOSPC
    os.close(r)
    os.close(w)
