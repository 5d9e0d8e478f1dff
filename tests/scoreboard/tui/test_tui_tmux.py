"""Drive the real curses UI (bin/slurm-sb-tui) in a detached tmux session: send keys, read the screen.

Needs tmux (``apt-get install -y tmux``): skipped with a reason when absent, a failure under CI=true.
Each test uses its own tmux server socket and kills only that server.
"""

import contextlib
import os
import re
import shlex
import shutil
import signal
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

    def screen_with_attributes(self) -> str:
        """Return the screen with its colours and attributes as SGR escape codes."""
        return self.run("capture-pane", "-p", "-e", "-t", "t")

    def pane_tty(self) -> str:
        return self.run("display-message", "-p", "-t", "t", "#{pane_tty}").strip()

    def terminal_lflag(self) -> int:
        """Return the local-mode flags (ECHO, ICANON...) of the pane's terminal, as the UI left them."""
        import termios

        fd = os.open(self.pane_tty(), os.O_RDWR | os.O_NOCTTY)
        try:
            return termios.tcgetattr(fd)[3]
        finally:
            os.close(fd)

    def ui_pid(self) -> int:
        """Return the pid of the ``python bin/slurm-sb-tui`` process under the pane (Linux /proc)."""
        todo = [self.run("display-message", "-p", "-t", "t", "#{pane_pid}").strip()]
        if not os.path.exists(f"/proc/{todo[0]}/task/{todo[0]}/children"):
            pytest.skip("needs /proc/PID/task/PID/children (Linux) to find the UI's pid")
        seen = []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if BIN.encode() in handle.read().split(b"\0")[1:]:  # not a shell's -c string
                        return int(pid)
                with open(f"/proc/{pid}/task/{pid}/children") as handle:
                    todo += handle.read().split()
        pytest.fail(f"no {BIN} process under the pane: {seen}")

    def wait_for(self, *texts: str, gone: str = "", timeout: float = 20) -> str:
        """Return the screen once it shows all ``texts`` (and not ``gone``); fail with the screen if never.

        The deadline only bounds a hung UI; nothing here asserts how long anything took.
        """
        deadline = time.monotonic() + timeout
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
    def start(
        python: str = sys.executable,
        env: str = "LANG=C.UTF-8",
        args=("--refresh-sec", "0"),
        job_control: bool = False,
        **kw,
    ):
        # LINES/COLUMNS from the test runner must not matter: the UI asks the terminal
        program = " ".join(shlex.quote(p) for p in (python, BIN, "--root", sb_root, *args))
        cmd = f"env -u PYTHONPATH LINES=24 COLUMNS=80 {env} {program}"
        if job_control:
            # Ctrl-Z needs a job-control shell: without one the UI's process group is orphaned and
            # the kernel drops the stop. It says UI-STOPPED=148 when the UI stops; Enter = fg.
            bash = shutil.which("bash")
            if not bash:
                pytest.skip("needs bash for a job-control shell")
            inner = f"set -m; {cmd}; echo UI-STOPPED=$?; read -r _; fg"
            cmd = f"{bash} --norc --noprofile -c {shlex.quote(inner)}"
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


def replace_board(root: str, board_writer, values: dict) -> None:
    """Replace the merged all-time CPU-hours board the way the poller does: write aside, rename."""
    scratch = os.path.join(root, "scratch")
    written = board_writer(scratch, "ALL", "alltime", "clock_hours", values)
    target = os.path.join(root, "leaderboards", "alltime", "clock_hours.json")
    os.replace(written, target)  # atomic: the UI sees the old file or the new one, never half


@pytest.mark.parametrize(
    "env, args",
    [
        ("LANG=C.UTF-8", ["--refresh-sec", "1"]),
        ("LANG=C.UTF-8 TERM=dumb", ["--refresh-sec", "1"]),
        ("LANG=C.UTF-8", ["--refresh-sec", "1", "--backend", "ansi"]),
    ],
    ids=["curses", "ansi-dumb", "ansi"],
)
def test_refresh_sec_shows_a_changed_file_without_a_key(tmux_ui, sb_root, board_writer, env, args):
    ui = tmux_ui(env=env, args=args)
    ui.wait_for("SlurmScoreboard Hiscores", "1.33e3 CPU-h")
    replace_board(sb_root, board_writer, {"alice": 7777, "frank": 950, "bob": 810})
    # no key is sent: only the periodic re-read can bring the new value (bounded wait, not a timing)
    screen = ui.wait_for("7.78e3 CPU-h", gone="1.33e3", timeout=15)
    assert "Players 1-3 of 3" in screen and "carol" not in screen
    ui.keys("q")
    ui.wait_for("UI-EXITED=0")


