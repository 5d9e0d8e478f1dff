"""The ``slurm-sb-tui`` command end to end (real subprocesses of bin/slurm-sb-tui), and its settings."""

import os
import subprocess
import sys

import pytest

from slurmctl.scoreboard.tui.errors import UsageError
from slurmctl.scoreboard.tui.settings import parse_config, resolve

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(REPO, "bin", "slurm-sb-tui")
PY36 = "/root/.pyenv/versions/3.6.15/bin/python3"


def tui(*args, python=sys.executable, env=None):
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("PYTHONPATH", None)  # prove bin/ finds src/ by itself
    return subprocess.run(
        [python, BIN, *args],
        capture_output=True,
        env=full_env,
        timeout=60,
        text=True,
    )


def test_once_prints_one_plain_frame_to_a_pipe(sb_root):
    res = tui("--root", sb_root, "--once", "--size", "80x12")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 12 and "\x1b" not in res.stdout
    assert "SlurmScoreboard Hiscores" in lines[0] and "alice" in lines[5] and "1.33e3 CPU-h" in lines[5]
    # the corrupt bell file is not on this screen, so there is no warning
    assert res.stderr == ""


def test_once_flags_select_cluster_window_metric_user_and_sort(sb_root):
    res = tui(
        "--root", sb_root, "--once", "--size", "80x14", "--cluster", "hammer", "--metric", "clock_hours",
        "--user", "*a*", "--sort", "xp:asc", "--ascii",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    body = [line for line in res.stdout.splitlines() if line.strip().startswith("|")][2:]
    assert [line.split("|")[2].strip() for line in body if line.split("|")[2].strip()] == [
        "dave",
        "carol",
        "alice",
    ]
    assert "filter '*a*' (3 of 5)" in res.stdout and "Cluster: hammer" in res.stdout


def test_warning_for_a_bad_file_goes_to_stderr(sb_root):
    res = tui("--root", sb_root, "--once", "--cluster", "bell", "--metric", "failed_jobs", "--size", "80x12")
    assert res.returncode == 0
    assert (
        "warning: skipped" in res.stderr and "failed_jobs.json" in res.stderr and "invalid JSON" in res.stderr
    )


def test_env_and_config_file_supply_root_and_cluster(sb_root, tmp_path):
    res = tui("--once", "--size", "80x12", env={"SLURM_SB_ROOT": sb_root, "SLURM_SB_CLUSTER": "bell"})
    assert res.returncode == 0 and "Cluster: bell" in res.stdout
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"# mine\nroot: '{sb_root}'\ncluster: hammer   # my home cluster\nrate_limit_per_min: 2\n")
    res = tui("--once", "--size", "80x12", env={"SLURM_SB_CONFIG": str(cfg)})
    assert res.returncode == 0 and "Cluster: hammer" in res.stdout
    res = tui("--once", "--size", "80x12", "--cluster", "ALL", env={"SLURM_SB_CONFIG": str(cfg)})
    assert "All clusters (2)" in res.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sort", "level"], "--sort: unknown sort column 'level'"),
        (["--size", "big"], "--size 'big': expected COLSxLINES"),
        (["--cluster", "nosuch"], "no leaderboards for cluster 'nosuch'"),
        (["--refresh-sec", "-1"], "--refresh-sec must be 0"),
        (["--window", "7d"], "invalid choice: '7d'"),
        (["--metric", "xp"], "invalid choice: 'xp'"),
    ],
)
def test_bad_flags_exit_2_with_a_message_and_no_traceback(sb_root, args, message):
    res = tui("--root", sb_root, "--once", *args)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_missing_root_and_bad_config_explain_what_to_do(tmp_path):
    res = tui("--once")
    assert res.returncode == 2 and "no scoreboard root given" in res.stderr and "SLURM_SB_ROOT" in res.stderr
    res = tui("--once", "--root", str(tmp_path / "nope"))
    assert res.returncode == 2 and "is not a directory" in res.stderr and "slurm-sb poll" in res.stderr
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("root: /x\nthis line is wrong\n")
    res = tui("--once", env={"SLURM_SB_CONFIG": str(cfg)})
    assert res.returncode == 2 and "bad.yaml:2: expected 'key: value'" in res.stderr
    assert "Traceback" not in res.stderr


def test_empty_root_is_friendly_not_an_error(empty_root):
    res = tui("--root", empty_root, "--once", "--size", "100x14")
    assert res.returncode == 0
    assert "No scoreboard data under" in res.stdout and "slurm-sb poll --cluster <name>" in res.stdout


def test_curses_backend_refuses_a_pipe_clearly(sb_root):
    res = tui("--root", sb_root, "--backend", "curses")
    assert res.returncode == 4 and "needs a terminal" in res.stderr and "--once" in res.stderr


def test_help_lists_every_flag():
    res = tui("--help")
    assert res.returncode == 0
    for flag in (
        "--backend",
        "--root",
        "--cluster",
        "--user",
        "--window",
        "--metric",
        "--sort",
        "--refresh-sec",
    ):
        assert flag in res.stdout
    assert "--no-color" in res.stdout and "--once" in res.stdout


@pytest.mark.skipif(not os.path.exists(PY36), reason="no Python 3.6 interpreter at " + PY36)
def test_runs_on_python36_and_explains_missing_textual(sb_root):
    res = tui("--root", sb_root, "--once", "--size", "80x12", python=PY36, env={"LANG": "C.UTF-8"})
    assert res.returncode == 0, res.stderr
    assert "alice" in res.stdout
    res = tui("--root", sb_root, "--backend", "textual", python=PY36)
    assert res.returncode == 4 and "pip install textual" in res.stderr and "Traceback" not in res.stderr


def test_ascii_fallback_when_the_locale_is_not_utf8(sb_root):
    res = tui(
        "--root", sb_root, "--once", "--size", "80x12", env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    )
    assert res.returncode == 0, res.stderr
    assert "* SlurmScoreboard Hiscores *" in res.stdout and "|    * 1 | alice" in res.stdout


# -- settings, in process --------------------------------------------------------------------------


def test_precedence_flags_over_env_over_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("root: /from/config\ncluster: cfgc\n")
    env = {"SLURM_SB_CONFIG": str(cfg)}
    s = resolve(None, None, env)
    assert (s.root, s.cluster) == ("/from/config", "cfgc") and "c.yaml" in s.root_source
    env.update(SLURM_SB_ROOT="/from/env", SLURM_SB_CLUSTER="envc")
    s = resolve(None, None, env)
    assert (s.root, s.cluster) == ("/from/env", "envc")
    s = resolve("/from/flag", "all", env)
    assert (s.root, s.cluster, s.root_source) == ("/from/flag", "ALL", "--root")


def test_config_json_and_yaml_subset():
    assert parse_config('{"root": "/r", "failure_states": ["FAILED"]}', "c.json") == {
        "root": "/r",
        "failure_states": ["FAILED"],
    }
    parsed = parse_config('---\nroot: "/a b"\nfailure_states: [FAILED, TIMEOUT]\n\n# c\n', "c.yaml")
    assert parsed == {"root": "/a b", "failure_states": ["FAILED", "TIMEOUT"]}


@pytest.mark.parametrize(
    "text, where",
    [
        ("root /x\n", "c.yaml:1"),
        ("a: 1\nroot: 'x\n", "c.yaml:2"),
        ("a:\n  - nested\n", "c.yaml:2"),
        ("{bad", "c.yaml"),
    ],
)
def test_config_errors_name_file_and_line(text, where):
    with pytest.raises(UsageError) as info:
        parse_config(text, "c.yaml")
    assert str(info.value).startswith(where)
