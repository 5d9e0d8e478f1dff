"""The optional Textual backend, driven headless with Textual's own Pilot (skipped without textual)."""

import asyncio

import pytest

from slurmctl.scoreboard.tui.backend_textual import build_app, key_name, rich_styles
from slurmctl.scoreboard.tui.controller import Controller
from slurmctl.scoreboard.tui.store import Store
from slurmctl.scoreboard.tui.viewmodel import ViewState

pytest.importorskip("textual", reason="textual is optional (pip install textual)")


def board_text(app) -> str:
    board = app.screen.focused
    return board.render().plain


def test_textual_ui_keys_mouse_and_quit(sb_root):
    ctrl = Controller(Store(sb_root), ViewState())
    app = build_app(ctrl, color=True, refresh_sec=0)

    async def drive():
        async with app.run_test(size=(100, 30)) as pilot:
            text = board_text(app)
            assert "SlurmScoreboard Hiscores" in text and "\u265b 1 \u2503 alice" in text
            assert "1.33e3 CPU-h" in text
            await pilot.press("m", "m")
            assert ctrl.state.metric == "gpu_clock_hours" and "5.00e3 GPU-h" in board_text(app)
            await pilot.press("tab")  # must reach the controller, not move focus
            assert ctrl.state.focus == 1 and app.screen.focused is not None
            await pilot.press("s")
            assert ctrl.state.sort_col == "user"
            await pilot.press("slash", "b", "o", "enter")
            assert ctrl.selected_user() == "bob" and "match 1 of 1" in board_text(app)
            await pilot.press("escape", "w")
            assert ctrl.state.window == "30d"
            await pilot.press("m", "m", "m")
            # 30d CPU hours sorted by player: alice, bob, frank; rows start on line 5
            await pilot.click(offset=(30, 7))
            assert ctrl.selected_user() == "frank"
            await pilot.click(offset=(30, 9))  # below the last player: nothing changes
            assert ctrl.selected_user() == "frank"
            await pilot.press("g")
            assert ctrl.state.cluster == "bell" and "Cluster: bell" in board_text(app)
            await pilot.resize_terminal(30, 8)
            for _ in range(200):  # the resize reaches the widget asynchronously; slower under load
                await pilot.pause(0.05)
                if tuple(app.screen.focused.size) == (30, 8):
                    break
            assert "Terminal too small" in board_text(app)
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0

    asyncio.run(drive())


def test_key_names_and_styles():
    assert (
        key_name("pagedown", None) == "PGDN" and key_name("slash", "/") == "/" and key_name("f1", None) == ""
    )
    styles = rich_styles(True)
    assert styles["cursor"] == "bold #1a1405 on #ffb000" and styles["xp"] == "#29c229"
    assert rich_styles(False)["cursor"] == "bold reverse" and rich_styles(False)["xp"] == ""
