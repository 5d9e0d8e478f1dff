"""The optional Textual backend (``--backend textual``): the same panel, true colour, mouse scrolling.

``textual`` is imported only inside ``build_app``, so importing this module costs nothing and the
rest of the TUI never depends on it (login nodes do not have it). It shows the very frames the curses
backend shows -- same layout, same keys through the shared controller -- painted with the palette's
true colours; the mouse wheel scrolls and a click selects a player.
"""

from typing import Dict

from .controller import Controller
from .frame import HEADER_LINES, Glyphs, layout
from .palette import HEX, PALETTE

# Textual key names -> the controller's names (printable keys arrive as ``event.character``).
_KEYS = {
    "tab": "TAB",
    "shift+tab": "BTAB",
    "up": "UP",
    "down": "DOWN",
    "left": "LEFT",
    "right": "RIGHT",
    "pageup": "PGUP",
    "pagedown": "PGDN",
    "home": "HOME",
    "end": "END",
    "enter": "ENTER",
    "escape": "ESC",
    "backspace": "BACKSPACE",
}


def rich_styles(color: bool) -> Dict[str, str]:
    """Return frame style name -> Rich style string (attributes only when ``color`` is False). Pure."""
    styles = {}
    for name, (fg, bg, attrs) in PALETTE.items():
        parts = attrs.split()
        if color:
            parts.append(HEX[fg])
            if bg:
                parts.append("on " + HEX[bg])
        elif bg:
            parts.append("reverse")
        styles[name] = " ".join(parts)
    return styles


def key_name(key: str, character) -> str:
    """Return the controller's name for a Textual key event ("" when it has none). Pure."""
    if key in _KEYS:
        return _KEYS[key]
    if character and len(character) == 1 and character.isprintable():
        return character
    return ""


def build_app(ctrl: Controller, color: bool, refresh_sec: float, ascii_only: bool = False):
    """Return a Textual App showing ``ctrl``. Imports textual; raises ImportError when it is missing."""
    from rich.text import Text
    from textual.app import App
    from textual.widget import Widget

    glyphs = Glyphs(not ascii_only)
    styles = rich_styles(color)

    class Board(Widget, can_focus=True):
        """The high-score panel: one Rich Text per frame, re-laid out at every size."""

        DEFAULT_CSS = "Board { width: 100%; height: 100%; }"

        def render(self):
            frame = layout(ctrl, self.size.width, self.size.height, glyphs)
            text = Text(no_wrap=True, overflow="crop", end="")
            for index, line in enumerate(frame):
                for segment, style in line:
                    text.append(segment, styles.get(style, ""))
                if index < len(frame) - 1:
                    text.append("\n")
            return text

        def on_key(self, event) -> None:
            name = key_name(event.key, event.character)
            if not name:
                return
            # Tab, Enter and Escape would otherwise move focus or trigger app bindings.
            event.prevent_default()
            event.stop()
            if not ctrl.handle(name):
                self.app.exit(0)
                return
            self.refresh()

        def on_mouse_scroll_down(self, event) -> None:
            ctrl.handle("DOWN")
            self.refresh()

        def on_mouse_scroll_up(self, event) -> None:
            ctrl.handle("UP")
            self.refresh()

        def on_click(self, event) -> None:
            # Rows start below the title, meta, header and their rules (HEADER_LINES lines).
            row = event.y - HEADER_LINES
            if 0 <= row < ctrl.page and ctrl.state.top + row < len(ctrl.view.records):
                ctrl.state.cursor = ctrl.state.top + row
                self.refresh()

    class ScoreboardApp(App):
        TITLE = "SlurmScoreboard Hiscores"

        def compose(self):
            yield Board()

        def on_mount(self) -> None:
            self.query_one(Board).focus()
            if refresh_sec > 0:
                self.set_interval(refresh_sec, self.reload_files)

        def reload_files(self) -> None:
            ctrl.reload()
            self.query_one(Board).refresh()

    return ScoreboardApp()


def run(ctrl: Controller, color: bool, refresh_sec: float, ascii_only: bool = False) -> int:
    """Run the Textual UI until ``q``; return the exit code (0)."""
    app = build_app(ctrl, color, refresh_sec, ascii_only)
    app.run()
    return app.return_code or 0
