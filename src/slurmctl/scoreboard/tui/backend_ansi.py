"""The ANSI backend: frames with escape codes, or as plain text for dumb terminals and pipes.

* ``--once``, or stdin/stdout not a terminal: print one frame (``render_once``), or with a refresh
  interval on a terminal reprint it until Ctrl-C (``run_loop``): in place (clear + home) on an ANSI
  terminal, one frame after another on a dumb one.
* stdin and stdout both terminals (e.g. ``TERM=dumb``, or a Python without curses): the interactive
  UI (``run_interactive``). The terminal is put in cbreak/no-echo mode (restored on every way out:
  ``q``, Ctrl-C, an exception, SIGTERM/SIGHUP, and around Ctrl-Z), keys are read with ``select()``
  (timeout: the refresh interval) and decoded to the key names the curses backend gives the shared
  controller (``parse_keys``). An ANSI terminal is redrawn in place; a dumb one gets each new frame
  printed plainly (no cursor movement, no colour; ``>`` marks the selected row and focused column),
  and the ``f`` / ``/`` prompts are read as a line, echoed as typed.
"""

import codecs
import contextlib
import errno
import os
import select
import shutil
import signal
import sys
import time
from typing import IO, Callable, List, Optional, Sequence, Tuple

from .controller import Controller
from .frame import Glyphs, Line, layout, mark_selection, to_text
from .palette import BASIC, PALETTE, XTERM256

try:
    import termios
except ImportError:  # not a POSIX system: only the print-and-exit modes work
    termios = None  # type: ignore

MIN_REFRESH_SEC = 1.0  # never re-read the shared filesystem more often than this
ESC_DELAY_SEC = 0.05  # after ESC, how long to wait for the rest of an arrow key's sequence
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen
REVERSE = "\x1b[7m"  # without colour the cursor row and focused header use reverse video

# Key decoding: bytes a terminal sends -> the controller's key names (the curses backend's names).
_CHARS = {"\t": "TAB", "\n": "ENTER", "\r": "ENTER", "\x1b": "ESC", "\x7f": "BACKSPACE", "\b": "BACKSPACE"}
_CSI_FINAL = {"A": "UP", "B": "DOWN", "C": "RIGHT", "D": "LEFT", "H": "HOME", "F": "END", "Z": "BTAB"}
_CSI_TILDE = {"1": "HOME", "7": "HOME", "4": "END", "8": "END", "5": "PGUP", "6": "PGDN"}
_SS3 = {"A": "UP", "B": "DOWN", "C": "RIGHT", "D": "LEFT", "H": "HOME", "F": "END", "M": "ENTER"}


def sgr(style: str, colors256: bool) -> str:
    """Return the SGR escape sequence that starts ``style`` ("" for unknown or plain). Pure."""
    spec = PALETTE.get(style)
    if not spec:
        return ""
    fg, bg, attrs = spec
    codes = []
    if "bold" in attrs:
        codes.append("1")
    if "underline" in attrs:
        codes.append("4")
    if colors256:
        codes.append(f"38;5;{XTERM256[fg]}")
        if bg:
            codes.append(f"48;5;{XTERM256[bg]}")
    else:
        codes.append(str(30 + BASIC[fg]))
        if bg:
            codes.append(str(40 + BASIC[bg]))
    return "\x1b[" + ";".join(codes) + "m"


def _reverse(style: str) -> str:
    """Return reverse video for a style with a background (cursor row, focused header), else ""."""
    spec = PALETTE.get(style)
    return REVERSE if spec and spec[1] else ""


def paint(frame: Sequence[Line], color: bool, colors256: bool = False, reverse: bool = False) -> str:
    """Return the frame as text, with ANSI colours when ``color``; trailing blanks trimmed. Pure.

    Without colour the text is plain, unless ``reverse``: then the styles with a background (the
    cursor row, the focused header) are drawn in reverse video, like the curses backend's --no-color.
    """
    if not color and not reverse:
        return to_text(frame)
    out = []
    for line in frame:
        # drop the trailing unstyled padding so pasted output has no ragged spaces
        segments = list(line)
        while segments and not segments[-1][1] and not segments[-1][0].strip():
            segments.pop()
        parts = []
        for text, style in segments:
            code = sgr(style, colors256) if color else _reverse(style)
            parts.append(code + text + "\x1b[0m" if code else text)
        out.append("".join(parts) + "\n")
    return "".join(out)


def render_once(
    ctrl: Controller, width: int, height: int, glyphs: Glyphs, color: bool, colors256: bool = False
) -> str:
    """Return one painted frame of ``ctrl`` at ``width`` x ``height``. Reads only."""
    return paint(layout(ctrl, width, height, glyphs), color, colors256)


