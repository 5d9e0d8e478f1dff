"""Golden fixtures with hand-computed totals: units, ReqMem forms, GPU TRES, failure states, steps folded.

handmade.sacct holds one row per case (see the comments in handmade.expected.json); the expected sums
were computed by hand, not by running the code:

  alice  100: 4 CPUs x 3600 s, typed+untyped GPU listed twice for 2 GPUs, ReqMem 4000M (job total),
              steps batch 1048576 B / extern 2048K / .0 3000000 B -> max 3000000, ave max 2500000
         101: FAILED, 8 CPUs x 1800 s, 4000Mc (per CPU: x8), batch MaxRSS 1G, AveRSS 512M
  bob    102: CANCELLED (not a failure), 64Gn on 2 nodes, untyped gres/gpu=1, no steps
         103: TIMEOUT, elapsed 0, typed-only gres/gpu:v100=1, empty ReqMem
         104: OUT_OF_MEMORY, 2G, batch MaxRSS 2147483648 B, AveRSS 1.5G
  carol  105 (array task), 106+107 (het components), 108 RUNNING (End=Unknown: not counted)
  dave   109 NODE_FAIL, 110 PREEMPTED
  skipped: a garbage line, 111 (ElapsedRaw "abc"), 112 (ReqMem "12Q"); 999.batch has no job row
"""

import os

import sbhelpers
from sbhelpers import FAIL, golden, read_lines

from slurmctl.scoreboard import derive, ingest, layout, model
from slurmctl.scoreboard.parser import SacctParser

EXPECTED = sbhelpers.load_json(golden("handmade.expected.json"))


def parse_handmade():
    p = SacctParser(FAIL)
    sums = {}
    for _job_id, user, _end, s in p.parse(read_lines(golden("handmade.sacct"))):
        acc = sums.setdefault(user, [0] * 10)
        for i, v in enumerate(s):
            acc[i] += v
    return p, sums


def test_parser_matches_hand_computed_sums():
    p, sums = parse_handmade()
    assert sums == EXPECTED["sums"]
    assert p.jobs == EXPECTED["jobs"]
    assert p.skipped == EXPECTED["skipped"]
    assert p.unended == EXPECTED["unended"]
    assert p.orphan_steps == EXPECTED["orphan_steps"]
    assert len(p.problems) == EXPECTED["skipped"]
    assert any(":11:" in msg and "fields" in msg for msg in p.problems), p.problems  # file:line in messages


def test_cancelled_counts_as_failure_only_when_configured():
    p = SacctParser([*FAIL, "CANCELLED"])
    failed = {}
    for _j, user, _e, s in p.parse(read_lines(golden("handmade.sacct"))):
        failed[user] = failed.get(user, 0) + s[2]
    assert failed["bob"] == EXPECTED["sums"]["bob"][2] + 1


def test_ingest_and_rollup_files(tmp_path):
    root = str(tmp_path)
    r = ingest.ingest(root, "c1", read_lines(golden("handmade.sacct")), FAIL)
    assert r.jobs_new == EXPECTED["jobs"] and r.months == {
        "2026-10": {"seen": 10, "new": 10, "duplicates": 0}
    }
    assert sbhelpers.month_totals(root, "c1") == EXPECTED["sums"]
    import datetime

    derive.derive(root, "c1", derive.Policy(min_jobs=3), now=datetime.datetime(2026, 11, 5, 12, 0, 0))
    roll = model.load_rollup(layout.rollup_file(root, "c1", "2026-10"))
    assert roll["month"] == "2026-10"
    assert set(roll["users"]) == {"alice", "bob", "carol", "dave"}  # rollups are not filtered by min_jobs
    assert roll["users"]["alice"] == EXPECTED["metrics"]["alice"]
    raw = sbhelpers.load_json(layout.rollup_file(root, "c1", "2026-10"))
    assert set(raw) == {"asof", "month", "cluster", "users"} and raw["asof"].endswith("Z")
    assert set(raw["users"][0]) == {"username", *EXPECTED["metrics"]["alice"]}
    # leaderboards hide users with fewer than 3 jobs (alice and dave have 2)
    lb = model.load_leaderboard(layout.leaderboard_file(root, "c1", "alltime", "clock_hours"))
    # values are stored rounded to 6 decimals (3.6 ms)
    assert lb["rows"] == [(1, "bob", round(240 / 3600, 6)), (2, "carol", round(70 / 3600, 6))]
    user = model.load_user(layout.user_file(root, "c1", "alice"))
    assert user["gpu_clock_hours"] == 2.0 and user["first_month"] == "2026-10"
    # the 30-day window on 2026-11-05 starts 2026-10-07: alice's job 100 (Oct 3) falls out
    t30 = model.load_table(layout.table_file(root, "c1", "rolling-30d"))
    assert "alice" not in t30["rows"]  # only 1 job left in the window (< 3)
    assert os.path.exists(layout.leaderboard_file(root, "ALL", "rolling-365d", "gpu_clock_hours"))


def test_real_sacct_22_05_output_from_the_dev_cluster(tmp_path):
    """Real rows: no MaxRSS on job rows, typed+untyped GPU, 'CANCELLED by 0', array raw ids, TIMEOUT."""
    exp = sbhelpers.load_json(golden("dev-22.05.expected.json"))
    root = str(tmp_path)
    r = ingest.ingest(root, "dev", read_lines(golden("dev-22.05.sacct")), FAIL)
    assert r.skipped == 0 and r.orphan_steps == 0 and r.jobs_new == 9
    assert sbhelpers.month_totals(root, "dev") == exp["sums"]


def test_real_requeued_job_counts_once_with_the_time_of_every_run(tmp_path):
    """Real sacct -D rows of a job requeued twice (22.05): REQUEUED, REQUEUED, COMPLETED, same JobIDRaw.

    Re-reading the same window, or reading the runs in two windows (the earlier runs first, as a
    poll does when a requeue and the last run straddle two polls), counts each run once."""
    from slurmctl.scoreboard import store

    exp = sbhelpers.load_json(golden("dev-22.05-requeue.expected.json"))
    lines = read_lines(golden("dev-22.05-requeue.sacct"))
    month = exp["month"]
    root = str(tmp_path / "whole")
    r = ingest.ingest(root, "dev", lines, FAIL)
    assert (r.jobs_new, r.runs_new, r.skipped, r.orphan_steps) == (1, exp["runs"], 0, 0)
    assert sbhelpers.month_totals(root, "dev") == exp["sums"]
    st = store.read_state(layout.month_state(root, "dev", month), month)
    assert len(st.ids) == 1 and len(st.runs) == exp["runs"]
    again = ingest.ingest(root, "dev", lines, FAIL)
    assert (again.jobs_new, again.runs_new, again.duplicates) == (0, 0, 1 + exp["runs"])
    assert sbhelpers.month_totals(root, "dev") == exp["sums"]
    split = str(tmp_path / "split")
    first = ingest.ingest(split, "dev", lines[:2], FAIL)  # only the first run has ended so far
    assert (first.jobs_new, first.runs_new) == (0, 1)
    assert sbhelpers.month_totals(split, "dev")["sbtest"][:5] == [0, 0, 0, 3, 6]
    ingest.ingest(split, "dev", lines, FAIL)  # the next poll's window overlaps the first
    assert sbhelpers.month_totals(split, "dev") == exp["sums"]
