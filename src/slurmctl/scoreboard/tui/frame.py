"""Lay out one screen as styled text: the Old School RuneScape high-score panel.

A frame is a list of exactly ``height`` lines; each line is a list of ``(text, style)`` segments whose
texts add up to exactly ``width`` characters. Styles are names (``border``, ``title``, ``xp``, ...)
that each backend maps to its own colours, or ignores for ``--no-color``. Any size works, down to
0x0: below the minimum the frame is a short "terminal too small" notice instead of a crash.
"""

import os
import re
import textwrap
import unicodedata
from typing import List, Sequence, Tuple

from . import labels
from .controller import Controller
from .store import ALL
from .viewmodel import COLUMNS, TableView

Segment = Tuple[str, str]
Line = List[Segment]

HEADER_LINES = 5  # title, meta line, rule, column headers, rule: player rows start on this line
MIN_WIDTH = 44
MIN_HEIGHT = 10
MAX_TABLE_WIDTH = 100  # a centred panel, like the OSRS hiscores page, rather than a stretched table
TITLE = "SlurmScoreboard Hiscores"
TEXTUAL_TIP = (
    "Tip: for the deluxe UI, pip install textual (Python >= 3.9), then slurm-sb-tui --backend textual"
)
KEYS = "Tab column  s sort  f filter  / search  w window  m skill  g cluster  r refresh  q quit"
KEYS_SHORT = "q quit  Tab col  s sort  f filter  / find  w win  m skill  g clus  r load"


class Glyphs:
    """The characters for borders, the crown, arrows and ellipsis: Unicode or plain ASCII."""

    def __init__(self, unicode: bool) -> None:
        self.unicode = unicode
        if unicode:
            # heavy box drawing, like the carved frames of the OSRS interface
            self.h, self.v = "\u2501", "\u2503"
            self.tl, self.tr, self.bl, self.br = "\u250f", "\u2513", "\u2517", "\u251b"
            self.lt, self.rt, self.tt, self.bt, self.x = "\u2523", "\u252b", "\u2533", "\u253b", "\u254b"
            self.crown, self.up, self.down, self.ell, self.dot = (
                "\u265b",
                "\u25b2",
                "\u25bc",
                "\u2026",
                "\u00b7",
            )
        else:
            self.h, self.v = "=", "|"
            self.tl = self.tr = self.bl = self.br = self.lt = self.rt = self.tt = self.bt = self.x = "+"
            self.crown, self.up, self.down, self.ell, self.dot = "*", "^", "v", "~", "|"


def clean(text: str, glyphs: Glyphs) -> str:
    """Return ``text`` safe to draw: control and wide characters replaced by ``?``.

    Usernames come from files other people write; one escape sequence or double-width character must
    not break the screen layout. In ASCII mode every non-ASCII character becomes ``?``. Pure.
    """
    out = []
    for ch in text:
        if (
            not ch.isprintable()
            or unicodedata.east_asian_width(ch) in ("W", "F")
            or (not glyphs.unicode and ord(ch) > 126)
        ):
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


def fit(text: str, width: int, glyphs: Glyphs, right: bool = False) -> str:
    """Return ``text`` padded or cut (with an ellipsis) to exactly ``width`` characters. Pure."""
    if width <= 0:
        return ""
    if len(text) > width:
        text = text[: width - 1] + glyphs.ell if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


def _line(segments: Sequence[Segment], width: int, glyphs: Glyphs) -> Line:
    """Return ``segments`` cut or padded so their texts total exactly ``width`` characters."""
    out = []  # type: Line
    used = 0
    for text, style in segments:
        if used >= width:
            break
        if used + len(text) > width:
            text = fit(text, width - used, glyphs)
        out.append((text, style))
        used += len(text)
    if used < width:
        out.append((" " * (width - used), ""))
    return out


