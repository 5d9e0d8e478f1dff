"""Idempotency: the same window twice, overlapping windows, and a crash between temp write and rename."""

import io
import os
import subprocess
import sys

import sbhelpers
from sbhelpers import FAIL, REPO

from slurmctl.scoreboard import derive, ingest, layout, store, synth


def synth_lines(n, seed=1, month="2026-10", first=1000000):
    buf = io.StringIO()
    exp = synth.generate(buf, n, n_users=120, seed=seed, month=month, first_job_id=first)
    return buf.getvalue().splitlines(True), exp


def job_blocks(lines):
    """Split sacct lines into per-job blocks (job row + its steps): sacct never splits a job's rows."""
    jobs = []
    for line in lines:
        if "." not in line.split("|", 1)[0]:
            jobs.append([])
        jobs[-1].append(line)
    return jobs


def test_same_window_twice_changes_nothing(tmp_path):
    root = str(tmp_path)
    lines, exp = synth_lines(3000)
    ingest.ingest(root, "c1", lines, FAIL)
    h1 = store.read_header(layout.month_state(root, "c1", "2026-10"))
    r = ingest.ingest(root, "c1", lines, FAIL)
    assert (r.jobs_new, r.duplicates) == (0, 3000)
    assert sbhelpers.month_totals(root, "c1") == exp
    assert store.read_header(layout.month_state(root, "c1", "2026-10"))["generation"] == h1["generation"]


def test_overlapping_windows_count_each_job_once(tmp_path):
    root = str(tmp_path)
    lines, exp = synth_lines(3000, seed=2)
    jobs = job_blocks(lines)
    a = [ln for block in jobs[:2000] for ln in block]
    b = [ln for block in jobs[1500:] for ln in block]  # 500 jobs read twice
    ingest.ingest(root, "c1", a, FAIL)
    r = ingest.ingest(root, "c1", b, FAIL)
    assert (r.jobs_new, r.duplicates) == (1000, 500)
    assert sbhelpers.month_totals(root, "c1") == exp


CRASH = r"""
import sys
sys.path.insert(0, {src!r})
sys.path.insert(0, {tests!r})
import os
from slurmctl.scoreboard import fsutil, ingest
from sbhelpers import FAIL, read_lines
target = {target!r}
def hook(path):
    if path.endswith(target):
        os._exit(9)  # die like a killed process: temp file written and fsynced, rename not done
fsutil._before_rename_hook = hook
ingest.ingest({root!r}, "c1", read_lines({data!r}), FAIL)
"""


def run_crash(root, data, target):
    code = CRASH.format(
        src=os.path.join(REPO, "src"), tests=sbhelpers.HERE, target=target, root=root, data=data
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode


def test_crash_before_state_rename_then_repoll(tmp_path):
    root = str(tmp_path / "root")
    lines, exp = synth_lines(2000, seed=3)
    data = str(tmp_path / "month.sacct")
    with open(data, "w") as fh:
        fh.writelines(
            ln for block in job_blocks(lines)[:1000] for ln in block
        )  # first poll: part of the month
    ingest.ingest(root, "c1", sbhelpers.read_lines(data), FAIL)
    partial = sbhelpers.month_totals(root, "c1")
    with open(data, "w") as fh:
        fh.writelines(lines)  # the next poll overlaps and sees everything
    assert run_crash(root, data, ".state") == 9
    assert sbhelpers.month_totals(root, "c1") == partial  # the commit never happened
    stray = [
        n
        for n in os.listdir(os.path.dirname(layout.month_state(root, "c1", "2026-10")))
        if n.startswith(".tmp")
    ]
    assert stray, "the crash should leave the temp file behind"
    ingest.ingest(root, "c1", lines, FAIL)  # re-poll
    assert sbhelpers.month_totals(root, "c1") == exp


def test_crash_before_bloom_rename_then_repoll(tmp_path):
    root = str(tmp_path / "root")
    lines, exp = synth_lines(2000, seed=4)
    data = str(tmp_path / "month.sacct")
    with open(data, "w") as fh:
        fh.writelines(lines)
    assert run_crash(root, data, ".bloom") == 9  # state committed, Bloom file not
    assert sbhelpers.month_totals(root, "c1") == exp
    r = ingest.ingest(root, "c1", lines, FAIL)  # Bloom missing/stale: rebuilt from the exact set
    assert (r.jobs_new, r.duplicates) == (0, 2000)
    assert sbhelpers.month_totals(root, "c1") == exp


def test_derived_files_repaired_after_interrupted_derive(tmp_path):
    root = str(tmp_path)
    lines, _exp = synth_lines(1000, seed=6)
    ingest.ingest(root, "c1", lines, FAIL)
    assert not derive.derived_is_current(root, "c1")  # committed but never derived: a poll repairs it
    derive.derive(root, "c1", derive.Policy())
    assert derive.derived_is_current(root, "c1")
