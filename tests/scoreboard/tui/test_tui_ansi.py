"""The ANSI backend's interactive mode, in process: key decoding, and the key loop on a pseudo-terminal.

The loop runs on the slave side of a pty; a fake output stream types the next keys into the master
side each time a frame is written, so the test needs no sleeps and no tmux. A SIGALRM guard turns a
hung loop into a failure instead of a hung test run.
"""

import os
import signal

import pytest

from slurmctl.scoreboard.tui.backend_ansi import CLEAR, KeyReader, paint, parse_keys, run_interactive
from slurmctl.scoreboard.tui.controller import Controller
from slurmctl.scoreboard.tui.frame import Glyphs, layout, mark_selection, to_text
from slurmctl.scoreboard.tui.store import Store
from slurmctl.scoreboard.tui.viewmodel import ViewState

pty = pytest.importorskip("pty")
termios = pytest.importorskip("termios")

CBREAK_BITS = termios.ECHO | termios.ICANON


# -- key decoding (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, names",
    [
        ("wmq", ["w", "m", "q"]),
        ("\t\x1b[Z", ["TAB", "BTAB"]),
        ("\x1b[A\x1b[B\x1b[C\x1b[D", ["UP", "DOWN", "RIGHT", "LEFT"]),
        ("\x1bOA\x1bOB\x1bOC\x1bOD", ["UP", "DOWN", "RIGHT", "LEFT"]),  # application cursor mode
        ("\x1b[5~\x1b[6~", ["PGUP", "PGDN"]),
        ("\x1b[H\x1b[1~\x1b[7~\x1bOH", ["HOME"] * 4),
        ("\x1b[F\x1b[4~\x1b[8~\x1bOF", ["END"] * 4),
        ("\x1b[1;5A\x1b[5;2~", ["UP", "PGUP"]),  # with Ctrl/Shift held
        ("\r\n\x7f\b", ["ENTER", "ENTER", "BACKSPACE", "BACKSPACE"]),
        ("\x1b", ["ESC"]),  # nothing followed: the Esc key
        ("\x1bq", ["ESC", "q"]),  # Esc, then q typed quickly
        ("a\x01\x00b\x1b[3~\x1b[99z", ["a", "b"]),  # other controls, Delete, unknown sequences: dropped
        ("\u00e9/", ["\u00e9", "/"]),
    ],
)
def test_parse_keys_gives_the_curses_backends_names(typed, names):
    assert parse_keys(typed) == (names, "")


@pytest.mark.parametrize("cut", ["\x1b", "\x1b[", "\x1b[5", "\x1b[1;5", "\x1bO"])
def test_a_sequence_cut_off_by_a_read_waits_for_its_rest(cut):
    assert parse_keys("j" + cut, final=False) == (["j"], cut)
    assert parse_keys(cut, final=True)[0][0] == "ESC"  # nothing more came: it was the Esc key


def test_key_reader_completes_sequences_and_reports_end_of_input():
    r, w = os.pipe()
    try:
        reader = KeyReader(r, esc_delay=0.01)
        os.write(w, "\x1b[6~x\u00e9\x1b".encode())
        assert reader.read() == ["PGDN", "x", "\u00e9", "ESC"]  # the lone ESC after the delay
        os.write(w, b"\xc3")  # the first half of an e-acute: held until the rest comes
        os.write(w, b"\xa9q")
        assert reader.read() == ["\u00e9", "q"]
        os.close(w)
        w = -1
        assert reader.read() is None
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# -- the interactive loop on a pty -----------------------------------------------------------------


class Typist:
    """A stand-in for stdout: records what is written; after each frame, types the next keys."""

    def __init__(self, master: int, slave: int, keys, on_frame=None) -> None:
        self.master, self.slave = master, slave
        self.keys = list(keys)
        self.on_frame = on_frame
        self.text = ""
        self.frames = []
        self.modes = []  # the terminal's local-mode flags whenever a frame was shown

    def write(self, text: str) -> int:
        self.text += text
        if "SlurmScoreboard Hiscores" in text:
            self.frames.append(text)
            self.modes.append(termios.tcgetattr(self.slave)[3])
            if self.on_frame:
                self.on_frame(self)
            if self.keys:
                os.write(self.master, self.keys.pop(0).encode())
        return len(text)

    def flush(self) -> None:
        pass


