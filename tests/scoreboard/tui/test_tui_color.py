"""Colour on and off: ``--no-color`` and ``$NO_COLOR`` (https://no-color.org) must remove the escape
codes, on a real terminal (a pty) as well as in the palette layer. (The curses backend's colours are
checked in test_tui_tmux.py.)"""

import os
import re
import select
import subprocess
import sys
import time

import pytest

from slurmctl.scoreboard.tui.backend_ansi import paint
from slurmctl.scoreboard.tui.cli import color_wanted
from slurmctl.scoreboard.tui.controller import Controller
from slurmctl.scoreboard.tui.frame import Glyphs, layout
from slurmctl.scoreboard.tui.store import Store
from slurmctl.scoreboard.tui.viewmodel import ViewState

pty = pytest.importorskip("pty")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(REPO, "bin", "slurm-sb-tui")
SGR = re.compile(r"\x1b\[([0-9;]*)m")
GOLD_256, GOLD_8 = "38;5;214", "33"


def once_on_a_terminal(root, *args, env=None):
    """Run ``slurm-sb-tui --once`` with stdout on a pseudo-terminal; return (exit code, output)."""
    full_env = dict(os.environ, TERM="xterm-256color", LANG="C.UTF-8")
    full_env.update(env or {})
    full_env.pop("PYTHONPATH", None)
    full_env.pop("COLORTERM", None)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, BIN, "--root", root, "--once", "--size", "80x12", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        os.close(slave)
        slave = -1
        chunks = []
        deadline = time.monotonic() + 60  # bounds a hung child only; nothing asserts on time
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        return proc.returncode, b"".join(chunks).decode("utf-8")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def colour_codes(text):
    """Return the SGR parameter strings in ``text`` other than reset."""
    return [p for p in SGR.findall(text) if p not in ("", "0")]


def test_a_terminal_gets_the_gold_and_green_palette(sb_root):
    _, out = once_on_a_terminal(sb_root)
    assert "alice" in out and GOLD_256 in colour_codes(out)
    _, out = once_on_a_terminal(sb_root, env={"TERM": "xterm"})
    assert GOLD_8 in colour_codes(out) and not any("38;5" in c for c in colour_codes(out))


@pytest.mark.parametrize(
    "args, env",
    [
        (["--no-color"], {}),
        ([], {"NO_COLOR": "1"}),
        ([], {"NO_COLOR": "anything"}),
        ([], {"TERM": "dumb"}),
    ],
    ids=["--no-color", "NO_COLOR=1", "NO_COLOR=anything", "TERM=dumb"],
)
def test_no_color_flag_and_environment_remove_every_escape_code(sb_root, args, env):
    _, out = once_on_a_terminal(sb_root, *args, env=env)
    assert "alice" in out and "1.33e3 CPU-h" in out
    assert "\x1b" not in out


def test_an_empty_no_color_variable_does_not_count(sb_root):
    # no-color.org: "when present and not an empty string"
    _, out = once_on_a_terminal(sb_root, env={"NO_COLOR": ""})
    assert GOLD_256 in colour_codes(out)


def test_color_wanted():
    assert color_wanted(False, {}) is True
    assert color_wanted(True, {}) is False
    assert color_wanted(False, {"NO_COLOR": "1"}) is False
    assert color_wanted(False, {"NO_COLOR": ""}) is True


def test_palette_layer_with_and_without_colour(sb_root):
    frame = layout(Controller(Store(sb_root), ViewState()), 80, 12, Glyphs(True))
    coloured = paint(frame, color=True, colors256=True)
    assert GOLD_256 in colour_codes(coloured)
    assert "\x1b" not in paint(frame, color=False)
    # no colour but reverse video (interactive, on an ANSI terminal): only reverse, never a colour
    assert set(colour_codes(paint(frame, color=False, reverse=True))) == {"7"}