def run_loop(
    ctrl: Controller,
    size,
    glyphs: Glyphs,
    color: bool,
    refresh_sec: float,
    ansi: bool,
    out: Optional[IO[str]] = None,
    colors256: bool = False,
) -> int:
    """Print a frame every ``refresh_sec`` seconds until Ctrl-C; return the exit code (0).

    Reads no keys (stdin is not a terminal). ``size`` is a callable returning the current
    (columns, lines). ``ansi`` False (a dumb terminal) prints frames one after another instead of
    redrawing in place.
    """
    stream = out or sys.stdout
    try:
        while True:
            cols, lines = size()
            text = render_once(ctrl, cols, lines, glyphs, color, colors256)
            # in place: no newline after the last line, or the terminal scrolls the title away
            stream.write(CLEAR + text[:-1] if ansi else "\n" + text)
            stream.flush()
            time.sleep(max(MIN_REFRESH_SEC, refresh_sec))
            ctrl.reload()
    except KeyboardInterrupt:
        return 0


# -- keys ----------------------------------------------------------------------------------------
def _sequence_end(text: str, start: int) -> Optional[int]:
    """Return the index just past the escape sequence at ``text[start]`` (an ESC).

    ``start + 1`` when the ESC starts no sequence (the Esc key, maybe followed by a typed key);
    None when the text ends inside a sequence. Pure.
    """
    if start + 1 >= len(text):
        return None
    kind = text[start + 1]
    if kind == "O":  # SS3: ESC O <letter> (application-mode arrows, Home/End on some terminals)
        return start + 3 if start + 2 < len(text) else None
    if kind != "[":
        return start + 1
    # CSI: ESC [ parameter bytes (0x30-0x3f), intermediate bytes (0x20-0x2f), one final byte
    i = start + 2
    while i < len(text) and "\x20" <= text[i] <= "\x3f":
        i += 1
    if i >= len(text):
        return None
    return i + 1 if "\x40" <= text[i] <= "\x7e" else start + 1


def _sequence_name(seq: str) -> str:
    """Return the key name of one escape sequence without its ESC ("" if unknown). Pure."""
    if seq[0] == "O":
        return _SS3.get(seq[1:], "")
    params, final = seq[1:-1], seq[-1]
    if final == "~":
        return _CSI_TILDE.get(params.split(";")[0], "")
    # "1;5A" is Ctrl-Up and so on: the modifier does not matter here
    return _CSI_FINAL.get(final, "")


def parse_keys(text: str, final: bool = True) -> Tuple[List[str], str]:
    """Split typed text into the controller's key names; return (names, the unparsed rest). Pure.

    Printable characters are their own names; Tab, Enter, Esc, Backspace and the escape sequences of
    arrows, PgUp/PgDn, Home/End and Shift-Tab get the names the curses backend uses; other control
    characters and unknown sequences are dropped. When ``text`` ends inside an escape sequence the
    rest is returned to be completed by the next read, unless ``final`` (no more bytes came): then
    a lone ESC is the Esc key.
    """
    names = []  # type: List[str]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\x1b":
            name = _CHARS.get(ch, ch)
            if name != ch or ch.isprintable():
                names.append(name)
            i += 1
            continue
        end = _sequence_end(text, i)
        if end is None and not final:
            return names, text[i:]
        if end is None or end == i + 1:
            names.append("ESC")
            i += 1
            continue
        name = _sequence_name(text[i + 1 : end])
        if name:
            names.append(name)
        i = end
    return names, ""


class KeyReader:
    """Reads key names from a terminal file descriptor in cbreak mode (UTF-8, escape sequences)."""

    def __init__(self, fd: int, esc_delay: float = ESC_DELAY_SEC) -> None:
        self.fd = fd
        self.esc_delay = esc_delay
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def read(self) -> Optional[List[str]]:
        """Return the keys now waiting on the fd (call when it is readable); None at end of input.

        An escape sequence split across reads is completed by waiting up to ``esc_delay`` for its
        rest, so an ESC with nothing after it is the Esc key.
        """
        data = self._read()
        if not data:
            return None
        names, rest = parse_keys(self._decoder.decode(data), final=False)
        for _ in range(16):  # a sequence is a few bytes; never wait more than a few delays
            if not rest or not select.select([self.fd], [], [], self.esc_delay)[0]:
                break
            more = self._read()
            if not more:
                break
            got, rest = parse_keys(rest + self._decoder.decode(more), final=False)
            names += got
        if rest:
            names += parse_keys(rest, final=True)[0]
        return names

    def _read(self) -> bytes:
        """Return the bytes waiting on the fd; b"" at end of input."""
        try:
            return os.read(self.fd, 4096)
        except OSError as exc:
            if exc.errno == errno.EIO:  # Linux: the terminal hung up
                return b""
            raise