def _centred(text: str, width: int, style: str, glyphs: Glyphs) -> Line:
    text = fit(text, width, glyphs).strip() if len(text) > width else text
    pad = max(0, (width - len(text)) // 2)
    return _line([(" " * pad, ""), (text, style)], width, glyphs)


def too_small(width: int, height: int, glyphs: Glyphs) -> List[Line]:
    """Return the frame shown when the terminal is below MIN_WIDTH x MIN_HEIGHT. Pure."""
    msg = [
        f"Terminal too small ({width}x{height}).",
        f"Need at least {MIN_WIDTH}x{MIN_HEIGHT}.",
        "Resize, or press q to quit.",
    ]
    lines = [_line([], width, glyphs) for _ in range(height)]
    first = max(0, (height - len(msg)) // 2)
    for i, text in enumerate(msg):
        if first + i < height:
            lines[first + i] = _centred(text, width, "warn", glyphs)
    return lines


def _widths(view: TableView, available: int) -> Tuple[List[str], List[int]]:
    """Return the columns that fit in ``available`` characters and their content widths.

    The Player column takes the longest name (at least 12, at most 32) when there is room and
    shrinks down to 8 before "main", then "share", are dropped; they are last in ``view.columns``,
    so cells still line up by position. Returns ([], []) when even that does not fit. Pure.
    """
    records = view.records
    biggest_rank = max((r.rank for r in records), default=1)
    longest = max((len(r.user) for r in records), default=0)
    fixed = {
        "rank": max(len("Rank") + 2, len(str(biggest_rank)) + 2),  # crown, space, digits
        "xp": 8 + len(labels.unit(view.state.metric)),
        "share": 7,  # "100.0%" plus room for the sort arrow in the header
        "main": min(12, view.mains.width if view.mains else 6),
    }
    columns = list(view.columns)
    while True:
        others = sum(fixed[c] for c in columns if c != "user")
        # one border per column plus the right edge; one space of padding each side of every cell
        room = available - others - (len(columns) + 1) - 2 * len(columns)
        if room >= 8 or len(columns) <= 3:
            break
        columns.pop()
    if room < 6:
        return [], []
    user = min(room, max(12, min(32, longest)))
    return columns, [user if c == "user" else fixed[c] for c in columns]


def _rule(left: str, mid: str, right: str, widths: Sequence[int], glyphs: Glyphs) -> List[Segment]:
    return [(left + mid.join(glyphs.h * (w + 2) for w in widths) + right, "border")]


def _status(ctrl: Controller, view: TableView, first: int, shown: int, glyphs: Glyphs) -> str:
    st = ctrl.state
    parts = []
    count = len(view.records)
    if count:
        parts.append(f"Players {first + 1}-{first + shown} of {count:,}")
    else:
        parts.append("No players")
    if st.user_filter:
        parts.append(f"filter {st.user_filter!r} ({count:,} of {view.total:,})")
    arrow = glyphs.down if st.sort_desc else glyphs.up
    parts.append(f"sort {COLUMNS[st.sort_col][0]} {arrow}")
    if view.asof:
        parts.append("as of " + format_asof(view.asof))
    if view.note:
        parts.append(view.note)
    return f" {glyphs.dot} ".join(parts)


def format_asof(asof: str) -> str:
    """Return an ISO-8601 UTC time as ``2026-11-23 10:00 UTC`` (anything else unchanged). Pure."""
    m = re.match(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(\.\d+)?)?(Z|[+-]00:?00)$", asof)
    return f"{m.group(1)} {m.group(2)} UTC" if m else asof


def _body_message(ctrl: Controller, view: TableView) -> List[str]:
    st = ctrl.state
    store = ctrl.store
    if not store.has_data():
        return [
            f"No scoreboard data under {store.root} yet.",
            "Start the poller on each cluster, for example:",
            f"slurm-sb poll --cluster <name> --root {store.root} --once",
            "then press r to refresh.",
        ]
    if not view.available:
        where = "all clusters" if st.cluster == ALL else "cluster " + st.cluster
        return [
            f"No {labels.WINDOW_TITLES.get(st.window, st.window)} board for "
            f"{labels.skill_name(st.metric)} on {where} yet.",
            "Press w (window), m (skill) or g (cluster) to switch, r to reload.",
        ]
    if st.user_filter:
        return [f"No players match filter {st.user_filter!r}.", "Press f, clear it, and Enter."]
    return ["This board has no players yet.", "Players with fewer than 3 jobs are not listed."]


def _meta(ctrl: Controller, room: int, glyphs: Glyphs) -> List[Segment]:
    """Return the Skill / Window / Cluster line, in a compact form when ``room`` is short."""
    st = ctrl.state
    count = len(ctrl.store.clusters())
    for compact in (False, True, None):
        if compact is None:  # very narrow: just the three values
            where = ALL if st.cluster == ALL else clean(st.cluster, glyphs)
            sep = f" {glyphs.dot} "
            return [(" " + labels.skill_name(st.metric) + sep + st.window + sep + where, "skill")]
        if st.cluster == ALL:
            where = f"ALL ({count})" if compact else f"All clusters ({count})"
        else:
            where = clean(st.cluster, glyphs)
        window = st.window if compact else labels.WINDOW_TITLES.get(st.window, st.window)
        gap = "  " if compact else "   "
        meta = [
            (" Skill: ", "meta"),
            (labels.skill_name(st.metric), "skill"),
            (gap + "Window: ", "meta"),
            (window, "skill"),
            (gap + "Cluster: ", "meta"),
            (where, "skill"),
        ]
        if sum(len(t) for t, _ in meta) + 1 <= room:
            break
    return meta


def layout(ctrl: Controller, width: int, height: int, glyphs: Glyphs) -> List[Line]:
    """Return the frame for ``ctrl`` at ``width`` x ``height``.

    Also tells the controller how many body rows fit (``ctrl.fit``), so paging and scrolling match
    what is on screen; otherwise reads only. Never raises for any size >= 0.
    """
    width, height = max(0, width), max(0, height)
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return too_small(width, height, glyphs)
    view = ctrl.view
    st = ctrl.state
    columns, widths = _widths(view, min(width, MAX_TABLE_WIDTH))
    if not widths:
        return too_small(width, height, glyphs)
    meta = _meta(ctrl, width - 2, glyphs)
    tw = min(width, max(MIN_WIDTH, sum(widths) + 3 * len(widths) + 1, sum(len(t) for t, _ in meta) + 3))
    if tw > sum(widths) + 3 * len(widths) + 1:  # keep the title panel readable: widen Player
        widths[columns.index("user")] += tw - (sum(widths) + 3 * len(widths) + 1)
    margin = (width - tw) // 2
    tip = ctrl.textual_tip and height >= MIN_HEIGHT + 4
    body_rows = height - 8 - (1 if tip else 0)
    ctrl.fit(body_rows)
    pad = [(" " * margin, "")] if margin else []
    inner = tw - 2
    lines = []  # type: List[Line]

    title = f" {glyphs.crown} {TITLE} {glyphs.crown} "
    left = max(0, (inner - len(title)) // 2)
    lines.append(
        [
            *pad,
            (glyphs.tl + glyphs.h * left, "border"),
            (title, "title"),
            (glyphs.h * max(0, inner - left - len(title)) + glyphs.tr, "border"),
        ]
    )
    lines.append([*pad, (glyphs.v, "border"), *_line(meta, inner, glyphs), (glyphs.v, "border")])
    lines.append(pad + _rule(glyphs.lt, glyphs.tt, glyphs.rt, widths, glyphs))

    header = []  # type: List[Segment]
    for i, (col, w) in enumerate(zip(columns, widths)):
        title_text, right, _ = COLUMNS[col]
        if col == st.sort_col:
            title_text += " " + (glyphs.down if st.sort_desc else glyphs.up)
        style = "header_focus" if i == st.focus else "header"
        header += [(glyphs.v, "border"), (" " + fit(title_text, w, glyphs, right) + " ", style)]
    lines.append(pad + header + [(glyphs.v, "border")])
    rows = view.window(st.top, body_rows)
    lines.append(pad + _rule(glyphs.lt, glyphs.x if rows else glyphs.bt, glyphs.rt, widths, glyphs))
    if rows:
        search = st.search.lower()
        for index, cells in rows:
            record = view.records[index]
            selected = index == st.cursor
            row = []  # type: List[Segment]
            for col, w, text in zip(columns, widths, cells):
                right = COLUMNS[col][1]
                if col == "rank" and record.rank == 1:
                    text = glyphs.crown + " " + text
                style = col
                if record.rank == 1:
                    style = "first"
                if col == "user" and search and search in text.lower():
                    style = "match"
                if selected:
                    style = "cursor"
                cell = " " + fit(clean(text, glyphs), w, glyphs, right) + " "
                row += [(glyphs.v, "border"), (cell, style)]
            lines.append(pad + row + [(glyphs.v, "border")])
        for _ in range(body_rows - len(rows)):
            lines.append(pad + _blank(widths, glyphs))
    else:
        message = []  # type: List[str]
        for text in _body_message(ctrl, view):  # wrap long paths rather than cut them
            message += textwrap.wrap(text, max(1, inner - 4), break_on_hyphens=False) or [""]
        top = max(0, (body_rows - len(message)) // 2)
        for i in range(body_rows):
            text = message[i - top] if 0 <= i - top < len(message) else ""
            lines.append(
                [
                    *pad,
                    (glyphs.v, "border"),
                    *_centred(clean(text, glyphs), inner, "empty", glyphs),
                    (glyphs.v, "border"),
                ]
            )
    bottom = glyphs.bt if rows else glyphs.h
    lines.append(pad + _rule(glyphs.bl, bottom, glyphs.br, widths, glyphs))

    # Footer lines start at the panel's left edge, and may use the full width to its right.
    foot = width - margin
    status = _status(ctrl, view, st.top, len(rows), glyphs)
    style = "status"
    if ctrl.message:
        status = ctrl.message + " " + glyphs.dot + " " + status
    elif ctrl.store.problems:
        # paths relative to the root: the file name and the error are what fit on one line
        first = ctrl.store.problems[0].replace(ctrl.store.root.rstrip(os.sep) + os.sep, "")
        status = f"! {len(ctrl.store.problems)} file problem(s): {first}"
        style = "warn"
    lines.append(pad + _line([(" " + clean(status, glyphs), style)], foot, glyphs))
    prompt = ctrl.prompt_line()
    if prompt is not None:
        lines.append(pad + _line([(" " + clean(prompt, glyphs), "prompt"), ("_", "cursor")], foot, glyphs))
    else:
        keys = KEYS if len(KEYS) + 1 <= foot else KEYS_SHORT
        lines.append(pad + _line([(" " + keys, "keys")], foot, glyphs))
    if tip:
        lines.append(pad + _line([(" " + TEXTUAL_TIP, "tip")], foot, glyphs))
    return [_line(line, width, glyphs) for line in lines]


def _blank(widths: Sequence[int], glyphs: Glyphs) -> List[Segment]:
    row = []  # type: List[Segment]
    for w in widths:
        row += [(glyphs.v, "border"), (" " * (w + 2), "")]
    return [*row, (glyphs.v, "border")]


def mark_selection(frame: Sequence[Line], mark: str = ">") -> List[Line]:
    """Return ``frame`` with ``mark`` pointing at the selected row and the focused column header.

    For screens with neither colour nor reverse video (a dumb terminal), where the ``cursor`` and
    ``header_focus`` styles would not show: the border left of the selected row becomes ``mark``,
    and so does the (blank) first character of the focused header cell. Widths are unchanged. Pure.
    """
    out = []  # type: List[Line]
    for line in frame:
        segments = list(line)
        for i, (text, style) in enumerate(segments):
            if style == "cursor" and i > 0 and segments[i - 1][1] == "border" and segments[i - 1][0]:
                segments[i - 1] = (segments[i - 1][0][:-1] + mark, "border")
                break
            if style == "header_focus" and text.startswith(" "):
                segments[i] = (mark + text[1:], style)
                break
        out.append(segments)
    return out


def to_text(frame: Sequence[Line]) -> str:
    """Return the frame as plain text, trailing spaces removed, one newline per line. Pure."""
    return "".join("".join(text for text, _ in line).rstrip() + "\n" for line in frame)
