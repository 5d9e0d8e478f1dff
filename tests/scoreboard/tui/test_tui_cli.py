"""The ``slurm-sb-tui`` command end to end (real subprocesses of bin/slurm-sb-tui), and its settings."""

import os
import subprocess
import sys

import pytest

from slurmctl.scoreboard.tui.errors import UsageError
from slurmctl.scoreboard.tui.settings import resolve

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


def user_config(tmp_path, text, name="config.yaml"):
    """Write the user's config where the scoreboard looks for it (HOME is a temp dir in these tests)."""
    path = tmp_path / "home" / ".slurm_scoreboard" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"HOME": str(tmp_path / "home")}


def test_env_and_config_file_supply_root_and_cluster(sb_root, tmp_path):
    res = tui("--once", "--size", "80x12", env={"SLURM_SB_ROOT": sb_root, "SLURM_SB_CLUSTER": "bell"})
    assert res.returncode == 0 and "Cluster: bell" in res.stdout
    env = user_config(
        tmp_path, f"# mine\nroot: '{sb_root}'\ncluster: hammer   # my cluster\nrate_limit_per_min: 2\n"
    )
    res = tui("--once", "--size", "80x12", env=env)
    assert res.returncode == 0 and "Cluster: hammer" in res.stdout
    res = tui("--once", "--size", "80x12", "--cluster", "all", env=env)
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
    env = user_config(tmp_path, "root: /x\nthis line is wrong\n")
    res = tui("--once", env=env)
    assert res.returncode == 2 and "config.yaml:2: expected 'key: value'" in res.stderr
    env = user_config(tmp_path, "root: /x\nrate_limit_per_min: lots\n")
    res = tui("--once", env=env)
    assert res.returncode == 2 and "config.yaml:2: rate_limit_per_min: expected a number" in res.stderr
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
    env = user_config(tmp_path, "root: /from/config\ncluster: cfgc\n")
    s = resolve(None, None, env)
    assert (s.root, s.cluster) == ("/from/config", "cfgc") and "config.yaml:1" in s.root_source
    env.update(SLURM_SB_ROOT="/from/env", SLURM_SB_CLUSTER="envc")
    s = resolve(None, None, env)
    assert (s.root, s.cluster, s.root_source) == ("/from/env", "envc", "$SLURM_SB_ROOT")
    s = resolve("/from/flag", "all", env)
    assert (s.root, s.cluster, s.root_source) == ("/from/flag", "ALL", "--root")


def test_json_config_and_cluster_default(tmp_path):
    env = user_config(tmp_path, '{"root": "/r"}', name="config.json")
    s = resolve(None, None, env)
    assert (s.root, s.cluster, s.cluster_source) == ("/r", "ALL", "default")


def test_bad_cluster_name_names_its_source(tmp_path):
    with pytest.raises(UsageError, match="--cluster: cluster: expected a cluster name"):
        resolve("/r", "../etc", {"HOME": str(tmp_path)})


def test_ansi_refresh_loop_redraws_in_place_or_appends_on_dumb_terminals(sb_root, monkeypatch):
    import io

    monkeypatch.setattr("slurmctl.scoreboard.tui.backend_ansi.MIN_REFRESH_SEC", 0.01)

    from slurmctl.scoreboard.tui.backend_ansi import run_loop
    from slurmctl.scoreboard.tui.controller import Controller
    from slurmctl.scoreboard.tui.frame import Glyphs
    from slurmctl.scoreboard.tui.store import Store
    from slurmctl.scoreboard.tui.viewmodel import ViewState

    for ansi in (True, False):
        calls = []

        def size(calls=calls):
            calls.append(1)
            if len(calls) > 2:
                raise KeyboardInterrupt  # the user's Ctrl-C, after two frames
            return (80, 12)

        out = io.StringIO()
        ctrl = Controller(Store(sb_root), ViewState())
        assert run_loop(ctrl, size, Glyphs(True), color=False, refresh_sec=0, ansi=ansi, out=out) == 0
        text = out.getvalue()
        assert text.count("SlurmScoreboard Hiscores") == 2
        assert ("\x1b[H\x1b[2J" in text) == ansi


PY27 = "/root/.pyenv/versions/2.7.18/bin/python2.7"


@pytest.mark.skipif(not os.path.exists(PY27), reason="no Python 2.7 interpreter at " + PY27)
def test_too_old_python_gets_a_clear_message_not_a_syntax_error(sb_root):
    # bin/slurm-sb-tui must parse on old interpreters so that its version check can run
    res = tui("--root", sb_root, "--once", python=PY27)
    assert res.returncode == 1
    assert "slurm-sb-tui needs Python 3.6 or newer (found 2.7" in res.stderr
    assert "Traceback" not in res.stderr and "SyntaxError" not in res.stderr and res.stdout == ""


def test_entry_point_has_no_syntax_newer_than_its_version_check():
    # no f-strings etc. anywhere in the file: Python 3.5 and 2.7 parse the whole file first
    import ast

    with open(BIN, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    first = next(node for node in tree.body if isinstance(node, ast.If))
    assert "version_info" in ast.dump(first.test)  # the guard comes before any slurmctl import
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert all(n.lineno > first.lineno for n in imports)
