"""Leaderboards: 30d/365d window edges, ranks with ties, cross-cluster merge, privacy (opt-out, < 3 jobs)."""

import datetime

import sbhelpers
from sbhelpers import FAIL

from slurmctl.scoreboard import derive, ingest, layout, model
from slurmctl.scoreboard.schemas import TUI_METRICS


def job(jid, user, end, elapsed=3600, cpus=1):
    return f"{jid}|||{elapsed}|{end}|{user}|COMPLETED|{cpus}|1|1M|cpu={cpus},node=1\n"


def board(root, scope, window, metric="jobs"):
    """{user: value} shown for ``metric``: from its leaderboard file, or the table's column for the
    metrics that have no leaderboard file of their own (jobs, memory sums)."""
    if metric in TUI_METRICS:
        rows = model.load_leaderboard(layout.leaderboard_file(root, scope, window, metric))["rows"]
        return {u: v for _r, u, v in rows}
    t = model.load_table(layout.table_file(root, scope, window))
    j = t["columns"].index(metric)
    return {u: v[j] for u, v in t["rows"].items()}


def test_rolling_window_edges(tmp_path):
    root = str(tmp_path)
    lines = [
        # 30d on 2026-11-30 = days 2026-11-01 .. 2026-11-30 (UTC)
        job(1, "w30", "2026-11-01T00:00:00"),  # first second inside
        job(2, "w30", "2026-11-30T11:00:00"),
        job(3, "w30", "2026-11-15T00:00:00"),
        job(4, "w30", "2026-10-31T23:59:59"),  # last second outside 30d, inside 365d
        # 365d on 2026-11-30 = days 2025-12-01 .. 2026-11-30
        job(5, "w365", "2025-12-01T00:00:00"),  # inside
        job(6, "w365", "2025-11-30T23:59:59"),  # outside (all-time only)
        job(7, "w365", "2026-06-01T00:00:00"),
        job(8, "w365", "2026-07-01T00:00:00"),
    ]
    ingest.ingest(root, "c1", sorted(lines, key=lambda ln: ln.split("|")[4]), FAIL)
    derive.derive(root, "c1", derive.Policy(min_jobs=1), now=datetime.datetime(2026, 11, 30, 12, 0, 0))
    assert board(root, "c1", "rolling-30d") == {"w30": 3}
    assert board(root, "c1", "rolling-365d") == {"w30": 4, "w365": 3}
    assert board(root, "c1", "alltime") == {"w30": 4, "w365": 4}


def test_ranks_ties_and_order():
    rows = derive.rank_rows([("b", 5.0), ("a", 5.0), ("c", 7.0), ("d", 1.0)])
    assert [(r["rank"], r["user"]) for r in rows] == [(1, "c"), (2, "a"), (2, "b"), (4, "d")]


def test_merge_across_clusters_counts_users_hidden_per_cluster(tmp_path):
    root = str(tmp_path)
    end = "2026-11-10T10:00:00"
    ingest.ingest(
        root,
        "c1",
        [job(1, "split", end), job(2, "split", end)] + [job(10 + i, "big", end) for i in range(5)],
        FAIL,
    )
    ingest.ingest(root, "c2", [job(1, "split", end, elapsed=60), job(2, "split", end, elapsed=60)], FAIL)
    now = datetime.datetime(2026, 11, 20)
    derive.derive(root, "c1", derive.Policy(), now=now, write_merged=False)
    derive.derive(root, "c2", derive.Policy(), now=now, write_merged=True)
    assert board(root, "c1", "alltime") == {"big": 5}  # 2 jobs: hidden on c1
    assert "split" not in board(root, "c2", "alltime")
    merged = board(root, "ALL", "alltime", "elapsed_hours")
    assert merged == {"big": 5.0, "split": round((7200 + 120) / 3600, 6)}  # 4 jobs across clusters
    lb = sbhelpers.load_json(layout.leaderboard_file(root, "ALL", "alltime", "elapsed_hours"))
    assert set(lb) == {"asof", "window", "metric", "cluster", "rows"} and lb["cluster"] == "ALL"
    assert set(lb["rows"][0]) == {"rank", "user", "value"}
    cols, rows, _asof = model.load_scope(root, "ALL", "365d")
    assert rows["split"][cols.index("jobs")] == 4


def test_opt_out_hides_user_everywhere(tmp_path):
    root = str(tmp_path)
    end = "2026-11-10T10:00:00"
    ingest.ingest(root, "c1", [job(i, "shy" if i < 5 else "loud", end) for i in range(10)], FAIL)
    derive.derive(root, "c1", derive.Policy(opt_out=["SHY"]), now=datetime.datetime(2026, 11, 20))
    assert board(root, "c1", "alltime") == {"loud": 5}
    assert board(root, "ALL", "rolling-30d") == {"loud": 5}
    roll = model.load_rollup(layout.rollup_file(root, "c1", "2026-11"))
    assert set(roll["users"]) == {"loud"}
    import os

    assert not os.path.exists(layout.user_file(root, "c1", "shy"))
    assert "shy" not in sbhelpers.read_text(layout.table_file(root, "ALL", "alltime"))


def test_window_sums_equal_the_days_added_one_by_one(tmp_path):
    """``windows_totals`` takes a month that a window covers whole from the month totals and the others
    day by day: the sums are those of every day inside the window, for windows ending on any day."""
    import io

    from slurmctl.scoreboard import store, synth

    root = str(tmp_path)
    for month, seed in (("2026-08", 1), ("2026-09", 2), ("2026-10", 3)):
        buf = io.StringIO()
        synth.generate(buf, 1500, month=month, n_users=40, seed=seed, first_job_id=seed * 100000)
        ingest.ingest(root, "c1", buf.getvalue().splitlines(True), FAIL)
    months = store.list_months(root, "c1")
    states = {m: store.read_state(layout.month_state(root, "c1", m), m) for m in months}
    for today in ("2026-09-01", "2026-09-30", "2026-10-01", "2026-10-15", "2026-11-02", "2027-09-01"):
        t = datetime.date.fromisoformat(today)
        windows = {"a": 1, "b": 30, "c": 45, "d": 365}
        got = derive.windows_totals(root, "c1", t, windows)
        for w, d in windows.items():
            first = (t - datetime.timedelta(days=d - 1)).isoformat()
            want = {}
            for month, st in states.items():
                for user, per_day in st.days.items():
                    for day, sums in per_day.items():
                        if first <= f"{month}-{day}" <= today:
                            acc = want.setdefault(user, [0] * len(sums))
                            for i, v in enumerate(sums):
                                acc[i] += v
            assert got[w] == want, (today, w)
