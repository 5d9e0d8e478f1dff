"""The poller's logic on a temp root: backfill resume, month close, retries, timeouts, rate limit, lock,
new users, retention. sacct is replaced by fake_sacct.py here (it replays a file the way slurmdbd selects
by end time); real Slurm is exercised in test_sb_slurm_integration.py."""

import datetime
import io
import json
import os
import subprocess
import sys

import pytest
import sbhelpers
from sbhelpers import BIN, cfg, month_totals, utc

from slurmctl.scoreboard import layout, synth
from slurmctl.scoreboard.errors import LockHeldError, SacctError
from slurmctl.scoreboard.jsonlog import JsonLog
from slurmctl.scoreboard.lock import PollLock
from slurmctl.scoreboard.poller import Poller
from slurmctl.scoreboard.ratelimit import TokenBucket


def add(acc, other):
    for u, s in other.items():
        a = acc.setdefault(u, [0] * 10)
        for i, v in enumerate(s):
            a[i] += v


def make_data(path, months=("2026-08", "2026-09", "2026-10"), n=800, extra=""):
    """Write synthetic months (distinct id ranges) to ``path``; return the exact expected totals."""
    expected = {}
    with open(path, "w") as fh:
        for i, month in enumerate(months):
            buf = io.StringIO()
            add(
                expected,
                synth.generate(
                    buf, n, month=month, n_users=60, seed=10 + i, first_job_id=1_000_000 * (i + 1)
                ),
            )
            fh.write(buf.getvalue())
        fh.write(extra)
    return expected


@pytest.fixture
def env(tmp_path, monkeypatch):
    data = str(tmp_path / "sacct.txt")
    monkeypatch.setenv("FAKE_SACCT_DATA", data)
    monkeypatch.setenv("FAKE_SACCT_LOG", str(tmp_path / "calls.jsonl"))
    root = str(tmp_path / "root")

    def calls():
        p = str(tmp_path / "calls.jsonl")
        return [json.loads(x) for x in open(p)] if os.path.exists(p) else []

    return root, data, calls, tmp_path


def poller(root, now, **over):
    over.setdefault("backfill_start", "2026-08-01")
    c = cfg(root, **over)
    return Poller(c, log=JsonLog("c1", None, stream=io.StringIO()), clock=lambda: now, sleep=lambda s: None)


def test_backfill_resumes_from_cursor_without_duplicates(env):
    root, data, calls, _ = env
    expected = make_data(data)
    now = utc(2026, 11, 2, 12, 0, 0)
    s1 = poller(root, now).poll(backfill_months=2)  # current month (Nov: empty) + Aug + Sep
    assert s1["backfilled_months"] == 2 and not s1["backfill_done"]
    cur = sbhelpers.load_json(layout.cursor_file(root, "c1"))
    assert cur["next_backfill_month"] == "2026-10"
    s2 = poller(root, now).poll(backfill_months=5)  # resume: October only
    assert s2["backfilled_months"] == 1 and s2["backfill_done"]
    assert month_totals(root, "c1") == expected
    s3 = poller(root, now).poll()  # nothing left: one call for the current month, no new jobs
    assert s3["jobs_new"] == 0 and s3["calls"] == 1
    argv = calls()[0]["argv"]
    assert calls()[0]["tz"] == "UTC"
    assert {"-a", "-n", "-P", "-D", "--noconvert", "-s"} <= set(argv)
    assert argv[argv.index("-s") + 1] == "BF,CA,CD,DL,F,NF,OOM,PR,TO,RQ"  # RQ: earlier runs of requeued jobs
    assert [c["argv"][c["argv"].index("-S") + 1 : c["argv"].index("-S") + 4 : 2] for c in calls()][:3] == [
        ["2026-11-01T00:00:00", "2026-11-02T12:00:00"],
        ["2026-08-01T00:00:00", "2026-08-31T23:59:59"],
        ["2026-09-01T00:00:00", "2026-09-30T23:59:59"],
    ]


