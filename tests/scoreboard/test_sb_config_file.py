"""The config loader on bad or unusual input: encodings, the YAML subset's quoting and lists, JSON in
config.yaml, numeric bounds, failure states, per-cluster policy, and what readers do with a bad
policy.json. Each bad input must give a UsageError naming its source, never a traceback."""

import json
import os
import subprocess
import sys

import pytest
from sbhelpers import BIN, REPO

from slurmctl.scoreboard import config
from slurmctl.scoreboard.errors import UsageError

TUI_BIN = os.path.join(REPO, "bin", "slurm-sb-tui")
FLOAT_KEYS = [
    "backfill_sleep_sec",
    "rate_limit_per_min",
    "sacct_timeout_sec",
    "backoff_base_sec",
    "bloom_fp_rate",
    "stale_lock_sec",
]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def load_text(tmp_path, data, name="config.yaml", flags=None, environ=None, **kw):
    path = write(str(tmp_path / name), data)
    return config.load(flags or {}, environ=environ or {}, config_path=path, **kw)


def bad(tmp_path, data, match, **kw):
    with pytest.raises(UsageError, match=match) as info:
        load_text(tmp_path, data, **kw)
    return info.value


def run(cmd, home, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_SB_") and k != "PYTHONPATH"}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, cmd, *args], capture_output=True, text=True, env=env, cwd="/", timeout=60
    )


# -- 1. encodings ------------------------------------------------------------------------------------


def test_invalid_utf8_names_file_and_line(tmp_path):
    bad(tmp_path, b"cluster: c1\nroot: \xff\n", r"config\.yaml:2: not valid UTF-8 \(byte 0xff at column 7\)")


def test_a_utf8_bom_is_accepted(tmp_path):
    c = load_text(tmp_path, b"\xef\xbb\xbfroot: /r\n")
    assert c["root"] == "/r" and c.sources["root"].endswith("config.yaml:1")


def test_invalid_utf8_in_both_commands_exits_2_without_traceback(tmp_path):
    home = tmp_path / "home"
    write(str(home / ".slurm_scoreboard" / "config.yaml"), b"root: \xff\n")
    for cmd, args in ((BIN, ["config"]), (TUI_BIN, ["--once"])):
        r = run(cmd, home, *args)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and "config.yaml:1: not valid UTF-8" in r.stderr, r.stderr


# -- 2. quoting and comments -------------------------------------------------------------------------


def test_quoted_values_keep_hash_and_quotes(tmp_path):
    c = load_text(
        tmp_path,
        "root: '/tmp/a #b'  # a comment\n"
        'sacct: "/opt/s \\"q\\" #1"\n'
        "home_dir: /srv/home#2\n"  # no whitespace before '#': not a comment
        "opt_out: 'it''s'  # one name\n",
    )
    assert c["root"] == "/tmp/a #b" and c["sacct"] == '/opt/s "q" #1' and c["home_dir"] == "/srv/home#2"
    assert c["opt_out"] == ["it's"]


def test_quoted_cluster_with_a_comment_after_it(tmp_path):
    assert load_text(tmp_path, 'cluster: "c1"   # mine\n')["cluster"] == "c1"


@pytest.mark.parametrize(
    "text,match",
    [
        ("root: '/tmp/a\n", r"config\.yaml:1: root: the value has no closing '"),
        ("root: '/a' b\n", r"config\.yaml:1: root: unexpected 'b' after the value"),
        ('root: "a\\qb"\n', r"config\.yaml:1: root: unknown escape"),
    ],
)
def test_bad_quoting_names_file_line_and_key(tmp_path, text, match):
    bad(tmp_path, text, match)


def test_list_entries_are_unquoted_before_comments(tmp_path):
    c = load_text(tmp_path, "opt_out: ['a #b', \"c,d\", e]  # people\n")
    assert c["opt_out"] == ["a #b", "c,d", "e"]


# -- 3. backfill_start -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2026-13-45", "2026-00-01", "2026-02-30", "2026-13", "0000-01-01"])
def test_backfill_start_must_be_a_calendar_date(tmp_path, value):
    bad(
        tmp_path,
        f"backfill_start: {value}\n",
        r"config\.yaml:1: backfill_start: expected YYYY-MM-DD or YYYY-MM naming a real calendar date",
    )


