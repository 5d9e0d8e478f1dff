"""The ANSI backend: print frames with escape codes, or as plain text for dumb terminals and pipes.

Used for ``--once`` (one frame to stdout, then exit: scripts and tests), when stdout is not a
terminal, and for ``TERM=dumb``. With a refresh interval it reprints the frame until Ctrl-C: in
place (clear + home) on an ANSI terminal, one frame after another on a dumb one.
"""

import sys
import time
from typing import IO, Optional, Sequence

from .controller import Controller
from .frame import Glyphs, Line, layout, to_text
from .palette import BASIC, PALETTE, XTERM256

MIN_REFRESH_SEC = 1.0  # never re-read the shared filesystem more often than this


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


def paint(frame: Sequence[Line], color: bool, colors256: bool = False) -> str:
    """Return the frame as text, with ANSI colours when ``color``; trailing blanks trimmed. Pure."""
    if not color:
        return to_text(frame)
    out = []
    for line in frame:
        # drop the trailing unstyled padding so pasted output has no ragged spaces
        segments = list(line)
        while segments and not segments[-1][1] and not segments[-1][0].strip():
            segments.pop()
        parts = []
        for text, style in segments:
            code = sgr(style, colors256)
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

    ``size`` is a callable returning the current (columns, lines). ``ansi`` False (a dumb terminal)
    prints frames one after another instead of redrawing in place.
    """
    stream = out or sys.stdout
    try:
        while True:
            cols, lines = size()
            text = render_once(ctrl, cols, lines, glyphs, color, colors256)
            stream.write(("\x1b[H\x1b[2J" if ansi else "\n") + text)
            stream.flush()
            time.sleep(max(MIN_REFRESH_SEC, refresh_sec))
            ctrl.reload()
    except KeyboardInterrupt:
        return 0