def test_month_close_reads_the_rest_of_the_month_once(env):
    root, data, calls, _ = env
    expected = make_data(data, months=("2026-10",), n=1500)
    poller(root, utc(2026, 10, 15), backfill_start="2026-10-01").poll()
    mid = month_totals(root, "c1")
    assert 0 < sum(s[0] for s in mid.values()) < 1500
    s = poller(root, utc(2026, 11, 1, 0, 30), backfill_start="2026-10-01").poll()
    assert month_totals(root, "c1") == expected
    cur = sbhelpers.load_json(layout.cursor_file(root, "c1"))
    assert cur["current"]["month"] == "2026-11" and cur["last_complete_month"] == "2026-10"
    # month close started at last_end - overlap (15 min re-read, deduplicated), ended at the last second
    close = calls()[1]["argv"]
    assert (
        close[close.index("-S") + 1] == "2026-10-14T23:45:00"
        and close[close.index("-E") + 1] == "2026-10-31T23:59:59"
    )
    assert s["duplicates"] >= 0


def test_retries_with_backoff_then_success(env, monkeypatch):
    root, data, _calls, tmp = env
    expected = make_data(data, months=("2026-11",), n=300)
    monkeypatch.setenv("FAKE_SACCT_COUNTER", str(tmp / "n"))
    monkeypatch.setenv("FAKE_SACCT_FAIL_FIRST", "2")
    slept = []
    p = poller(
        root, utc(2026, 11, 30, 23), backfill_start="2026-11-01", sacct_retries=3, backoff_base_sec=10.0
    )
    p.sacct.sleep = slept.append
    s = p.poll()
    assert s["calls"] == 3 and len(slept) == 2
    assert 9.0 <= slept[0] <= 11.0 and 18.0 <= slept[1] <= 22.0  # exponential backoff with +-10 % jitter
    assert month_totals(root, "c1") == expected


def test_persistent_failure_raises_keeps_cursor_and_records_health(env, monkeypatch):
    root, data, _calls, tmp = env
    make_data(data, months=("2026-11",), n=50)
    monkeypatch.setenv("FAKE_SACCT_COUNTER", str(tmp / "n"))
    monkeypatch.setenv("FAKE_SACCT_FAIL_FIRST", "100")
    with pytest.raises(SacctError, match="Connection refused"):
        poller(root, utc(2026, 11, 30), backfill_start="2026-11-01", sacct_retries=1).poll()
    cur = sbhelpers.load_json(layout.cursor_file(root, "c1"))  # nothing advanced; the read is noted
    assert cur["current"]["last_end"] is None and cur["in_progress"]["phase"] == "current"
    health = sbhelpers.load_json(layout.health_file(root, "c1"))
    assert "Connection refused" in health["last_error"]["message"] and "last_success" not in health
    assert not os.path.exists(layout.lock_file(root, "c1"))  # released on error


def test_timeout_kills_sacct_and_commits_nothing(env, monkeypatch):
    root, data, _calls, _ = env
    make_data(data, months=("2026-11",), n=50)
    monkeypatch.setenv("FAKE_SACCT_SLEEP", "30")
    with pytest.raises(SacctError, match="timed out"):
        poller(
            root, utc(2026, 11, 30), backfill_start="2026-11-01", sacct_retries=0, sacct_timeout_sec=0.5
        ).poll()
    assert month_totals(root, "c1") == {}


def test_token_bucket_limits_calls_across_processes(tmp_path):
    clock = [1000.0]
    slept = []

    def sleep(s):
        slept.append(s)
        clock[0] += s

    path = str(tmp_path / "rl.json")
    b = TokenBucket(2, path=path, clock=lambda: clock[0], sleep=sleep)
    for _ in range(2):
        b.acquire()  # burst of 2
    assert slept == []
    b2 = TokenBucket(2, path=path, clock=lambda: clock[0], sleep=sleep)  # a later cron run shares the bucket
    b2.acquire()
    b2.acquire()
    assert [round(s, 6) for s in slept] == [30.0, 30.0]  # 2 per minute
    clock[0] += 600
    b3 = TokenBucket(2, path=path, clock=lambda: clock[0], sleep=sleep)
    b3.acquire()
    b3.acquire()
    assert len(slept) == 2  # refilled to the burst, no more


