"""The curses backend: the default, zero-install interactive UI (standard library only).

Draws the frames from ``frame.layout`` and feeds keys to the shared controller. Resizes redraw at the
new size (the layout handles any size, down to a "too small" notice); the files are re-read every
``refresh_sec`` seconds and on ``r``.
"""

import contextlib
import curses
import locale
import os
import time
from typing import Dict

from .controller import Controller
from .frame import Glyphs, layout
from .palette import BASIC, PALETTE, XTERM256

_SPECIAL = {
    curses.KEY_UP: "UP",
    curses.KEY_DOWN: "DOWN",
    curses.KEY_LEFT: "LEFT",
    curses.KEY_RIGHT: "RIGHT",
    curses.KEY_PPAGE: "PGUP",
    curses.KEY_NPAGE: "PGDN",
    curses.KEY_HOME: "HOME",
    curses.KEY_END: "END",
    curses.KEY_ENTER: "ENTER",
    curses.KEY_BACKSPACE: "BACKSPACE",
    curses.KEY_BTAB: "BTAB",
    curses.KEY_RESIZE: "RESIZE",
}
_CHARS = {"\t": "TAB", "\n": "ENTER", "\r": "ENTER", "\x1b": "ESC", "\x7f": "BACKSPACE", "\b": "BACKSPACE"}


def key_name(key) -> str:
    """Return the controller's name for a ``get_wch`` result (str or int); "" if it has none. Pure."""
    if isinstance(key, int):
        return _SPECIAL.get(key, "")
    return _CHARS.get(key, key)


def utf8_locale() -> bool:
    """Return True when the terminal's locale encoding is UTF-8 (call after ``setlocale``)."""
    return "utf" in (locale.getpreferredencoding(False) or "").lower().replace("-", "")


def _attrs(color: bool) -> Dict[str, int]:
    """Return style name -> curses attribute, allocating colour pairs when ``color``."""
    table = {}
    use_color = color and curses.has_colors()
    if use_color:
        curses.start_color()
        try:
            curses.use_default_colors()
            default_bg = -1
        except curses.error:
            default_bg = curses.COLOR_BLACK
        rich = curses.COLORS >= 256
    pairs = {}  # type: Dict[Tuple[str, str], int]
    for name, (fg, bg, attrs) in PALETTE.items():
        attr = 0
        if "bold" in attrs:
            attr |= curses.A_BOLD
        if "underline" in attrs:
            attr |= curses.A_UNDERLINE
        if use_color:
            key = (fg, bg)
            if key not in pairs and len(pairs) + 1 < curses.COLOR_PAIRS:
                palette = XTERM256 if rich else BASIC
                background = palette[bg] if bg else default_bg
                curses.init_pair(len(pairs) + 1, palette[fg], background)
                pairs[key] = len(pairs) + 1
            attr |= curses.color_pair(pairs.get(key, 0))
        elif bg:
            attr |= curses.A_REVERSE  # no colour: the cursor row and focused header still stand out
        table[name] = attr
    return table


def _draw(screen, ctrl: Controller, glyphs: Glyphs, attrs: Dict[str, int]) -> None:
    height, width = screen.getmaxyx()
    screen.erase()
    for y, line in enumerate(layout(ctrl, width, height, glyphs)):
        x = 0
        for text, style in line:
            if text:
                # Writing the bottom-right cell moves the cursor off-screen and "fails" after
                # drawing; a shrink racing the draw does the same. Both are harmless.
                with contextlib.suppress(curses.error):
                    screen.addstr(y, x, text, attrs.get(style, 0))
            x += len(text)
    screen.noutrefresh()
    curses.doupdate()


def _loop(screen, ctrl: Controller, color: bool, refresh_sec: float) -> int:
    with contextlib.suppress(curses.error):  # some terminals cannot hide the cursor
        curses.curs_set(0)
    screen.keypad(True)
    screen.timeout(1000)  # wake up once a second to check the refresh timer
    glyphs = Glyphs(utf8_locale())
    attrs = _attrs(color)
    next_reload = time.monotonic() + refresh_sec if refresh_sec > 0 else float("inf")
    while True:
        _draw(screen, ctrl, glyphs, attrs)
        try:
            key = screen.get_wch()
        except curses.error:
            key = None  # timeout, no key
        if time.monotonic() >= next_reload:
            ctrl.reload()
            next_reload = time.monotonic() + refresh_sec
        if key is None:
            continue
        name = key_name(key)
        if name == "RESIZE":
            curses.update_lines_cols()
            continue
        if name and not ctrl.handle(name):
            return 0


def run(ctrl: Controller, color: bool, refresh_sec: float) -> int:
    """Run the interactive curses UI until ``q`` or Ctrl-C; return the exit code (0)."""
    locale.setlocale(locale.LC_ALL, "")  # so curses draws UTF-8 (crown, heavy borders)
    os.environ.setdefault("ESCDELAY", "25")  # Esc cancels a prompt without a 1 s pause
    # ncurses prefers exported LINES/COLUMNS over the terminal's real size; they are often stale
    # (exported once by a shell or a runner) and would pin the layout, so ask the terminal instead.
    # (curses.use_env(False) is no help: it falls back to terminfo's fixed 80x24.)
    for name in ("LINES", "COLUMNS"):
        os.environ.pop(name, None)
    try:
        return curses.wrapper(_loop, ctrl, color, refresh_sec)
    except KeyboardInterrupt:
        return 0
