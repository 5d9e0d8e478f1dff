"""Damaged files under the root: every command names the file (and field) and exits non-zero, never with
a traceback or an "internal error". One real poll builds the root; each test damages a copy of it."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import sbhelpers
from sbhelpers import BIN

from slurmctl.scoreboard import cli, humanize, layout
from slurmctl.scoreboard.derive import rank_rows

TUI_BIN = os.path.join(sbhelpers.REPO, "bin", "slurm-sb-tui")
NOCONF = ("--config", "/nonexistent.yaml")
POLL_ENV = {
    "FAKE_SACCT_DATA": sbhelpers.golden("handmade.sacct"),
    "SLURM_SB_HOME_DIR": "",
    "SLURM_SB_LAG_SEC": "0",
    "SLURM_SB_RATE_LIMIT_PER_MIN": "6000",
}


def run(*args, env=None, binary=BIN):
    e = dict(os.environ)
    e.update(POLL_ENV)
    e.update(env or {})
    return subprocess.run([sys.executable, binary, *args], capture_output=True, text=True, env=e, cwd="/")


def poll(root, *extra, env=None):
    return run(
        "poll", "--once", "--quiet", "--root", root, "--cluster", "c1", "--sacct", sbhelpers.FAKE_SACCT,
        *NOCONF, *extra, env=env,
    )  # fmt: skip


def doctor(root):
    return run("doctor", "--root", root, *NOCONF)


def clean(r):
    """The process printed no traceback and no "internal error"."""
    out = r.stdout + r.stderr
    return "Traceback" not in out and "internal error" not in out


@pytest.fixture(scope="module")
def polled(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("polled") / "root")
    r = poll(root, "--backfill-start", "2026-10-01")
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture
def root(polled, tmp_path):
    copy = str(tmp_path / "root")
    shutil.copytree(polled, copy)
    return copy


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w" if isinstance(text, str) else "wb") as fh:
        fh.write(text)
    return path


def state(root, name):
    return os.path.join(layout.state_dir(root, "c1"), name)


# ---------------------------------------------------------------- leaderboard and table values

BAD_VALUES = ["1e400", "Infinity", "-Infinity", "NaN", "1" + "0" * 400]


@pytest.mark.parametrize("value", BAD_VALUES, ids=["1e400", "Infinity", "-Infinity", "NaN", "huge-int"])
def test_non_finite_leaderboard_value_is_named_by_tui_and_cli(root, value):
    path = layout.leaderboard_file(root, "c1", "alltime", "clock_hours")
    row = '{"rank":1,"user":"bob","value":' + value + "}"
    write(path, '{"asof":"x","window":"alltime","metric":"clock_hours","cluster":"c1","rows":[' + row + "]}")
    r = run("--root", root, "--cluster", "c1", "--once", binary=TUI_BIN)
    assert r.returncode == 0 and clean(r) and f"skipped {path}" in r.stderr, r.stderr
    r = run("leaderboard", "--root", root, "--cluster", "c1", *NOCONF)
    assert r.returncode == 3 and clean(r) and path in r.stderr, r.stderr
    assert "rows[0].value" in r.stderr or value in r.stderr


def test_deeply_nested_leaderboard_is_named_by_tui_and_cli(root):
    path = write(layout.leaderboard_file(root, "c1", "alltime", "clock_hours"), "[" * 100000 + "]" * 100000)
    r = run("--root", root, "--cluster", "c1", "--once", binary=TUI_BIN)
    assert r.returncode == 0 and clean(r) and f"skipped {path}" in r.stderr, r.stderr
    r = run("leaderboard", "--root", root, "--cluster", "c1", *NOCONF)
    assert r.returncode == 3 and clean(r) and path in r.stderr and "nested" in r.stderr, r.stderr


def test_leaderboard_without_a_metric_field_is_named_by_tui(root):
    path = write(
        layout.leaderboard_file(root, "c1", "alltime", "clock_hours"),
        '{"asof": "x", "window": "alltime", "rows": []}',
    )
    r = run("--root", root, "--cluster", "c1", "--once", binary=TUI_BIN)
    assert r.returncode == 0 and clean(r) and f"skipped {path}" in r.stderr and "'metric'" in r.stderr, (
        r.stderr
    )


@pytest.mark.parametrize("value", ["1e400", "NaN", "1" + "0" * 400], ids=["1e400", "NaN", "huge-int"])
def test_non_finite_table_value_is_named(root, value):
    path = layout.table_file(root, "c1", "alltime")
    table = sbhelpers.load_json(path)
    table["rows"][0][1] = "@"
    write(path, json.dumps(table).replace('"@"', value))
    r = run("leaderboard", "--root", root, "--cluster", "c1", "--metric", "jobs", *NOCONF)
    assert r.returncode == 3 and clean(r) and path in r.stderr, r.stderr
    assert "rows[0][1]" in r.stderr or value in r.stderr


def test_humanize_never_raises():
    assert humanize.number(float("nan")) == "nan"
    assert humanize.number(float("inf")) == "inf" and humanize.number(float("-inf")) == "-inf"
    assert humanize.number(10**400) == "inf" and humanize.number(-(10**400)) == "-inf"
    assert humanize.xp("clock_hours", 1e308) == "1.00e308 CPU-h"


# ---------------------------------------------------------------- state files the poller reads


def test_users_registry_with_a_bad_queue_is_named(root):
    path = write(state(root, "users.json"), '{"users": {}, "queue": 5}')
    r = poll(root)
    assert r.returncode == 3 and clean(r) and path in r.stderr and "'queue'" in r.stderr, r.stderr


def test_derived_marker_that_is_a_list_means_rederive(root):
    write(state(root, "derived.json"), "[1, 2]")
    r = doctor(root)
    assert r.returncode == 0 and clean(r) and "WARN [c1] derived files" in r.stdout, r.stdout + r.stderr
    r = poll(root)
    assert r.returncode == 0 and clean(r), r.stderr
    assert isinstance(sbhelpers.load_json(state(root, "derived.json")), dict)


@pytest.mark.parametrize(
    "archive,field",
    [
        ('{"months": [], "users": {}, "span": 5}', "'span'"),
        ('{"months": [], "users": {}}', "'span'"),
        ('{"months": [], "users": {}, "span": {"bob": 5}}', "span.bob"),
        ('{"months": [[1]], "users": {}}', "'months'"),
    ],
)
def test_archive_with_bad_fields_is_named(root, archive, field):
    path = write(state(root, "archive.json"), archive)
    r = poll(root)
    assert r.returncode == 3 and clean(r) and path in r.stderr and field in r.stderr, r.stderr


@pytest.mark.parametrize("users", ['{"a": 5}', '{"a": [1, 2]}', '{"a": ["x",0,0,0,0,0,0,0,0,0]}'])
def test_other_clusters_bad_full_totals_are_named(root, users):
    path = write(
        os.path.join(layout.state_dir(root, "c2"), "totals-alltime.json"), '{"users": ' + users + "}"
    )
    r = poll(root)
    assert r.returncode == 3 and clean(r) and path in r.stderr and "users.a" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ['"x"', "-5", "true", "1.5"])
def test_month_state_header_with_bad_sizes_is_named(root, value):
    path = layout.month_state(root, "c1", "2026-10")
    with open(path, "rb") as fh:
        magic, header, rest = fh.read().split(b"\n", 2)
    fields = json.loads(header)
    fields["ids_bytes"] = "@"
    damaged = json.dumps(fields).replace('"@"', value).encode()
    write(path, magic + b"\n" + damaged + b"\n" + rest)
    r = poll(root)
    assert r.returncode == 3 and clean(r) and path in r.stderr and "ids_bytes" in r.stderr, r.stderr
    r = doctor(root)
    assert r.returncode == 1 and clean(r) and f"FAIL [c1] {path}" in r.stdout, r.stdout + r.stderr


def test_month_state_header_sizes_beyond_the_file_are_named(root):
    path = layout.month_state(root, "c1", "2026-10")
    with open(path, "rb") as fh:
        magic, header, rest = fh.read().split(b"\n", 2)
    fields = json.loads(header)
    fields["totals_bytes"] = 1 << 62
    write(path, magic + b"\n" + json.dumps(fields).encode() + b"\n" + rest)
    r = poll(root)
    assert r.returncode == 3 and clean(r) and path in r.stderr and "truncated totals" in r.stderr, r.stderr


def test_a_directory_in_place_of_a_month_state_is_named(root):
    path = layout.month_state(root, "c1", "2026-09")
    os.makedirs(path)
    r = run("rebuild", "--root", root, "--cluster", "c1", *NOCONF)
    assert r.returncode == 3 and clean(r) and path in r.stderr, r.stderr


def test_optout_that_is_not_utf8_is_named(root):
    path = write(os.path.join(root, "config", "optout.txt"), b"bob\n\xff\xfe\n")
    r = poll(root)
    assert r.returncode == 3 and clean(r) and path in r.stderr and "UTF-8" in r.stderr, r.stderr


# ---------------------------------------------------------------- doctor


def test_doctor_fails_on_a_lock_that_is_a_directory(root):
    os.makedirs(state(root, "lock.pid"))
    r = doctor(root)
    assert r.returncode == 1 and clean(r) and f"FAIL [c1] lock {state(root, 'lock.pid')}" in r.stdout, (
        r.stdout
    )


@pytest.mark.parametrize(
    "health,field",
    [
        ("[1]", "top level"),
        ('{"last_success": 5}', "'last_success'"),
        ('{"last_success": "yesterday"}', "'last_success'"),
        ('{"last_success": "2026-10-01T00:00:00Z", "last_error": "boom"}', "'last_error'"),
    ],
)
def test_doctor_fails_on_a_bad_health_file(root, health, field):
    path = write(state(root, "health.json"), health)
    r = doctor(root)
    assert r.returncode == 1 and clean(r), r.stdout + r.stderr
    assert any(ln.startswith("FAIL") and path in ln and field in ln for ln in r.stdout.splitlines()), r.stdout


def test_doctor_reports_a_stray_month_state_and_goes_on(root):
    path = write(layout.month_state(root, "c1", "2026-13"), "junk\n")
    r = doctor(root)
    assert r.returncode == 1 and clean(r), r.stdout + r.stderr
    assert f"FAIL [c1] {path}" in r.stdout and "derived files" in r.stdout, r.stdout


def test_a_month_state_of_an_older_version_stops_the_poll_with_how_to_rebuild_it(root):
    path = layout.month_state(root, "c1", "2026-10")
    with open(path, "rb") as fh:
        image = fh.read()
    write(path, image.replace(b"SLURMSB-MONTH 3\n", b"SLURMSB-MONTH 2\n", 1))
    r = run("rebuild", "--root", root, "--cluster", "c1", *NOCONF)
    assert r.returncode == 3 and clean(r), r.stdout + r.stderr
    assert f"{path}: month state format version 2; this slurm-sb reads version 3 only" in r.stderr
    assert "hint: re-ingest the month" in r.stderr and "slurm-sb backfill --cluster c1" in r.stderr
    r = doctor(root)
    assert r.returncode == 1 and f"FAIL [c1] {path}: month state format version 2" in r.stdout, r.stdout


# ---------------------------------------------------------------- settings and the daemon


@pytest.mark.parametrize(
    "var,value",
    [
        ("SLURM_SB_BACKFILL_SLEEP_SEC", "1e309"),
        ("SLURM_SB_BACKFILL_SLEEP_SEC", "nan"),
        ("SLURM_SB_SACCT_TIMEOUT_SEC", "1e12"),
        ("SLURM_SB_POLL_INTERVAL_SEC", "1" + "0" * 30),
    ],
)
def test_unbounded_sleeps_and_timeouts_are_refused(root, var, value):
    r = run("config", "--root", root, "--cluster", "c1", *NOCONF, env={var: value})
    assert r.returncode == 2 and clean(r) and "$" + var in r.stderr, r.stderr


def test_daemon_logs_an_unexpected_error_and_goes_on(tmp_path, monkeypatch, capsys):
    from slurmctl.scoreboard import poller

    polls = []

    def bad_poll(self, backfill_months=None):
        polls.append(1)
        raise ValueError("boom")

    def sleep(sec):
        if len(polls) >= 2:
            raise KeyboardInterrupt  # ends the loop the way ^C does
        assert sec >= 1.0

    monkeypatch.setattr(poller.Poller, "poll", bad_poll)
    monkeypatch.setattr(cli.time, "sleep", sleep)
    code = cli.main(["daemon", "--quiet", "--root", str(tmp_path), "--cluster", "c1", *NOCONF])
    err = capsys.readouterr().err
    assert code == 130 and len(polls) == 2 and "Traceback" not in err, err
    records = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    assert len(records) == 2 and all(
        r["level"] == "error" and r["error_type"] == "ValueError" for r in records
    )
    assert "boom" in records[0]["msg"]


# ---------------------------------------------------------------- slurm-sb leaderboard


@pytest.mark.parametrize("scope", ["c1", "ALL"])
@pytest.mark.parametrize("metric", ["jobs", "sum_max_mem_mb", "clock_hours"])
def test_leaderboard_json_serves_every_metric(root, scope, metric):
    r = run("leaderboard", "--root", root, "--cluster", scope, "--metric", metric, "--json", *NOCONF)
    assert r.returncode == 0 and clean(r), r.stderr
    doc = json.loads(r.stdout)
    table = sbhelpers.load_json(layout.table_file(root, scope, "alltime"))
    j = table["columns"].index(metric) + 1
    assert doc["metric"] == metric and doc["window"] == "alltime" and doc["cluster"] == scope
    assert doc["rows"] == rank_rows([(row[0], row[j]) for row in table["rows"]]) and doc["rows"]
    if metric == "jobs":  # bob and carol have 3 jobs each: one rank, users in name order
        assert [(x["rank"], x["user"]) for x in doc["rows"]] == [(1, "bob"), (1, "carol")]


def test_leaderboard_json_refuses_a_damaged_board(root):
    path = write(layout.leaderboard_file(root, "c1", "alltime", "clock_hours"), '{"rows": 5}')
    r = run("leaderboard", "--root", root, "--cluster", "c1", "--json", *NOCONF)
    assert r.returncode == 3 and clean(r) and path in r.stderr and not r.stdout, r.stderr


def test_leaderboard_limit(root):
    base = ("leaderboard", "--root", root, "--cluster", "c1", "--metric", "jobs", *NOCONF)
    r = run(*base, "--limit", "-1")
    assert r.returncode == 2 and clean(r) and "--limit" in r.stderr, r.stderr
    r = run(*base, "--limit", "1")
    assert r.returncode == 0 and "bob" in r.stdout and "carol" not in r.stdout, r.stdout + r.stderr
    r = run(*base, "--limit", "0")  # 0 prints the heading only, as before
    assert r.returncode == 0 and "Rank" in r.stdout and "bob" not in r.stdout, r.stdout + r.stderr
    r = run(*base)
    assert r.returncode == 0 and "bob" in r.stdout and "carol" in r.stdout, r.stdout + r.stderr


def test_bloom_stats_on_a_missing_root_says_so(tmp_path):
    missing = str(tmp_path / "missing")
    r = run("bloom", "stats", "--root", missing, "--cluster", "c1", "--month", "2026-10", *NOCONF)
    assert r.returncode == 2 and clean(r) and missing in r.stderr and "does not exist" in r.stderr, r.stderr


def test_unreadable_optout_list_stops_the_poller_rather_than_show_the_users(tmp_path):
    """An opt-out list that cannot be read (here a directory) must not count as an empty list."""
    from slurmctl.scoreboard import config as sbconfig
    from slurmctl.scoreboard.errors import FormatError

    os.makedirs(str(tmp_path / "config" / "optout.txt"))
    with pytest.raises(FormatError, match=r"optout\.txt: cannot read the opt-out list"):
        sbconfig.read_optout(str(tmp_path))


def test_archive_span_and_nesting_are_checked_for_every_reader(tmp_path):
    """store.read_archive (used by retention as well as derive) names the file and the field."""
    from slurmctl.scoreboard import layout, store
    from slurmctl.scoreboard.errors import FormatError

    path = layout.archive_file(str(tmp_path), "c1")
    os.makedirs(os.path.dirname(path))
    for text, what in (
        ('{"months": [], "users": {}, "span": 5}', "field 'span'"),
        ('{"months": [], "users": {}}', "field 'span'"),
        ('{"months": [], "users": {}, "span": {"a": ["2026-01"]}}', "span.a"),
        ("[" * 100000 + "]" * 100000, "invalid JSON"),
    ):
        with open(path, "w") as fh:
            fh.write(text)
        with pytest.raises(FormatError, match=what):
            store.read_archive(str(tmp_path), "c1")
