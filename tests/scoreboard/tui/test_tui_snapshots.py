"""Snapshot tests: the rendered screen, as text, against golden files in snapshots/.

To accept an intended change of the look: ``UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/scoreboard/tui``,
then review ``git diff tests/scoreboard/tui/snapshots`` before committing.
"""

import os

import pytest

from slurmctl.scoreboard.tui.backend_ansi import paint
from slurmctl.scoreboard.tui.controller import Controller
from slurmctl.scoreboard.tui.frame import Glyphs, layout, to_text
from slurmctl.scoreboard.tui.store import Store
from slurmctl.scoreboard.tui.viewmodel import ViewState

SNAPSHOTS = os.path.join(os.path.dirname(__file__), "snapshots")
UNICODE, ASCII = Glyphs(True), Glyphs(False)


def check(name: str, text: str) -> None:
    path = os.path.join(SNAPSHOTS, name + ".txt")
    if os.environ.get("UPDATE_SNAPSHOTS"):
        os.makedirs(SNAPSHOTS, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        pytest.skip(f"snapshot {name} rewritten; review the diff")
    with open(path, encoding="utf-8") as handle:
        expected = handle.read()
    assert text == expected, f"screen differs from {path}:\n{text}"


def frame_text(ctrl, width, height, glyphs=UNICODE):
    frame = layout(ctrl, width, height, glyphs)
    assert len(frame) == height
    assert all(sum(len(t) for t, _ in line) == width for line in frame)  # exact size, every line
    return to_text(frame)


def make(root, **state):
    return Controller(Store(root), ViewState(**state))


def test_snapshot_merged_alltime(sb_root):
    check("merged_alltime_80x20", frame_text(make(sb_root), 80, 20))


def test_snapshot_cluster_gpu_ascii(sb_root):
    ctrl = make(sb_root, cluster="hammer", metric="gpu_clock_hours")
    check("hammer_gpu_ascii_60x14", frame_text(ctrl, 60, 14, ASCII))


def test_snapshot_30d_summed_sorted_by_user_desc(sb_root):
    ctrl = make(sb_root, window="30d", sort_col="user", sort_desc=True)
    check("summed_30d_user_desc_72x16", frame_text(ctrl, 72, 16))


def test_snapshot_search_prompt_cursor_and_textual_tip(sb_root):
    ctrl = Controller(Store(sb_root), ViewState(), textual_tip=True)
    for key in ["/", "c", "a", "r", "ENTER", "f"]:
        ctrl.handle(key)
    check("search_prompt_tip_100x18", frame_text(ctrl, 100, 18))


def test_snapshot_missing_board_and_bad_file(sb_root):
    ctrl = make(sb_root, cluster="bell", metric="failed_jobs")
    check("missing_board_bad_file_90x14", frame_text(ctrl, 90, 14))


def test_snapshot_empty_root_tells_how_to_run_the_poller(empty_root, monkeypatch):
    # a relative --root, as a user would type it, keeps the temp dir out of the golden file
    monkeypatch.chdir(os.path.dirname(empty_root))
    check("empty_root_90x14", frame_text(make("empty"), 90, 14))


def test_snapshot_filter_without_match(sb_root):
    check("filter_no_match_60x12", frame_text(make(sb_root, user_filter="nobody"), 60, 12))


@pytest.mark.parametrize("size", [(0, 0), (1, 1), (43, 30), (120, 9), (20, 3)])
def test_small_terminals_get_a_notice_not_a_crash(sb_root, size):
    text = frame_text(make(sb_root), *size)
    if size[0] >= 28 and size[1] >= 3:
        assert "Terminal too small" in text


def test_snapshot_too_small(sb_root):
    check("too_small_40x8", frame_text(make(sb_root), 40, 8))


def test_every_size_from_minimum_up_keeps_the_frame_exact(sb_root):
    ctrl = make(sb_root)
    for width in range(44, 130, 7):
        for height in range(10, 40, 9):
            frame_text(ctrl, width, height)
            frame_text(ctrl, width, height, ASCII)


def test_hostile_user_names_cannot_break_the_layout(tmp_path, board_writer):
    root = str(tmp_path / "r")
    board_writer(
        root, "hammer", "alltime", "clock_hours", {"evil\x1b[2Jname": 5, "wide\u4e00\u4e01": 3, "x" * 80: 1}
    )
    text = frame_text(make(root), 70, 14)
    assert "\x1b" not in text and "\u4e00" not in text
    assert "evil?[2Jname" in text


def test_colour_output_uses_the_gold_and_green_palette(sb_root):
    frame = layout(make(sb_root), 80, 12, UNICODE)
    coloured = paint(frame, color=True)
    assert "\x1b[33m" in coloured and "\x1b[32m" in coloured  # gold borders, green XP
    assert "\x1b[1;33m" in coloured  # bold gold title / rank 1
    assert "\x1b[38;5;214m" in paint(frame, color=True, colors256=True)
    plain = paint(frame, color=False)
    assert "\x1b" not in plain and plain == to_text(frame)
