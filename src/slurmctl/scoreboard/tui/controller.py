"""Key handling shared by every backend: key names in, view-state changes out.

Backends translate their native key events to the names below and call ``Controller.handle``; the
controller never touches a screen, so its behaviour is tested without one.

Key names: single characters (``"q"``, ``"/"``), and ``TAB``, ``BTAB``, ``UP``, ``DOWN``, ``LEFT``,
``RIGHT``, ``PGUP``, ``PGDN``, ``HOME``, ``END``, ``ENTER``, ``ESC``, ``BACKSPACE``.
"""

from typing import List, Optional

from . import labels
from .store import ALL, Store
from .viewmodel import COLUMNS, MainClusters, TableView, ViewState, build_view

PROMPTS = {
    "filter": "Filter players (text or glob like al*; empty = everyone)",
    "search": "Search player (Enter jumps, n/N next/previous)",
}


def _cycle(options: List[str], current: str, step: int = 1) -> str:
    if not options:
        return current
    try:
        return options[(options.index(current) + step) % len(options)]
    except ValueError:
        return options[0]


class Controller:
    """The running UI's state: the store, the view-state, the built view, prompt and message."""

    def __init__(self, store: Store, state: ViewState, textual_tip: bool = False) -> None:
        self.store = store
        self.state = state
        self.textual_tip = textual_tip  # show the "get the Textual backend" footer tip
        self.prompt = ""  # "" or a key of PROMPTS while a line is being typed
        self.prompt_text = ""
        self.message = ""
        self.page = 10  # body rows on screen; the frame layout updates it on every render
        self.view = self._build()

    # -- building ------------------------------------------------------------------------------
    def scopes(self) -> List[str]:
        """Return the cluster choices ``g`` cycles through: ALL, then each cluster with data."""
        return [ALL, *self.store.clusters()]

    def _build(self) -> TableView:
        st = self.state
        self.store.begin_view()
        board = self.store.board(st.cluster, st.window, st.metric)
        mains = None
        if st.cluster == ALL and len(self.store.clusters()) > 1 and board is not None:
            mains = MainClusters(self.store.cluster_values(st.window, st.metric))
        return build_view(
            st,
            board.entries if board is not None else None,
            self.store.hidden_users(),
            asof=board.asof if board is not None else "",
            note=board.note if board is not None else "",
            mains=mains,
        )

    def rebuild(self, keep_selection: bool = True) -> None:
        """Rebuild the view after a state change.

        With ``keep_selection`` (sort, filter, reload) the selected player stays selected if still
        shown; without it (a new skill, window or cluster: a different board) the view starts at the top.
        """
        selected = self.selected_user() if keep_selection else ""
        self.view = self._build()
        index = self.view.index_of(selected) if selected else -1
        self.state.cursor = index if index >= 0 else 0
        if not keep_selection:
            self.state.top = 0
        self.state.focus = min(self.state.focus, len(self.view.columns) - 1)
        self.fit(self.page)

    def reload(self) -> None:
        """Re-scan the root and re-read changed files (``r``, and the periodic refresh)."""
        self.store.scan()
        self.rebuild()

    def selected_user(self) -> str:
        """Return the user under the cursor, or "" when the table is empty."""
        records = self.view.records
        if not records or not 0 <= self.state.cursor < len(records):
            return ""
        return records[self.state.cursor].user

    def fit(self, page: int) -> None:
        """Clamp the cursor and scroll so the cursor row is inside a body of ``page`` rows."""
        st = self.state
        self.page = max(1, page)
        count = len(self.view.records)
        st.cursor = max(0, min(st.cursor, count - 1))
        if st.cursor < st.top:
            st.top = st.cursor
        elif st.cursor >= st.top + self.page:
            st.top = st.cursor - self.page + 1
        st.top = max(0, min(st.top, max(0, count - self.page)))

    # -- keys ----------------------------------------------------------------------------------
    def handle(self, key: str) -> bool:
        """Apply one key; return False when the UI should quit. Never raises for unknown keys."""
        if self.prompt:
            self._prompt_key(key)
            return True
        self.message = ""
        st = self.state
        if key in ("q", "Q"):
            return False
        if key in ("TAB", "RIGHT", "BTAB", "LEFT"):
            step = -1 if key in ("BTAB", "LEFT") else 1
            st.focus = (st.focus + step) % len(self.view.columns)
        elif key == "s":
            col = self.view.columns[st.focus]
            if st.sort_col == col:
                st.sort_desc = not st.sort_desc
            else:
                st.sort_col, st.sort_desc = col, COLUMNS[col][2]
            self.rebuild()
        elif key in ("f", "/"):
            self.prompt = "filter" if key == "f" else "search"
            # the filter prompt starts with the current filter (to edit it); a search starts afresh
            self.prompt_text = st.user_filter if key == "f" else ""
        elif key in ("n", "N"):
            self._jump(st.search, forward=key == "n", from_next=True)
        elif key == "w":
            st.window = _cycle(list(labels.WINDOWS), st.window)
            self.rebuild(keep_selection=False)
        elif key == "m":
            st.metric = _cycle(list(labels.METRICS), st.metric)
            self.rebuild(keep_selection=False)
        elif key == "g":
            st.cluster = _cycle(self.scopes(), st.cluster)
            self.rebuild(keep_selection=False)
        elif key == "r":
            self.reload()
            self.message = "reloaded"
        elif key == "ESC":
            st.search = ""
        else:
            self._move(key)
        return True

    def _move(self, key: str) -> None:
        st = self.state
        deltas = {"UP": -1, "k": -1, "DOWN": 1, "j": 1, "PGUP": -self.page, "PGDN": self.page}
        if key in deltas:
            st.cursor += deltas[key]
        elif key in ("HOME", "<"):
            st.cursor = 0
        elif key in ("END", ">", "G"):
            st.cursor = len(self.view.records) - 1
        else:
            return
        self.fit(self.page)

    def _prompt_key(self, key: str) -> None:
        if key == "ESC":
            self.prompt = ""
        elif key == "BACKSPACE":
            self.prompt_text = self.prompt_text[:-1]
        elif key == "ENTER":
            kind, text = self.prompt, self.prompt_text.strip()
            self.prompt = ""
            if kind == "filter":
                self.state.user_filter = text
                self.rebuild()
                if text and not self.view.records:
                    self.message = f"no player matches {text!r}"
            else:
                self.state.search = text
                self._jump(text, forward=True, from_next=False)
        elif len(key) == 1 and key.isprintable():
            self.prompt_text += key

    def _jump(self, text: str, forward: bool, from_next: bool) -> None:
        """Move the cursor to the next (or previous) player whose name contains ``text``."""
        hits = self.view.matches(text)
        if not text:
            return
        if not hits:
            self.message = f"no player named like {text!r} in this view"
            return
        cur = self.state.cursor
        if forward:
            after = [i for i in hits if i > cur or (i == cur and not from_next)]
            target = after[0] if after else hits[0]
        else:
            before = [i for i in hits if i < cur]
            target = before[-1] if before else hits[-1]
        self.state.cursor = target
        self.message = f"match {hits.index(target) + 1} of {len(hits)} for {text!r}"
        self.fit(self.page)

    def prompt_line(self) -> Optional[str]:
        """Return the prompt being typed (label and text), or None when not prompting."""
        if not self.prompt:
            return None
        return f"{PROMPTS[self.prompt]}: {self.prompt_text}"