@pytest.mark.parametrize("value", ["2024-02-29", "2026-03", "2000-01-01"])
def test_backfill_start_real_dates_pass(tmp_path, value):
    assert load_text(tmp_path, f"backfill_start: {value}\n")["backfill_start"] == value


# -- 4. numeric bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_non_finite_numbers_are_rejected_for_every_float_setting(tmp_path, key, value):
    var = "SLURM_SB_" + key.upper()
    bad(tmp_path, "", rf"^\${var}: {key}: expected ", environ={var: value})


@pytest.mark.parametrize(
    "key,value",
    [
        ("rate_limit_per_min", "0"),
        ("rate_limit_per_min", "-1"),
        ("sacct_timeout_sec", "1e10"),  # > threading.TIMEOUT_MAX: the watchdog Timer would fail
        ("backoff_base_sec", "864000"),
        ("backfill_sleep_sec", "0"),
        ("poll_interval_sec", "0"),
        ("poll_interval_sec", "99999999999"),
        ("sacct_retries", "1000"),
        ("min_uid", "-1"),
        ("bloom_fp_rate", "1"),
    ],
)
def test_numbers_out_of_bounds_are_rejected(tmp_path, key, value):
    bad(tmp_path, f"{key}: {value}\n", rf"config\.yaml:1: {key}: expected ")


def test_nan_in_policy_json_is_rejected(tmp_path):
    root = str(tmp_path / "root")
    write(os.path.join(root, "config", "policy.json"), '{"rate_limit_per_min": NaN}')
    bad(tmp_path, "", r"policy\.json: rate_limit_per_min: expected ", flags={"root": root})


# -- 5. failure_states -------------------------------------------------------------------------------


def test_failure_states_must_be_terminal_job_states(tmp_path):
    e = bad(tmp_path, "failure_states: [FAILED, TIMEOUTT]\n", r"config\.yaml:1: failure_states: 'TIMEOUTT'")
    assert "BOOT_FAIL" in e.hint and "OUT_OF_MEMORY" in e.hint and "REQUEUED" not in e.hint
    bad(
        tmp_path,
        "",
        r"\$SLURM_SB_FAILURE_STATES: failure_states: 'OOM'",
        environ={"SLURM_SB_FAILURE_STATES": "FAILED,OOM"},
    )


def test_failure_states_are_case_insensitive(tmp_path):
    c = load_text(tmp_path, "failure_states: [failed, Timeout]\n")
    assert c.failure_states() == ["FAILED", "TIMEOUT"]
    c = load_text(tmp_path, "", environ={"SLURM_SB_FAILURE_STATES": "[node_fail, DEADLINE]"})
    assert c["failure_states"] == ["NODE_FAIL", "DEADLINE"]


@pytest.mark.parametrize(
    "text,match",
    [
        ("failure_states: [FAILED, [x]\n", r"config\.yaml:1: failure_states: malformed list at '\[x\]'"),
        ("failure_states: [FAILED, , TIMEOUT]\n", r"config\.yaml:1: failure_states: malformed list"),
        ("failure_states: [FAILED  # no end\n", r"config\.yaml:1: failure_states: a list must close"),
    ],
)
def test_malformed_lists_are_errors_with_the_line(tmp_path, text, match):
    bad(tmp_path, text, match)


# -- 6. JSON in config.yaml --------------------------------------------------------------------------


def test_json_in_config_yaml_is_read_as_json(tmp_path):
    c = load_text(tmp_path, '\n  {"root": "/r", "cluster": "c1", "failure_states": ["FAILED"]}\n')
    assert (c["root"], c["cluster"], c["failure_states"]) == ("/r", "c1", ["FAILED"])


def test_json_syntax_error_gives_the_line(tmp_path):
    bad(tmp_path, '{"root": "/r",\n "cluster": c1}\n', r"config\.yaml:2: invalid JSON: .*\(column 13\)")


def test_json_duplicate_key_is_an_error(tmp_path):
    bad(tmp_path, '{"root": "/r", "root": "/s"}', r"config\.json: duplicate key 'root'", name="config.json")


# -- 7. empty values, duplicates, integers -----------------------------------------------------------


def test_empty_optional_string_is_unset(tmp_path):
    c = load_text(tmp_path, "cluster:\nroot: /r\n")
    assert c["cluster"] == "" and c.sources["cluster"] == "default"
    c = load_text(tmp_path, "cluster: ''\n", environ={"SLURM_SB_CLUSTER": ""})
    assert c["cluster"] == "" and c.sources["cluster"] == "default"
    c = load_text(tmp_path, "cluster: c1\n", environ={"SLURM_SB_CLUSTER": ""})
    assert c["cluster"] == "c1"  # an empty variable does not undo the file's value
    assert load_text(tmp_path, "home_dir:\n")["home_dir"] == ""  # discovery off, as home_dir: ""


