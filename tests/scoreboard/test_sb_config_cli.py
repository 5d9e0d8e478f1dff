"""Config precedence and errors; the CLI's exit codes and messages; zero-install bin on Python 3.6."""

import os
import subprocess
import sys

import pytest
import sbhelpers
from sbhelpers import BIN, PY36

from slurmctl.scoreboard import config
from slurmctl.scoreboard.errors import UsageError


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_precedence_defaults_policy_file_env_flags(tmp_path):
    root = str(tmp_path / "root")
    write(os.path.join(root, "config", "policy.json"), '{"rate_limit_per_min": 1, "min_jobs_to_show": 5}')
    cfgfile = write(
        str(tmp_path / "config.yaml"),
        f"# my poller\nroot: {root}\ncluster: hammer\nrate_limit_per_min: 1.5  # politer\n"
        "failure_states: [FAILED, TIMEOUT]\ncount_cancelled_as_failure: true\n",
    )
    c = config.load({"cluster": "bell"}, environ={"SLURM_SB_POLL_INTERVAL_SEC": "300"}, config_path=cfgfile)
    assert c["root"] == root and c["cluster"] == "bell" and c.sources["cluster"] == "--cluster"
    assert c["rate_limit_per_min"] == 1.5 and c.sources["rate_limit_per_min"] == f"{cfgfile}:4"
    assert c["min_jobs_to_show"] == 5 and c["poll_interval_sec"] == 300
    assert c.failure_states() == ["FAILED", "TIMEOUT", "CANCELLED"]
    assert c["backfill_start"] == "2000-01-01"


@pytest.mark.parametrize(
    "text,match",
    [
        ("root: /x\n  nested: 1\n", r"config.yaml:2: expected 'key: value'"),
        ("rate_limit_per_min: fast\n", r"config.yaml:1: rate_limit_per_min: expected a number"),
        ("rollup_retention_months: 12\n", r"config.yaml:1: rollup_retention_months"),
        ("colour: red\n", r"config.yaml:1: unknown setting 'colour'"),
        ("backfill_start: last year\n", r"expected YYYY-MM-DD"),
    ],
)
def test_bad_config_names_file_line_and_field(tmp_path, text, match):
    path = write(str(tmp_path / "config.yaml"), text)
    with pytest.raises(UsageError, match=match):
        config.load({}, environ={}, config_path=path)


def run(*args, python=sys.executable, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([python, BIN, *args], capture_output=True, text=True, env=e, cwd="/")


def test_bad_input_gives_message_not_traceback(tmp_path):
    r = run("poll", "--once", "--root", str(tmp_path), "--cluster", "../etc", "--config", "/nonexistent.yaml")
    assert (
        r.returncode == 2
        and "--cluster: cluster: expected a cluster name" in r.stderr
        and "Traceback" not in r.stderr
    )
    r = run("leaderboard", "--root", str(tmp_path), "--window", "weekly", "--config", "/nonexistent.yaml")
    assert r.returncode == 2 and "--window" in r.stderr
    r = run("leaderboard", "--root", str(tmp_path), "--config", "/nonexistent.yaml")
    assert r.returncode == 3 and "file not found" in r.stderr and "Traceback" not in r.stderr
    bad = write(str(tmp_path / "c.yaml"), "min_uid: -3\n")
    r = run("config", "--config", bad)
    assert r.returncode == 2 and "c.yaml:1: min_uid" in r.stderr


def test_doctor_on_empty_root_fails_clearly(tmp_path):
    r = run("doctor", "--root", str(tmp_path / "missing"), "--config", "/nonexistent.yaml")
    assert r.returncode == 1 and "FAIL" in r.stdout


def test_bin_runs_without_installation_and_imports_nothing_else_from_slurmctl(tmp_path):
    code = (
        "import sys, runpy; sys.argv = ['slurm-sb', 'config', '--config', '/nonexistent.yaml'];"
        f"\ntry:\n    runpy.run_path({BIN!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in sys.modules if m.startswith('slurmctl')"
        " and not m.startswith(('slurmctl.scoreboard', 'slurmctl.portable')) and m != 'slurmctl']"
        "\nprint('OTHER', bad)"
    )
    r = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert "OTHER []" in r.stdout, r.stdout + r.stderr
    assert "realpath" in sbhelpers.read_text(BIN)  # a symlinked bin/ still finds <checkout>/src


@pytest.mark.skipif(not os.path.exists(PY36), reason="Python 3.6 interpreter not installed here")
def test_bin_help_on_python36():
    r = run("--help", python=PY36)
    assert r.returncode == 0 and "poll" in r.stdout, r.stderr
    r = run("config", "--config", "/nonexistent.yaml", python=PY36)
    assert r.returncode == 0 and "rate_limit_per_min" in r.stdout, r.stderr


def test_example_config_and_policy_parse(tmp_path):
    ex = os.path.join(sbhelpers.REPO, "examples", "scoreboard")
    c = config.load({}, environ={}, config_path=os.path.join(ex, "config.yaml"))
    assert c["cluster"] == "hammer" and c["rate_limit_per_min"] == 2.0 and not c["count_cancelled_as_failure"]
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "config"))
    with (
        open(os.path.join(ex, "policy.json")) as src,
        open(os.path.join(root, "config", "policy.json"), "w") as dst,
    ):
        dst.write(src.read())
    c = config.load({"root": root}, environ={}, config_path="/nonexistent.yaml")
    assert c["rollup_retention_months"] == 36 and c.sources["bloom_fp_rate"].endswith("policy.json")


