"""Contract with the data side: the TUI reads what the scoreboard's own derive step writes.

The root comes from ``slurmctl.scoreboard.synth.write_root`` (month states -> the real ``derive``:
per-cluster and merged leaderboards), not from hand-written JSON, so a format change on either side
fails here.
"""

import datetime

from slurmctl.scoreboard import synth
from slurmctl.scoreboard.tui import labels
from slurmctl.scoreboard.tui.controller import Controller
from slurmctl.scoreboard.tui.frame import Glyphs, layout, to_text
from slurmctl.scoreboard.tui.store import Store
from slurmctl.scoreboard.tui.viewmodel import ViewState


def test_every_board_the_poller_writes_loads_cleanly_and_merged_equals_sum(tmp_path):
    root = str(tmp_path / "root")
    now = datetime.datetime(2026, 11, 23, 10, 0)
    synth.write_root(root, ["hammer", "bell"], 25, months=2, now=now)
    store = Store(root)
    assert store.clusters() == ["bell", "hammer"]
    for window in labels.WINDOWS:
        for metric in labels.METRICS:
            merged = store.board("ALL", window, metric)
            assert merged is not None and merged.note == "", (window, metric)  # the poller's merged file
            parts = [store.board(c, window, metric) for c in store.clusters()]
            assert all(p is not None for p in parts)
            assert store.problems == [], store.problems
            # merged values are the per-cluster sums for users shown on every cluster board
            per_cluster = [dict(p.entries) for p in parts]
            for user, value in merged.entries:
                if all(user in pc for pc in per_cluster):
                    # each file rounds to 6 decimals, so sums may differ by that much per file
                    assert abs(value - sum(pc[user] for pc in per_cluster)) <= 1e-6 * (len(parts) + 1)
    ctrl = Controller(store, ViewState(window="30d", metric="gpu_clock_hours"))
    text = to_text(layout(ctrl, 100, 20, Glyphs(True)))
    assert "as of 2026-11-23" in text and "GPU-h" in text and "\u265b 1" in text
