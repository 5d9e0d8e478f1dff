"""The command line: one typer app (slurmctl.cli.main) parses every command; its help, shell
completion, usage errors, and how errors end a command (slurmctl.errors.exit_code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slurmctl.cli import main as cli


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurmctl", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="120", **(env or {})),
        timeout=120,
        check=False,
    )


def test_help_lists_every_command_and_status_help_its_options() -> None:
    p = run("--help")
    assert p.returncode == 0, p.stderr
    for command in ("submit", "status", "results", "jobs", "cancel", "doctor", "aws", "limits"):
        assert command in p.stdout
    p = run("status", "--help")
    assert p.returncode == 0, p.stderr
    for option in ("--json", "--watch", "--root", "--backend", "SLURMCTL_ROOT"):
        assert option in p.stdout


@pytest.mark.parametrize(
    "args, says",
    [
        (["status"], "Missing argument"),
        (["status", "j1", "--bogus"], "No such option: --bogus"),
        (["bogus"], "No such command 'bogus'"),
        (["doctor", "--tasks", "many"], "Invalid value for '--tasks'"),
        (["limits", "set", "x", "--rate", "fast"], "Invalid value for '--rate'"),
    ],
)
def test_bad_arguments_exit_2_with_the_usage_message(args: list[str], says: str) -> None:
    p = run(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Usage: slurmctl" in p.stderr and says in p.stderr
    assert "Traceback" not in p.stderr


def test_shell_completion() -> None:
    # typer's switch for naming the shell instead of detecting it from the parent processes
    p = run("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert p.returncode == 0, p.stderr
    assert "_SLURMCTL_COMPLETE" in p.stdout and "complete" in p.stdout
    # what the installed script asks at each <TAB>: commands, then options
    p = run(env={"_SLURMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "slurmctl sta", "COMP_CWORD": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["status"]
    env = {"_SLURMCTL_COMPLETE": "complete_bash", "COMP_WORDS": "slurmctl status j1 --j", "COMP_CWORD": "3"}
    p = run(env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["--json"]


def test_an_unexpected_exception_exits_70_and_says_where_the_traceback_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(backend: object, job_id: str) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("slurmctl.status.progress", broken)
    monkeypatch.setattr(sys, "argv", ["slurmctl", "status", "j1", "--root", str(tmp_path)])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 70
    err = capsys.readouterr().err
    assert err.startswith("internal error: ZeroDivisionError: a bug\n  traceback: "), err
    assert "Traceback" not in err
    saved = Path(err.split("traceback: ")[1].split()[0])
    assert saved.parent == tmp_path
    text = saved.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text and "ZeroDivisionError" in text