# -- the terminal --------------------------------------------------------------------------------
def can_read_keys() -> bool:
    """Return True when the interactive mode can run here: termios, and stdin and stdout terminals."""
    try:
        return termios is not None and sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class CbreakTerminal:
    """Context manager: ``fd`` in cbreak/no-echo mode while inside, restored on every way out.

    Signals while inside: SIGTERM and SIGHUP raise SystemExit(128 + signal) so ``finally`` blocks
    run and the terminal is restored; Ctrl-C stays KeyboardInterrupt (ISIG is kept on); SIGTSTP
    (Ctrl-Z) restores the terminal, stops, and on SIGCONT re-applies cbreak mode and asks for a
    redraw; SIGWINCH asks for a redraw. "Asks" = a byte on ``wake_fd``, which the key loop also
    selects on. Handlers are installed only where the signal has its default action (and only in
    the main thread), and the previous ones are put back on exit.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved = None  # type: Optional[list]
        self.wake_fd = -1
        self._wake_w = -1
        self._handlers = {}  # type: dict

    def __enter__(self) -> "CbreakTerminal":
        self.saved = termios.tcgetattr(self.fd)
        self.wake_fd, self._wake_w = os.pipe()
        for end in (self.wake_fd, self._wake_w):
            os.set_blocking(end, False)
        try:
            self._install()
            self.apply()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.restore()
        for signum, handler in self._handlers.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, handler)
        self._handlers = {}
        for end in (self.wake_fd, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(end)
        self.wake_fd = self._wake_w = -1

    def apply(self) -> None:
        """Put the terminal in cbreak mode: keys arrive one by one, unechoed; signals still work."""
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ECHO | termios.ICANON)  # lflag: ISIG stays, so Ctrl-C and Ctrl-Z work
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)

    def restore(self) -> None:
        """Put the terminal back as it was on entry (never raises: it may be gone)."""
        if self.saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)

    def wake(self, why: bytes) -> None:
        with contextlib.suppress(OSError):  # a full pipe already has a wake-up waiting
            os.write(self._wake_w, why)

    def drain_wake(self) -> bytes:
        """Return (and consume) the wake-up reasons: ``c`` resumed after Ctrl-Z, ``w`` resized."""
        try:
            return os.read(self.wake_fd, 4096)
        except OSError:  # nothing there
            return b""

    def _install(self) -> None:
        handlers = [("SIGTERM", self._on_exit), ("SIGHUP", self._on_exit)]
        handlers += [("SIGTSTP", self._on_stop), ("SIGWINCH", self._on_resize)]
        for name, handler in handlers:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                if signal.getsignal(signum) != signal.SIG_DFL:
                    continue  # ignored or handled by whoever started us: leave it
                self._handlers[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: no handlers, the finally blocks still restore
                return

    def _on_exit(self, signum, _frame) -> None:
        raise SystemExit(128 + signum)

    def _on_stop(self, signum, _frame) -> None:
        self.restore()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # stop here, with the terminal as the shell expects it
        signal.signal(signum, self._on_stop)  # continued (fg)
        with contextlib.suppress(termios.error, OSError):
            self.apply()
        self.wake(b"c")

    def _on_resize(self, _signum, _frame) -> None:
        self.wake(b"w")


def terminal_size(fd: int, fallback: Tuple[int, int] = (100, 30)) -> Tuple[int, int]:
    """Return the terminal's (columns, lines): asked of the terminal first, since exported
    COLUMNS/LINES are often stale, then from the environment, then ``fallback``."""
    try:
        cols, lines = os.get_terminal_size(fd)
        if cols > 0 and lines > 0:
            return cols, lines
    except OSError:
        pass
    return tuple(shutil.get_terminal_size(fallback))  # type: ignore


class _Screen:
    """Writes frames: in place on an ANSI terminal, appended plainly on a dumb one."""

    def __init__(self, stream: IO[str], ansi: bool, color: bool, colors256: bool) -> None:
        self.stream = stream
        self.ansi = ansi
        self.color = color and ansi
        self.colors256 = colors256
        self.shown = None  # type: Optional[str]
        self.at_line_start = True

    def render(self, ctrl: Controller, size: Callable[[], Tuple[int, int]], glyphs: Glyphs) -> str:
        cols, lines = size()
        if self.ansi:
            frame = layout(ctrl, cols, lines, glyphs)
            # no newline after the last line: on the bottom row it would scroll the title away
            return CLEAR + paint(frame, self.color, self.colors256, reverse=not self.color)[:-1]
        # one line less than the terminal: the whole frame stays visible above the cursor line
        return to_text(mark_selection(layout(ctrl, cols, max(0, lines - 1), glyphs)))

    def show(self, text: str, force: bool = False) -> None:
        """Write ``text`` unless it is what the screen already shows (``force``: write anyway)."""
        if force or text != self.shown:
            self.write(text)
            self.shown = text

    def write(self, text: str) -> None:
        if text:  # before writing: a write cut short by Ctrl-C still leaves the cursor mid-line
            self.at_line_start = text.endswith("\n")
        self.stream.write(text)
        self.stream.flush()

    def end(self) -> None:
        """Leave the cursor at the start of a line below the frame, for the shell's prompt."""
        if not self.at_line_start:
            with contextlib.suppress(OSError, ValueError):  # the terminal may be gone
                self.write("\n")