def test_write_root_builds_a_readable_multi_cluster_root(tmp_path):
    """The synthetic root the TUI benchmark uses: every scope and window loads through the model."""
    import datetime

    from slurmctl.scoreboard import model, synth

    root = str(tmp_path)
    synth.write_root(root, ["a", "b"], 200, months=3, now=datetime.datetime(2026, 11, 23))
    for scope in ("a", "b", "ALL"):
        for window in ("alltime", "30d", "365d"):
            cols, rows, _asof = model.load_scope(root, scope, window)
            assert cols[0] == "jobs" and rows
    merged = model.load_table(model.table_path(root, "ALL", "alltime"))["rows"]
    a = model.load_table(model.table_path(root, "a", "alltime"))["rows"]
    b = model.load_table(model.table_path(root, "b", "alltime"))["rows"]
    user = next(u for u in merged if u in a and u in b)
    assert merged[user][0] == a[user][0] + b[user][0]


@pytest.mark.skipif(not os.path.exists(PY36), reason="Python 3.6 interpreter not installed here")
def test_full_poll_and_leaderboard_on_python36(tmp_path):
    """vermin proves the syntax; this runs the whole poll path (ingest, derive, lock, logs) on 3.6."""
    data = sbhelpers.golden("handmade.sacct")
    root = str(tmp_path / "root")
    env = {"FAKE_SACCT_DATA": data, "SLURM_SB_HOME_DIR": "", "SLURM_SB_LAG_SEC": "0"}
    r = run(
        "poll",
        "--once",
        "--quiet",
        "--root",
        root,
        "--cluster",
        "c1",
        "--backfill-start",
        "2026-10-01",
        "--rate-limit",
        "600",
        "--sacct",
        sbhelpers.FAKE_SACCT,
        "--config",
        "/nonexistent.yaml",
        python=PY36,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "leaderboard",
        "--root",
        root,
        "--cluster",
        "c1",
        "--metric",
        "clock_hours",
        "--config",
        "/x.yaml",
        python=PY36,
    )
    assert r.returncode == 0 and "bob" in r.stdout and "alice" not in r.stdout, r.stdout + r.stderr


def test_probe_exit_codes(tmp_path):
    r = run("probe", "--root", str(tmp_path), "--sacct", "/nonexistent/sacct", "--config", "/x.yaml")
    assert r.returncode == 1 and "NOT FOUND" in r.stdout and str(tmp_path) in r.stdout
    r = run("probe", "--root", str(tmp_path), "--sacct", sbhelpers.FAKE_SACCT, "--config", "/x.yaml")
    assert r.returncode == 0 and "slurm 22.05.8 (fake)" in r.stdout and "all 11 present" in r.stdout
    old = {"FAKE_SACCT_MISSING_FIELD": "AllocTRES"}  # an old sacct without a field the query needs
    r = run("probe", "--root", str(tmp_path), "--sacct", sbhelpers.FAKE_SACCT, "--config", "/x.yaml", env=old)
    assert r.returncode == 1 and "MISSING: AllocTRES" in r.stdout


def test_corrupt_month_state_is_reported_with_its_path(tmp_path):
    from slurmctl.scoreboard import ingest, layout

    root = str(tmp_path)
    ingest.ingest(root, "c1", sbhelpers.read_lines(sbhelpers.golden("handmade.sacct")), sbhelpers.FAIL)
    path = layout.month_state(root, "c1", "2026-10")
    with open(path, "r+b") as fh:
        fh.seek(-40, os.SEEK_END)
        fh.write(b"\0" * 40)  # damage the end of the days blob
    r = run("rebuild", "--root", root, "--cluster", "c1", "--config", "/x.yaml")
    assert r.returncode == 3 and "2026-10.state" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("doctor", "--root", root, "--config", "/x.yaml")
    assert r.returncode == 1 and "FAIL" in r.stdout and "2026-10.state" in r.stdout, r.stdout