def test_second_poller_exits_when_lock_held(env):
    root, data, _calls, _ = env
    make_data(data, months=("2026-11",), n=10)
    with PollLock(layout.lock_file(root, "c1")):
        with pytest.raises(LockHeldError):
            poller(root, utc(2026, 11, 30), backfill_start="2026-11-01").poll()
        r = subprocess.run(
            [
                sys.executable,
                BIN,
                "poll",
                "--once",
                "--root",
                root,
                "--cluster",
                "c1",
                "--sacct",
                sbhelpers.FAKE_SACCT,
                "--config",
                os.path.join(root, "none.yaml"),
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 75 and "another poller holds" in r.stderr and "Traceback" not in r.stderr


def test_stale_lock_of_dead_process_is_taken_over(env):
    root, data, _calls, _ = env
    make_data(data, months=("2026-11",), n=10)
    path = layout.lock_file(root, "c1")
    os.makedirs(os.path.dirname(path))
    import socket

    with open(path, "w") as fh:
        fh.write(f"999999 {socket.gethostname()} 0\n")  # pid 999999 does not exist
    poller(root, utc(2026, 11, 30), backfill_start="2026-11-01").poll()
    assert not os.path.exists(path)


NEWBIE = "".join(
    f"{jid}|||3600|{end}|newbie|COMPLETED|2|1|1000M|cpu=2,mem=1000M,node=1\n"
    f"{jid}.batch|1000000|500000|3600|{end}||COMPLETED|2|1||cpu=2,mem=1000M,node=1\n"
    for jid, end in (
        (9_000_001, "2026-08-05T10:00:00"),
        (9_000_002, "2026-09-05T10:00:00"),
        (9_000_003, "2026-11-02T10:00:00"),
    )
)


def test_new_user_gets_one_user_scoped_backfill_and_no_double_count(env):
    root, data, calls, _ = env
    expected = make_data(data, extra=NEWBIE)
    expected["newbie"] = [3, 0, 0, 3 * 3600, 3 * 7200, 0, 0, 3 * 1000 * 1024**2, 3 * 500000, 3 * 1000000]
    poller(root, utc(2026, 11, 1, 12)).poll(backfill_months=0)  # registry created
    poller(root, utc(2026, 11, 3, 0)).poll(backfill_months=0)  # newbie's Nov job arrives: queued + backfilled
    totals = month_totals(root, "c1")
    assert totals["newbie"] == expected["newbie"]  # history from the not-yet-backfilled months is there
    user_calls = [c["argv"] for c in calls() if "-u" in c["argv"]]
    assert len(user_calls) == 1
    u = user_calls[0]
    assert u[u.index("-u") + 1] == "newbie" and u[u.index("-S") + 1] == "2026-08-01T00:00:00"
    assert u[u.index("-E") + 1] == "2026-10-31T23:59:59"  # only months the global backfill has not read
    poller(root, utc(2026, 11, 3, 1)).poll(backfill_months=10)  # global backfill reads Aug-Oct
    assert month_totals(root, "c1") == expected  # newbie's Aug/Sep jobs were not counted twice
    reg = sbhelpers.load_json(layout.users_registry(root, "c1"))
    assert reg["queue"] == [] and "newbie" in reg["users"]


def test_retention_archives_old_months_and_keeps_alltime(env):
    root, data, _calls, _ = env
    expected = make_data(data, months=("2022-01", "2022-02", "2025-06"), n=200)
    from slurmctl.scoreboard import derive, ingest, store

    ingest.ingest(root, "c1", sbhelpers.read_lines(data), sbhelpers.FAIL)  # months already read earlier
    now = utc(2026, 11, 2)
    p = poller(root, now, backfill_start="2026-11-01")
    p.poll()  # the poll prunes what is older than 36 months
    months = store.list_months(root, "c1")
    assert "2022-01" not in months and "2022-02" not in months and "2025-06" in months
    assert not os.path.exists(layout.bloom_file(root, "c1", "2022-01"))
    assert not os.path.exists(layout.rollup_file(root, "c1", "2022-01"))
    assert month_totals(root, "c1") == expected  # per-user totals are kept forever (archive.json)
    archive = sbhelpers.load_json(layout.archive_file(root, "c1"))
    assert archive["months"] == ["2022-01", "2022-02"]
    alltime = sbhelpers.load_json(layout.table_file(root, "c1", "alltime"))
    shown = {row[0]: row[1] for row in alltime["rows"]}
    assert all(shown[u] == expected[u][0] for u in shown) and shown
    assert derive.derived_is_current(root, "c1")


def test_cli_backfill_bloom_stats_and_daemon(env, monkeypatch):
    root, data, _calls, _ = env
    make_data(data, months=("2026-08", "2026-09"), n=300)
    base = [
        "--root",
        root,
        "--cluster",
        "c1",
        "--config",
        "/nonexistent.yaml",
    ]
    fake = ["--sacct", sbhelpers.FAKE_SACCT]
    monkeypatch.setenv("SLURM_SB_BACKFILL_START", "2026-08-01")
    monkeypatch.setenv("SLURM_SB_RATE_LIMIT_PER_MIN", "600")
    monkeypatch.setenv("SLURM_SB_BACKFILL_SLEEP_SEC", "0.01")
    monkeypatch.setenv("SLURM_SB_HOME_DIR", "")

    def run(*args):
        return subprocess.run([sys.executable, BIN, *args, *base], capture_output=True, text=True)

    r = run("backfill", "--months", "1", *fake)
    assert r.returncode == 0 and "1 months read" in r.stdout, r.stderr
    assert sbhelpers.load_json(layout.cursor_file(root, "c1"))["next_backfill_month"] == "2026-09"
    r = run("bloom", "stats", "--month", "2026-08")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["n"] == stats["exact_ids"] == 300 and stats["k"] == 1 and 0 < stats["fill_ratio"] < 0.5
    r = run("bloom", "stats", "--month", "2026-09")
    assert r.returncode == 2 and "has not been read yet" in r.stderr
    monkeypatch.setenv("SLURM_SB_POLL_INTERVAL_SEC", "1")
    proc = subprocess.Popen(
        [sys.executable, BIN, "daemon", "--quiet", *fake, *base], stderr=subprocess.PIPE, text=True
    )
    try:
        import time

        deadline = time.time() + 60
        while time.time() < deadline:
            cur = layout.cursor_file(root, "c1")
            if os.path.exists(cur) and sbhelpers.load_json(cur)["next_backfill_month"] is None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()  # still running: a daemon
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert sbhelpers.load_json(layout.cursor_file(root, "c1"))["next_backfill_month"] is None
    assert sum(s[0] for s in month_totals(root, "c1").values()) == 600


def test_home_listing_filters_names_and_uids(tmp_path):
    from slurmctl.scoreboard import discover

    if os.geteuid() != 0:
        pytest.skip("needs root to chown test directories")
    home = tmp_path / "home"
    for name in ("alice", "bob", "lost+found", ".snapshot", "Bad Name"):
        (home / name).mkdir(parents=True)
    os.chown(str(home / "bob"), 50, 50)  # a system account
    os.chown(str(home / "alice"), 23456, 23456)
    assert discover.home_users(str(home), 1000) == {"alice"}
    assert discover.home_users(str(home), 1000, known={"alice"}) == set()
    assert (
        discover.home_users("", 1000) == set() and discover.home_users(str(tmp_path / "none"), 1000) == set()
    )


def test_the_cron_example_runs_on_a_fresh_root(env):
    """examples/scoreboard/crontab's command, run by sh as cron would, on a root that does not exist yet
    (sh opens the 2>> file before the poller runs: without the mkdir the first run never happens)."""
    _root, data, calls, tmp = env
    now = datetime.datetime.utcnow()
    make_data(data, months=(now.strftime("%Y-%m"),), n=20)
    crontab = os.path.join(
        os.path.dirname(os.path.dirname(sbhelpers.HERE)), "examples", "scoreboard", "crontab"
    )
    with open(crontab) as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip() and not ln.startswith("#")]
    sb_line = next(ln for ln in lines if ln.startswith("SB="))
    job = next(ln for ln in lines if not ln.startswith("SB="))
    command = job.split(None, 5)[5]  # after the five time fields
    assert sb_line and "poll --once" in command
    sb = str(tmp / "depot")
    os.makedirs(sb)
    os.symlink(os.path.dirname(os.path.dirname(sbhelpers.HERE)), os.path.join(sb, "checkout"))
    shims = tmp / "bin"
    shims.mkdir()
    (shims / "sacct").write_text(f'#!/bin/sh\nexec {sys.executable} {sbhelpers.FAKE_SACCT} "$@"\n')
    (shims / "sacct").chmod(0o755)
    env_vars = dict(
        os.environ,
        SB=sb,
        HOME=str(tmp / "home"),
        PATH=f"{shims}:{os.environ['PATH']}",
        SLURM_SB_BACKFILL_START=now.strftime("%Y-%m-01"),
        SLURM_SB_RATE_LIMIT_PER_MIN="600",
        SLURM_SB_LAG_SEC="0",
        SLURM_SB_HOME_DIR="",
    )
    r = subprocess.run(["/bin/sh", "-c", command], env=env_vars, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert os.path.exists(os.path.join(sb, "clusters", "hammer", "state", "poll_cursor.json"))
    assert r.stderr == "" and len(calls()) == 1  # the current month, one sacct call


LATE = "7000001|||600|2026-10-15T10:00:00|latecomer|COMPLETED|1|1|100M|cpu=1,mem=100M,node=1\n"


def test_a_record_that_reaches_slurmdbd_late_is_read_by_the_month_recheck(env):
    """slurmctld queues job records while it cannot reach slurmdbd and sends them later; sacct answered
    meanwhile. The month is read whole once more recheck_after_sec after its end, and only once."""
    root, data, calls, _ = env
    expected = make_data(data, months=("2026-10",), n=200)
    over = {"backfill_start": "2026-10-01", "recheck_after_sec": 2 * 86400}
    poller(root, utc(2026, 10, 20), **over).poll()
    poller(root, utc(2026, 11, 1, 0, 30), **over).poll()  # closes October, schedules its recheck
    cur = sbhelpers.load_json(layout.cursor_file(root, "c1"))
    assert cur["recheck"] == [{"month": "2026-10", "after": "2026-11-03T00:00:00Z"}]
    assert cur["last_complete_month"] == "2026-10" and cur["in_progress"] is None
    with open(data, "a") as fh:
        fh.write(LATE)  # arrives now, with an End long before the live window's overlap
    poller(root, utc(2026, 11, 2), **over).poll()
    assert "latecomer" not in month_totals(root, "c1")
    n = len(calls())
    s = poller(root, utc(2026, 11, 3, 0, 10), **over).poll()
    assert s["rechecked_months"] == 1 and len(calls()) == n + 2  # the recheck + the live window
    expected["latecomer"] = [1, 0, 0, 600, 600, 0, 0, 100 * 1024**2, 0, 0]
    assert month_totals(root, "c1") == expected  # the late job once, nothing else twice
    assert sbhelpers.load_json(layout.cursor_file(root, "c1"))["recheck"] == []
    assert poller(root, utc(2026, 11, 4), **over).poll()["rechecked_months"] == 0


def test_backfill_sets_last_complete_month_and_a_failed_read_leaves_in_progress(env, monkeypatch):
    root, data, _calls, tmp = env
    make_data(data)
    poller(root, utc(2026, 11, 20)).poll(backfill_months=2)
    cur = sbhelpers.load_json(layout.cursor_file(root, "c1"))
    assert cur["last_complete_month"] == "2026-09" and cur["in_progress"] is None
    assert cur["recheck"] == []  # months backfilled long after their end need no recheck
    monkeypatch.setenv("FAKE_SACCT_COUNTER", str(tmp / "n"))
    monkeypatch.setenv("FAKE_SACCT_FAIL_FIRST", "100")
    with pytest.raises(SacctError):
        poller(root, utc(2026, 11, 21), sacct_retries=0).poll()
    cur = sbhelpers.load_json(layout.cursor_file(root, "c1"))
    assert cur["in_progress"]["phase"] == "current" and cur["in_progress"]["since"] == "2026-11-21T00:00:00Z"


@pytest.mark.parametrize(
    "field, value",
    [
        ("backfill_start", None),
        ("backfill_start", 2026),
        ("next_backfill_month", "2026-13-01"),
        ("last_complete_month", 5),
        ("recheck", {"month": "2026-10"}),
        ("recheck", [{"month": "2026-10", "after": "soon"}]),
        ("recheck", KeyError),  # a field missing: no other cursor format was released
        ("in_progress", KeyError),
        ("version", 2),
    ],
)
def test_damaged_cursor_is_a_format_error_naming_the_field(env, field, value):
    root, data, _calls, _ = env
    make_data(data, months=("2026-11",), n=10)
    poller(root, utc(2026, 11, 20), backfill_start="2026-11-01").poll()
    path = layout.cursor_file(root, "c1")
    cur = sbhelpers.load_json(path)
    if value is KeyError:
        del cur[field]
    else:
        cur[field] = value
    with open(path, "w") as fh:
        json.dump(cur, fh)
    argv = ["poll", "--once", "--root", root, "--cluster", "c1", "--sacct", sbhelpers.FAKE_SACCT]
    r = subprocess.run(
        [sys.executable, BIN, *argv, "--config", os.path.join(root, "none.yaml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert "poll_cursor.json" in r.stderr and field in r.stderr


def test_opting_out_between_polls_removes_the_user_from_every_file(env):
    """A poll rewrites only the months and users it touched, unless the policy changed: a name added to
    config/optout.txt must disappear from the user's own file and the rollups at the next poll, not
    only from the leaderboards (and not only after a `rebuild`)."""
    root, data, _calls, _ = env
    make_data(data, months=("2026-10",), n=300)
    poller(root, utc(2026, 11, 5), backfill_start="2026-10-01").poll(backfill_months=5)
    shy = "u00000"  # the busiest synthetic user
    assert os.path.exists(layout.user_file(root, "c1", shy))
    os.makedirs(os.path.join(root, "config"), exist_ok=True)
    with open(os.path.join(root, "config", "optout.txt"), "a") as fh:
        fh.write(f"# asked on 2026-11-06\n{shy}\n")
    poller(root, utc(2026, 11, 6), backfill_start="2026-10-01").poll()
    assert not os.path.exists(layout.user_file(root, "c1", shy))
    for path in (
        layout.rollup_file(root, "c1", "2026-10"),
        layout.table_file(root, "c1", "alltime"),
        layout.table_file(root, "ALL", "rolling-30d"),
        layout.leaderboard_file(root, "c1", "alltime", "clock_hours"),
    ):
        assert f'"{shy}"' not in sbhelpers.read_text(path), path


def test_stale_temps_are_swept_by_the_next_poll_and_doctor_reports_what_a_failed_poll_left(env, monkeypatch):
    root, data, _calls, tmp = env
    make_data(data, months=("2026-11",), n=30)
    poller(root, utc(2026, 11, 20), backfill_start="2026-11-01").poll()
    users = layout.users_dir(root, "c1")
    old, fresh = os.path.join(users, ".tmp-u1.json.dead"), os.path.join(users, ".tmp-u2.json.live")
    for p in (old, fresh):
        with open(p, "w") as fh:
            fh.write("{")
    os.utime(old, (0, 0))  # written by a poller that died long ago
    doctor = [sys.executable, BIN, "doctor", "--root", root, "--config", os.path.join(root, "none.yaml")]
    out = subprocess.run(doctor, capture_output=True, text=True).stdout
    assert "1 stale temp file " in out and old in out and "errors logged" not in out
    monkeypatch.setenv("FAKE_SACCT_COUNTER", str(tmp / "n"))
    monkeypatch.setenv("FAKE_SACCT_FAIL_FIRST", "100")
    now = datetime.datetime.utcnow()
    with pytest.raises(SacctError):
        # a real log file this time (the doctor reads it), the clock of today
        c = cfg(root, backfill_start="2026-11-01", sacct_retries=0)
        Poller(c, log=JsonLog("c1", layout.log_file(root, "c1"), quiet=True), clock=now.timestamp).poll()
    assert not os.path.exists(old) and os.path.exists(fresh)  # swept before the failing read
    out = subprocess.run(doctor, capture_output=True, text=True).stdout
    assert "1 error logged in the last 24 h" in out and "Connection refused" in out, out
    assert "the last poll stopped during its month-close read" in out, out


def _gone(pid):
    """True when ``pid`` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_timeout_stops_a_wrapper_script_and_its_hung_child(tmp_path):
    """A site's ``sacct`` is often a shell wrapper: at the timeout its whole process group is killed, so a
    hung child holding sacct's stdout does not keep the poll (and its lock) waiting for it."""
    shim = tmp_path / "bin"
    shim.mkdir()
    pidfile = tmp_path / "child.pid"
    (shim / "sacct").write_text(f'#!/bin/sh\nsleep 60 &\necho $! > "{pidfile}"\nwait\n')
    (shim / "sacct").chmod(0o755)
    root = str(tmp_path / "root")
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", SLURM_SB_SACCT_TIMEOUT_SEC="1")
    env.update(SLURM_SB_SACCT_RETRIES="0", SLURM_SB_RATE_LIMIT_PER_MIN="6000", SLURM_SB_HOME_DIR="")
    month = datetime.datetime.utcnow().strftime("%Y-%m")
    cmd = [sys.executable, BIN, "poll", "--once", "--quiet", "--root", root, "--cluster", "c1"]
    cmd += ["--config", str(tmp_path / "none.yaml"), "--backfill-start", month]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _out, err = proc.communicate(timeout=1 + 10)  # generous: only a hang detector
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the poll waited for the wrapper's hung child past the sacct timeout")
    finally:
        if pidfile.exists() and not _gone(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), 9)
    assert proc.returncode == 7, err
    assert "sacct failed once; last error: sacct timed out after 1 s" in err, err
    assert _gone(int(pidfile.read_text()))
    assert not os.path.exists(layout.lock_file(root, "c1"))