def _hung(_signum, _frame):
    raise AssertionError("the interactive loop hung waiting for a key")


class PtySession:
    """One pseudo-terminal; ``run`` drives ``run_interactive`` on its slave side."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.before = self.lflag()
        self.typist = None

    def lflag(self) -> int:
        return termios.tcgetattr(self.slave)[3]

    def run(self, ctrl, keys, ansi, on_frame=None, size=(80, 20), refresh_sec=0):
        self.typist = Typist(self.master, self.slave, keys, on_frame)
        old = signal.signal(signal.SIGALRM, _hung)
        signal.alarm(30)  # only a guard against a hang; no test measures time
        try:
            return run_interactive(
                ctrl, lambda: size, Glyphs(True), False, refresh_sec, ansi, fd=self.slave, out=self.typist
            )
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def term():
    session = PtySession()
    assert session.before & CBREAK_BITS == CBREAK_BITS  # a fresh pty is in line mode with echo
    yield session
    session.close()


def make(root, **state):
    return Controller(Store(root), ViewState(**state))


def test_keys_reach_the_controller_and_an_ansi_terminal_is_redrawn_in_place(sb_root, term):
    ctrl = make(sb_root)
    assert term.run(ctrl, ["w", "m", "g", "q"], ansi=True) == 0
    out = term.typist
    assert term.lflag() == term.before  # restored
    assert all(mode & CBREAK_BITS == 0 for mode in out.modes)  # no echo, key by key, while running
    assert all(mode & termios.ISIG for mode in out.modes)  # Ctrl-C and Ctrl-Z still work
    f = out.frames
    assert len(f) == 4 and all(frame.startswith(CLEAR) for frame in f)
    assert not any(frame.endswith("\n") for frame in f)  # the bottom line must not scroll the title off
    assert "Window: All time" in f[0] and "Window: Last 30 days" in f[1]
    assert "Skill: Wall Hours" in f[2] and "No Last 30 days board for Wall Hours" in f[2]
    assert "Cluster: bell" in f[3]
    assert out.text.endswith("\n")  # the shell's prompt starts on a fresh line


def test_escape_sequences_scroll_sort_and_search(sb_root, board_writer, term):
    board_writer(sb_root, "ALL", "alltime", "elapsed_hours", {f"p{i:03d}": 1000 - i for i in range(200)})
    ctrl = make(sb_root, metric="elapsed_hours")
    # 20 lines - 8 of frame = 12 rows; every key here changes the screen, so each gives a frame
    keys = ["\x1b[6~", "\x1b[F", "\x1b[1~", "\x1b[B\x1b[B", "\t", "s", "/p19", "9", "\r", "\x1b", "q"]
    assert term.run(ctrl, keys, ansi=True) == 0
    f = term.typist.frames
    assert "Players 1-12 of 200" in f[0]
    assert "Players 2-13 of 200" in f[1]  # PgDn: the cursor went a page down, the view follows
    assert "Players 189-200 of 200" in f[2]  # End
    assert "Players 1-12 of 200" in f[3]  # Home
    assert "Player \u25b2" in f[6]  # Tab, s: sorted by player
    caret = "\x1b[7m_"  # the prompt's caret, in reverse video without colour
    assert "previous): p19" + caret in f[7] and "previous): p199" + caret in f[8]
    assert "match 1 of 1 for 'p199'" in f[9] and ctrl.state.cursor == 199
    assert "Search player" not in f[10] and "match 1" not in f[10]  # Esc
    assert term.lflag() == term.before


def test_dumb_terminal_gets_plain_frames_after_each_key_and_line_prompts(sb_root, term):
    ctrl = make(sb_root)
    keys = ["w", "m", "mmmm", "fbx\x7f\x7f\x7fa\r", "j", "zz", "q"]
    assert term.run(ctrl, keys, ansi=False) == 0
    out = term.typist
    assert term.lflag() == term.before
    assert "\x1b" not in out.text  # no cursor movement, no colour
    f = out.frames
    assert len(f) == 7
    for frame in f:
        assert len(frame.splitlines()) == 19  # one line less than the terminal: all of it stays visible
    assert "Window: Last 30 days" in f[1] and "Skill: Wall Hours" in f[2]
    assert "Skill: CPU Hours" in f[3] and "Window: Last 30 days" in f[3]
    # the filter prompt is a line: its label, each edit echoed, and the frame after Enter
    prompt = "Filter players (text or glob like al*; empty = everyone): "
    assert prompt + "bx\b \b\b \ba\n" in out.text
    assert "filter 'a' (2 of 3)" in f[4]  # frank and alice, not bob
    assert "\u2503>Rank" in f[0]  # the focused column is marked
    assert ">    \u265b 1 \u2503 frank" in f[4]  # and the selected row
    assert "\u2503      3 \u2503 alice" in f[4] and ">      3 \u2503 alice" in f[5]  # j moved it
    assert f[6] == f[5]  # an unknown key still prints the frame: the user sees the key was read
    assert out.text.endswith("\n")


def test_terminal_is_restored_after_an_exception(sb_root, term):
    def boom(_typist):
        raise RuntimeError("drawing failed")

    with pytest.raises(RuntimeError, match="drawing failed"):
        term.run(make(sb_root), [], ansi=True, on_frame=boom)
    assert term.typist.modes[0] & CBREAK_BITS == 0 and term.lflag() == term.before


def test_terminal_is_restored_after_sigterm(sb_root, term):
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:

        def sigterm(_typist):
            # without the backend's handler this would kill the test run: check that first
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGTERM)

        with pytest.raises(SystemExit) as exc:
            term.run(make(sb_root), [], ansi=False, on_frame=sigterm)
        assert exc.value.code == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the old handler is put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert term.typist.modes[0] & CBREAK_BITS == 0 and term.lflag() == term.before


def test_ctrl_c_quits_cleanly(sb_root, term):
    def sigint(_typist):
        os.kill(os.getpid(), signal.SIGINT)

    assert term.run(make(sb_root), [], ansi=True, on_frame=sigint) == 0
    assert term.lflag() == term.before and term.typist.text.endswith("\n")


def test_a_hang_up_ends_the_loop(sb_root, term):
    def hang_up(_typist):
        os.close(term.master)  # the terminal went away: reads see end of input (EIO on Linux)
        term.master = os.open(os.devnull, os.O_WRONLY)  # for the fixture's close()

    assert term.run(make(sb_root), [], ansi=True, on_frame=hang_up) == 0


def test_periodic_refresh_redraws_when_a_file_changed(sb_root, board_writer, term, monkeypatch):
    monkeypatch.setattr("slurmctl.scoreboard.tui.backend_ansi.MIN_REFRESH_SEC", 0.01)

    def change_then_quit(typist):
        if len(typist.frames) == 1:  # no key is pressed: only the refresh can show the new value
            board_writer(sb_root, "ALL", "alltime", "clock_hours", {"alice": 7777, "frank": 950})
        else:
            os.write(typist.master, b"q")

    assert term.run(make(sb_root), [], ansi=True, on_frame=change_then_quit, refresh_sec=0.01) == 0
    f = term.typist.frames
    assert "1.33e3 CPU-h" in f[0] and "7.78e3 CPU-h" in f[1]


# -- what is drawn without colour ------------------------------------------------------------------


def test_mark_selection_points_at_the_cursor_row_and_focused_header(sb_root):
    ctrl = make(sb_root)
    ctrl.handle("j")
    ctrl.handle("TAB")
    frame = layout(ctrl, 80, 14, Glyphs(True))
    marked = mark_selection(frame)
    assert [sum(len(t) for t, _ in line) for line in marked] == [80] * 14  # widths unchanged
    text = to_text(marked)
    assert "\u2503>Player" in text and ">      2 \u2503 frank" in text
    assert text.count(">") == 2 and to_text(frame).count(">") == 0


def test_reverse_video_without_colour_marks_only_the_cursor_and_focus(sb_root):
    frame = layout(make(sb_root), 80, 12, Glyphs(True))
    mono = paint(frame, color=False, reverse=True)
    assert "\x1b[7m" in mono
    codes = {code for code in mono.split("\x1b[")[1:]}
    assert {c.split("m")[0] for c in codes} == {"7", "0"}  # reverse and reset, no colour at all