def test_duplicate_key_names_both_lines(tmp_path):
    bad(
        tmp_path,
        "root: /r\ncluster: c\nroot: /s\n",
        r"config\.yaml:3: root: duplicate key \(also set on line 1\)",
    )


def test_integer_settings_reject_fractions(tmp_path):
    e = bad(
        tmp_path, "poll_interval_sec: 10.5\n", r"config\.yaml:1: poll_interval_sec: expected a whole number"
    )
    assert "not rounded" in e.hint
    bad(tmp_path, "", r"\$SLURM_SB_LAG_SEC: lag_sec: expected a whole", environ={"SLURM_SB_LAG_SEC": "1.5"})
    c = load_text(tmp_path, "poll_interval_sec: 600.0\nbackoff_base_sec: 0.5\n")
    assert (
        c["poll_interval_sec"] == 600 and type(c["poll_interval_sec"]) is int and c["backoff_base_sec"] == 0.5
    )


# -- 8. messages name the real source and this setting's bounds only ---------------------------------


def test_flag_error_names_the_flag_as_spelled(tmp_path):
    with pytest.raises(UsageError) as info:
        config.load({"rate_limit_per_min": 0.0}, environ={}, config_path=str(tmp_path / "none.yaml"))
    msg = str(info.value)
    assert msg.startswith("--rate-limit: rate_limit_per_min: expected ") and "bloom" not in msg
    r = run(BIN, tmp_path, "config", "--config", "/nonexistent.yaml", "--rate-limit", "0")
    assert r.returncode == 2 and "--rate-limit: " in r.stderr and "--rate-limit-per-min" not in r.stderr


def test_integer_errors_carry_their_own_bounds(tmp_path):
    e = bad(tmp_path, "lag_sec: -1\n", r"config\.yaml:1: lag_sec: expected a whole number of seconds from 0")
    assert "retention" not in str(e)
    e = bad(tmp_path, "rollup_retention_months: 12\n", r"rollup_retention_months: expected .* >= 36")
    assert "per poll" not in str(e)


# -- 9. a bad policy.json: readers warn, the poller stops ---------------------------------------------


def bad_policy_root(tmp_path, text='{"min_jobs_to_show": "x", "colour": 1, "rate_limit_per_min": 1}'):
    root = str(tmp_path / "root")
    write(os.path.join(root, "config", "policy.json"), text)
    return root


def test_bad_policy_is_an_error_without_warn_and_ignored_with_it(tmp_path):
    root = bad_policy_root(tmp_path)
    bad(tmp_path, "", r"policy\.json: min_jobs_to_show: expected a whole number", flags={"root": root})
    seen = []
    c = load_text(tmp_path, "", flags={"root": root}, warn=seen.append)
    assert c["min_jobs_to_show"] == 3 and c["rate_limit_per_min"] == 1.0  # the good key still applies
    assert len(seen) == 2 and "policy.json: min_jobs_to_show" in seen[0] and "'colour'" in seen[1]
    root = bad_policy_root(tmp_path, '{"rate_limit_per_min": 1,\n oops}')
    seen = []
    c = load_text(tmp_path, "", flags={"root": root}, warn=seen.append)
    assert c["rate_limit_per_min"] == 2.0 and len(seen) == 1 and "policy.json:2: invalid JSON" in seen[0]


def test_bad_policy_warns_in_the_tui_and_stops_the_poller(tmp_path):
    root = bad_policy_root(tmp_path)
    r = run(TUI_BIN, tmp_path, "--root", root, "--once", "--size", "80x12")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("policy.json: min_jobs_to_show") == 1 and "warning" in r.stderr
    r = run(BIN, tmp_path, "poll", "--once", "--root", root, "--cluster", "c1", "--config", "/none.yaml")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "policy.json: min_jobs_to_show: expected a whole number" in r.stderr, r.stderr


# -- 10. per-cluster policy ----------------------------------------------------------------------------


def cluster_policy_root(tmp_path, clusters):
    doc = {"rate_limit_per_min": 1, "min_jobs_to_show": 5, "clusters": clusters}
    return bad_policy_root(tmp_path, json.dumps(doc))


