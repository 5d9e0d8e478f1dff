"""Drive the real curses UI (bin/slurm-sb-tui) in a detached tmux session: send keys, read the screen.

Needs tmux (``apt-get install -y tmux``): skipped with a reason when absent, a failure under CI=true.
Each test uses its own tmux server socket and kills only that server.
"""

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from slurmctl.scoreboard.tui.cli import textual_installed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(REPO, "bin", "slurm-sb-tui")
PY36 = "/root/.pyenv/versions/3.6.15/bin/python3"


def require_tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux:
        return tmux
    if os.environ.get("CI") == "true":
        pytest.fail("tmux is required in CI for the curses UI test (apt-get install -y tmux)")
    pytest.skip("tmux not installed (apt-get install -y tmux)")


class Tmux:
    """One detached tmux server + session running a command at a fixed size."""

    def __init__(self, command: str, width: int = 100, height: int = 30) -> None:
        self.tmux = require_tmux()
        self.socket = f"sbtui-test-{uuid.uuid4().hex[:12]}"
        # The shell line reports the exit status after the UI leaves its alternate screen.
        shell = f"{command}; echo UI-EXITED=$?; sleep 60"
        self.run("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), shell)

    def run(self, *args: str) -> str:
        res = subprocess.run(
            [self.tmux, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0, f"tmux {args[0]} failed: {res.stderr}"
        return res.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", "t", key)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "t", "-l", text)

    def wait_for(self, *texts: str, gone: str = "") -> str:
        """Return the screen once it shows all ``texts`` (and not ``gone``); fail with the screen if never.

        The deadline only bounds a hung UI; nothing here asserts how long anything took.
        """
        deadline = time.monotonic() + 20
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts) and not (gone and gone in screen):
                return screen
            time.sleep(0.1)
        pytest.fail(f"screen never showed {texts!r} (gone={gone!r}):\n{screen}")

    def close(self) -> None:
        try:
            path = self.run("display-message", "-p", "#{socket_path}").strip()
        except AssertionError:  # the server is already gone
            path = ""
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], stderr=subprocess.DEVNULL, timeout=30)
        if path and os.path.basename(path) == self.socket:  # tmux leaves the socket file behind
            with contextlib.suppress(OSError):
                os.unlink(path)


@pytest.fixture
def tmux_ui(sb_root):
    sessions = []

    # TERM stays tmux's own (default-terminal): send-keys encodes Home/End/PgUp for that terminal.
    def start(python: str = sys.executable, env: str = "LANG=C.UTF-8", **kw):
        # LINES/COLUMNS from the test runner must not matter: the UI asks the terminal
        program = " ".join(shlex.quote(p) for p in (python, BIN, "--root", sb_root, "--refresh-sec", "0"))
        cmd = f"env -u PYTHONPATH LINES=24 COLUMNS=80 {env} {program}"
        session = Tmux(cmd, **kw)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def test_curses_ui_keys_m_w_search_sort_filter_cluster_resize_quit(tmux_ui):
    ui = tmux_ui()
    screen = ui.wait_for("SlurmScoreboard Hiscores", "alice")
    assert "Skill: CPU Hours" in screen and "Window: All time" in screen and "All clusters (2)" in screen
    assert "\u265b 1 \u2503 alice" in screen and "1.33e3 CPU-h" in screen  # crown, heavy border, XP
    assert "mallory" not in screen  # opted out
    assert ("Tip: for the deluxe UI" in screen) == (not textual_installed())

    ui.keys("m")  # Wall Hours: no such board in the fixture
    ui.wait_for("Skill: Wall Hours", "No All time board for Wall Hours")
    ui.keys("m")
    screen = ui.wait_for("Skill: GPU Hours", "5.00e3 GPU-h")
    ui.keys("m", "m", "m")
    ui.wait_for("Skill: CPU Hours", "1.33e3 CPU-h")

    ui.keys("w")
    screen = ui.wait_for("Window: Last 30 days", "summed here")
    rows = [line for line in screen.splitlines() if "CPU-h" in line]
    assert ["frank" in rows[0], "bob" in rows[1], "alice" in rows[2]] == [True, True, True]
    ui.keys("w", "w")
    ui.wait_for("Window: All time", "1.33e3 CPU-h")

    ui.keys("/")
    ui.wait_for("Search player")
    ui.type("car")
    ui.keys("Enter")
    ui.wait_for("match 1 of 1 for 'car'")

    ui.keys("Tab", "s")
    ui.wait_for("Player \u25b2")
    ui.keys("s")
    screen = ui.wait_for("Player \u25bc")
    rows = [line for line in screen.splitlines() if "CPU-h" in line]
    assert "frank" in rows[0] and "alice" in rows[-1]

    ui.keys("f")
    ui.type("a")
    ui.keys("Enter")
    screen = ui.wait_for("filter 'a' (4 of 6)")  # alice, frank, carol, dave
    assert "bob" not in screen and "eve" not in screen and "frank" in screen

    ui.keys("g")
    screen = ui.wait_for("Cluster: bell")
    assert "Main" not in screen

    ui.run("resize-window", "-t", "t", "-x", "30", "-y", "8")
    ui.wait_for("Terminal too small (30x8)")
    ui.run("resize-window", "-t", "t", "-x", "90", "-y", "20")
    ui.wait_for("Cluster: bell", gone="too small")

    ui.keys("q")
    ui.wait_for("UI-EXITED=0")


def test_curses_ui_scrolls_with_keys(tmux_ui, sb_root, board_writer):
    board_writer(sb_root, "ALL", "alltime", "elapsed_hours", {f"p{i:03d}": 1000 - i for i in range(200)})
    ui = tmux_ui(height=20)
    ui.wait_for("alice")
    ui.keys("m")
    # 20 lines - 8 of frame = 12 player rows
    ui.wait_for("Skill: Wall Hours", "p000", "Players 1-12 of 200")
    ui.keys("NPage")
    ui.wait_for("Players 2-13 of 200")  # the cursor went a page down (row 13); the view follows it
    ui.keys("End")
    screen = ui.wait_for("Players 189-200 of 200")
    assert "p199" in screen and "p188" in screen and "p187" not in screen
    ui.keys("Home", "j", "j", "Down")
    ui.wait_for("Players 1-12 of 200")
    ui.keys("PPage", "k")
    ui.wait_for("Players 1-12 of 200")
    ui.keys("q")
    ui.wait_for("UI-EXITED=0")


@pytest.mark.skipif(not os.path.exists(PY36), reason="no Python 3.6 interpreter at " + PY36)
def test_curses_ui_on_python36_with_a_c_locale(tmux_ui):
    # Login nodes: Python 3.6, maybe LANG=C. Expect ASCII borders and crown, and the Textual tip
    # (textual is not installed for that interpreter).
    ui = tmux_ui(python=PY36, env="LANG=C LC_ALL=C")
    screen = ui.wait_for("* SlurmScoreboard Hiscores *", "alice")
    assert "|    * 1 | alice" in screen and "Tip: for the deluxe UI, pip install textual" in screen
    ui.keys("m", "m")
    ui.wait_for("Skill: GPU Hours", "5.00e3 GPU-h")
    ui.keys("q")
    ui.wait_for("UI-EXITED=0")