def _echo_prompt(screen: _Screen, before: str, after: str) -> None:
    """On a dumb terminal, echo the prompt's edit from ``before`` to ``after`` (no redraw)."""
    common = 0
    while common < min(len(before), len(after)) and before[common] == after[common]:
        common += 1
    screen.write("\b \b" * (len(before) - common) + after[common:])


def run_interactive(
    ctrl: Controller,
    size: Callable[[], Tuple[int, int]],
    glyphs: Glyphs,
    color: bool,
    refresh_sec: float,
    ansi: bool,
    colors256: bool = False,
    fd: Optional[int] = None,
    out: Optional[IO[str]] = None,
) -> int:
    """Run the interactive UI on a terminal until ``q``, Ctrl-C or end of input; return 0.

    Keys from ``fd`` (default: stdin) go to the shared controller; frames go to ``out`` (default:
    stdout): redrawn in place when ``ansi``, else printed plainly after each key (the ``f`` and
    ``/`` prompts are then echoed as typed, and the frame is printed after Enter or Esc). Files are
    re-read every ``refresh_sec`` seconds (at least MIN_REFRESH_SEC; 0 = only on ``r``).
    SIGTERM/SIGHUP end it with SystemExit(128 + signal), after restoring the terminal.
    """
    fd = sys.stdin.fileno() if fd is None else fd
    screen = _Screen(out or sys.stdout, ansi, color, colors256)
    period = max(MIN_REFRESH_SEC, refresh_sec) if refresh_sec > 0 else 0.0
    reader = KeyReader(fd)

    def draw(force: bool = False) -> None:
        screen.show(screen.render(ctrl, size, glyphs), force)

    try:
        with CbreakTerminal(fd) as term, _ending(screen):
            next_reload = time.monotonic() + period if period else None
            draw(force=True)
            while True:
                timeout = None if next_reload is None else max(0.0, next_reload - time.monotonic())
                ready = select.select([fd, term.wake_fd], [], [], timeout)[0]
                if term.wake_fd in ready:
                    why = term.drain_wake()
                    if ansi or b"c" in why:  # a dumb terminal has no size to follow
                        draw(force=True)
                if fd in ready:
                    names = reader.read()
                    if names is None:  # end of input: the terminal went away
                        return 0
                    if names and not _keys(ctrl, names, screen):
                        return 0
                    if names and (ansi or not ctrl.prompt):
                        draw(force=not ansi)  # a dumb terminal prints a frame after each key
                if next_reload is not None and time.monotonic() >= next_reload:
                    ctrl.reload()
                    next_reload = time.monotonic() + period
                    if ansi or not ctrl.prompt:  # a dumb one is mid-line in a prompt: after it
                        draw()
    except KeyboardInterrupt:
        return 0


@contextlib.contextmanager
def _ending(screen: _Screen):
    try:
        yield
    finally:
        screen.end()


def _keys(ctrl: Controller, names: List[str], screen: _Screen) -> bool:
    """Feed ``names`` to the controller; False when one quits. On a dumb terminal, prompts are a
    line read here: the label when one opens, each edit echoed, a newline when it closes."""
    for name in names:
        prompting, before = ctrl.prompt, ctrl.prompt_text
        if not ctrl.handle(name):
            return False
        if screen.ansi:
            continue
        if ctrl.prompt and not prompting:
            screen.write(ctrl.prompt_line() or "")
        elif ctrl.prompt:
            _echo_prompt(screen, before, ctrl.prompt_text)
        elif prompting:
            screen.write("\n")
    return True