def test_cluster_section_applies_on_top_of_site_keys(tmp_path):
    root = cluster_policy_root(tmp_path, {"hammer": {"rate_limit_per_min": 0.5}})
    c = load_text(tmp_path, "", flags={"root": root, "cluster": "hammer"})
    assert c["rate_limit_per_min"] == 0.5 and c.sources["rate_limit_per_min"].endswith(
        "policy.json clusters.hammer"
    )
    assert c["min_jobs_to_show"] == 5 and c.sources["min_jobs_to_show"].endswith("policy.json")
    c = load_text(tmp_path, "", flags={"root": root, "cluster": "bell"})
    assert c["rate_limit_per_min"] == 1.0
    c = load_text(tmp_path, "cluster: hammer\nrate_limit_per_min: 0.25\n", flags={"root": root})
    assert c["rate_limit_per_min"] == 0.25  # the user's file still wins over the site policy
    r = run(BIN, tmp_path, "config", "--root", root, "--cluster", "hammer", "--config", "/none.yaml")
    assert r.returncode == 0 and "0.5  (" + root + "/config/policy.json clusters.hammer)" in r.stdout, (
        r.stdout
    )


@pytest.mark.parametrize(
    "clusters,match",
    [
        ({"hammer": {"rate_limit_per_min": "inf"}}, r"policy\.json clusters\.hammer: rate_limit_per_min"),
        ({"hammer": {"colour": 1}}, r"policy\.json clusters\.hammer: unknown setting 'colour'"),
        ({"hammer": {"root": "/x"}}, r"policy\.json clusters\.hammer: root cannot be set per cluster"),
        ({"hammer": 1}, r"policy\.json: clusters: expected an object"),
    ],
)
def test_bad_cluster_section_is_named(tmp_path, clusters, match):
    root = cluster_policy_root(tmp_path, clusters)
    bad(tmp_path, "", match, flags={"root": root, "cluster": "hammer"})


def test_example_policy_has_a_cluster_section(tmp_path):
    with open(os.path.join(REPO, "examples", "scoreboard", "policy.json")) as fh:
        root = bad_policy_root(tmp_path, fh.read())
    assert load_text(tmp_path, "", flags={"root": root, "cluster": "bell"})["rate_limit_per_min"] == 1.0
    assert load_text(tmp_path, "", flags={"root": root, "cluster": "hammer"})["rate_limit_per_min"] == 2.0
    assert load_text(tmp_path, "", flags={"root": root, "cluster": "ALL"})["rate_limit_per_min"] == 2.0


def test_leaderboard_only_reads_so_a_bad_policy_is_a_warning(tmp_path):
    root = bad_policy_root(tmp_path)
    from slurmctl.scoreboard import synth

    synth.write_root(root, ["c1"], n_users=20, months=2)
    r = run(BIN, tmp_path, "leaderboard", "--root", root, "--cluster", "c1", "--config", "/none.yaml")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "warning" in r.stderr and "policy.json: min_jobs_to_show" in r.stderr and "u00000" in r.stdout


def test_a_cluster_found_by_scontrol_gets_its_policy_section(tmp_path, monkeypatch):
    """The cluster a poller detects (scontrol show config) picks its clusters.<name> section too."""
    from slurmctl.scoreboard import cli, probe

    root = cluster_policy_root(tmp_path, {"hammer": {"rate_limit_per_min": 0.5}})
    monkeypatch.setattr(probe, "cluster_name", lambda *a, **k: "hammer")
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in [k for k in os.environ if k.startswith("SLURM_SB_")]:
        monkeypatch.delenv(k)
    args = cli.build_parser().parse_args(["poll", "--once", "--root", root, "--config", "/none.yaml"])
    c = cli._load_cfg(args, need_cluster=True)
    assert c["cluster"] == "hammer" and c.sources["cluster"] == "scontrol show config"
    assert c["rate_limit_per_min"] == 0.5 and c.sources["rate_limit_per_min"].endswith("clusters.hammer")


def test_negative_month_counts_are_usage_errors(tmp_path):
    for args in (["poll", "--once", "--backfill-months", "-1"], ["backfill", "--months", "-2"]):
        r = run(BIN, tmp_path, *args, "--root", str(tmp_path), "--cluster", "c1", "--config", "/none.yaml")
        assert r.returncode == 2 and "Traceback" not in r.stderr and "months" in r.stderr, r.stderr