def test_ansi_ui_on_a_dumb_terminal_reads_keys(tmux_ui, sb_root, board_writer):
    board_writer(sb_root, "ALL", "alltime", "elapsed_hours", {f"p{i:03d}": 1000 - i for i in range(200)})
    ui = tmux_ui(env="LANG=C.UTF-8 TERM=dumb")
    screen = ui.wait_for("SlurmScoreboard Hiscores", "Window: All time", "alice")
    assert "\x1b" not in ui.screen_with_attributes()  # plain text: no colour, no attributes
    assert ">    \u265b 1 \u2503 alice" in screen  # the selected row is marked instead
    assert ("Tip: for the deluxe UI" in screen) == (not textual_installed())
    assert ui.terminal_lflag() & (termios_bits()) == 0  # cbreak, no echo

    ui.keys("w")
    ui.wait_for("Window: Last 30 days", "frank", gone="Window: All time")
    ui.keys("m")
    ui.wait_for("Skill: Wall Hours", "No Last 30 days board for Wall Hours", gone="Skill: CPU Hours")
    ui.keys("w", "w")
    rows = 29 - 8 - (0 if textual_installed() else 1)  # frames are one line shorter than the pane
    ui.wait_for("Window: All time", "Skill: Wall Hours", f"Players 1-{rows} of 200")
    ui.keys("NPage")
    ui.wait_for(f"Players 2-{rows + 1} of 200")
    ui.keys("End")
    ui.wait_for(f"Players {200 - rows + 1}-200 of 200", "> ")
    ui.keys("Home")
    ui.wait_for(f"Players 1-{rows} of 200", gone=f"Players 2-{rows + 1}")

    ui.keys("f")
    ui.wait_for("Filter players (text or glob")
    ui.type("p19x")
    ui.keys("BSpace", "Enter")
    ui.wait_for("filter 'p19' (10 of 200)")  # p190-p199

    ui.keys("q")
    ui.wait_for("UI-EXITED=0")
    assert ui.terminal_lflag() & termios_bits() == termios_bits()  # echo and line mode are back


def termios_bits() -> int:
    import termios

    return termios.ECHO | termios.ICANON


@pytest.mark.skipif(not os.path.exists(PY36), reason="no Python 3.6 interpreter at " + PY36)
def test_ansi_ui_on_python36_dumb_terminal_shows_the_textual_tip(tmux_ui):
    ui = tmux_ui(python=PY36, env="LANG=C LC_ALL=C TERM=dumb")
    screen = ui.wait_for("* SlurmScoreboard Hiscores *", "alice")
    assert "Tip: for the deluxe UI, pip install textual" in screen  # not installed for 3.6
    ui.keys("m", "m")
    ui.wait_for("Skill: GPU Hours", "5.00e3 GPU-h")
    ui.keys("q")
    ui.wait_for("UI-EXITED=0")


def test_ansi_ui_restores_the_terminal_on_ctrl_z_and_sigterm(tmux_ui):
    ui = tmux_ui(args=("--refresh-sec", "0", "--backend", "ansi"), job_control=True)
    ui.wait_for("SlurmScoreboard Hiscores", "alice")
    coloured = ui.screen_with_attributes()
    assert "38;5;214" in coloured or "[33m" in coloured  # an ANSI terminal: gold
    assert ui.terminal_lflag() & termios_bits() == 0  # cbreak, no echo
    ui.keys("Tab", "s")  # keys through the terminal's real escape sequences
    ui.wait_for("Player \u25b2")
    ui.keys("BTab", "/")
    ui.type("bo")
    ui.wait_for("Search player", "bo_")
    ui.keys("Escape")
    ui.wait_for("q quit", gone="Search player")

    ui.keys("C-z")  # the UI puts the terminal back, then stops; the shell gets it
    ui.wait_for("UI-STOPPED=148")
    assert ui.terminal_lflag() & termios_bits() == termios_bits()
    ui.keys("Enter")  # fg: the UI re-applies cbreak mode and redraws
    ui.wait_for("SlurmScoreboard Hiscores", gone="UI-STOPPED")
    assert ui.terminal_lflag() & termios_bits() == 0
    ui.keys("w")  # and it still reads keys
    ui.wait_for("Window: Last 30 days")

    os.kill(ui.ui_pid(), signal.SIGTERM)
    ui.wait_for("UI-EXITED=143")
    assert ui.terminal_lflag() & termios_bits() == termios_bits()


@pytest.mark.parametrize(
    "env, args, colour",
    [
        ("LANG=C.UTF-8", ("--refresh-sec", "0"), True),
        ("LANG=C.UTF-8 NO_COLOR=1", ("--refresh-sec", "0"), False),
        ("LANG=C.UTF-8", ("--refresh-sec", "0", "--no-color"), False),
    ],
    ids=["colour", "NO_COLOR", "--no-color"],
)
def test_curses_colours_follow_no_color(tmux_ui, env, args, colour):
    ui = tmux_ui(env=env, args=args)
    ui.wait_for("SlurmScoreboard Hiscores", "alice")
    params = set()
    for codes in re.findall(r"\x1b\[([0-9;]*)m", ui.screen_with_attributes()):
        params.update(codes.split(";"))
    palette = {"214", "34", "33", "32", "36"}  # gold and green (256 or 8 colours), cyan
    assert bool(params & palette) == colour, params
    assert "7" in params or colour  # without colour the selected row is in reverse video
    ui.keys("q")
    ui.wait_for("UI-EXITED=0")
