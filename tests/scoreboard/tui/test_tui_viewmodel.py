"""View-model, controller and store: ranking, sort, filter, search, window/metric/cluster switches,
hidden users, and bad files -- all without a screen."""

import json
import os

import pytest

from slurmctl.scoreboard.tui.controller import Controller
from slurmctl.scoreboard.tui.store import Store, read_optout
from slurmctl.scoreboard.tui.viewmodel import (
    MainClusters,
    ViewState,
    build_view,
    parse_sort,
    rank_entries,
    user_matcher,
)

ENTRIES = [("carol", 800.0), ("alice", 1234.5), ("bob", 800.0), ("eve", 0.5), ("dave", 12.25)]


def users(view):
    return [r.user for r in view.records]


def test_competition_ranking_shares_ranks_on_ties_and_skips_the_next():
    records = rank_entries(ENTRIES, hidden=set())
    assert [(r.rank, r.user) for r in records] == [
        (1, "alice"),
        (2, "bob"),
        (2, "carol"),
        (4, "dave"),
        (5, "eve"),
    ]
    assert sum(r.share for r in records) == pytest.approx(1.0)
    assert records[0].share == pytest.approx(1234.5 / 2847.25)


def test_hidden_users_are_removed_before_ranking_so_no_gap_shows():
    records = rank_entries(ENTRIES, hidden={"alice"})
    assert [(r.rank, r.user) for r in records] == [(1, "bob"), (1, "carol"), (3, "dave"), (4, "eve")]
    # hidden names are matched case-insensitively
    assert "alice" not in [r.user for r in rank_entries([("Alice", 5.0)], hidden={"alice"})]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("rank", ("rank", False)),
        ("xp", ("xp", True)),
        ("value:asc", ("xp", False)),
        ("user:desc", ("user", True)),
    ],
)
def test_parse_sort(spec, expected):
    assert parse_sort(spec) == expected


@pytest.mark.parametrize("spec", ["level", "xp:up", ""])
def test_parse_sort_rejects_unknown_columns_and_directions(spec):
    with pytest.raises(ValueError, match="sort"):
        parse_sort(spec)


def test_sort_by_user_and_by_xp_ascending_keeps_true_ranks():
    view = build_view(ViewState(sort_col="user"), ENTRIES, set())
    assert users(view) == ["alice", "bob", "carol", "dave", "eve"]
    view = build_view(ViewState(sort_col="xp", sort_desc=False), ENTRIES, set())
    assert users(view) == ["eve", "dave", "bob", "carol", "alice"]  # ties keep rank order
    assert [r.rank for r in view.records] == [5, 4, 2, 2, 1]
    view = build_view(ViewState(sort_col="rank", sort_desc=True), ENTRIES, set())
    assert users(view)[0] == "eve"


def test_filter_substring_and_glob_keep_true_rank_and_total():
    view = build_view(ViewState(user_filter="a"), ENTRIES, set())
    assert users(view) == ["alice", "carol", "dave"]
    assert view.total == 5
    view = build_view(ViewState(user_filter="?a*"), ENTRIES, set())
    assert users(view) == ["carol", "dave"]
    assert [r.rank for r in view.records] == [2, 4]
    assert not user_matcher("ZZ")("alice") and user_matcher("")("anyone") and user_matcher("ALI")("alice")


def test_cells_are_humanised_strings_and_window_slices():
    view = build_view(ViewState(metric="gpu_clock_hours"), ENTRIES, set())
    rows = view.window(1, 2)
    assert rows == [(1, ["2", "bob", "800 GPU-h", "28.1%"]), (2, ["2", "carol", "800 GPU-h", "28.1%"])]
    assert view.cells(view.records[0])[2] == "1.23e3 GPU-h"
    assert view.window(4, 10) == [(4, ["5", "eve", "0.5 GPU-h", "0.0%"])]
    assert view.window(9, 3) == []


def test_main_column_only_with_cluster_mapping_and_sortable():
    assert build_view(ViewState(), ENTRIES, set()).columns == ["rank", "user", "xp", "share"]
    mains = MainClusters([("bell", {"alice": 5.0, "bob": 9.0}), ("hammer", {"alice": 7.0, "bob": 9.0})])
    view = build_view(ViewState(), ENTRIES, set(), mains=mains)
    assert view.columns[-1] == "main" and mains.width == 6
    assert [view.cells(r)[-1] for r in view.records[:3]] == ["hammer", "bell", ""]  # bob: tie -> first
    view = build_view(ViewState(sort_col="main", sort_desc=True), ENTRIES, set(), mains=mains)
    assert users(view)[:2] == ["alice", "bob"]


def test_no_board_is_distinguished_from_an_empty_board():
    assert build_view(ViewState(), None, set()).available is False
    assert build_view(ViewState(), [], set()).available is True


# -- store -----------------------------------------------------------------------------------------


def test_store_reads_clusters_merged_boards_and_optout(sb_root):
    store = Store(sb_root)
    assert store.clusters() == ["bell", "hammer"]
    assert store.hidden_users() == {"mallory"}
    board = store.board("ALL", "alltime", "clock_hours")
    assert dict(board.entries)["alice"] == 1334.5 and board.note == ""
    assert board.asof == "2026-11-23T10:00:00Z"
    assert store.board("bell", "alltime", "gpu_clock_hours") is None


def test_store_sums_cluster_boards_when_no_merged_file(sb_root):
    board = Store(sb_root).board("ALL", "30d", "clock_hours")
    assert sorted(board.entries) == [("alice", 20.0), ("bob", 50.0), ("frank", 70.0)]
    assert "summed here from 2" in board.note


def test_store_reports_a_corrupt_file_with_its_path_and_keeps_going(sb_root):
    store = Store(sb_root)
    assert store.board("bell", "alltime", "failed_jobs") is None
    assert len(store.problems) == 1
    assert "failed_jobs.json" in store.problems[0] and "invalid JSON" in store.problems[0]
    assert "line 2" in store.problems[0]  # where in the file


def test_store_rereads_a_replaced_file_and_main_clusters(sb_root):
    store = Store(sb_root)
    mains = MainClusters(store.cluster_values("alltime", "clock_hours"))
    assert {u: mains.of(u) for u in ["alice", "bob", "carol", "frank", "nobody"]} == {
        "alice": "hammer",
        "bob": "hammer",
        "carol": "hammer",
        "frank": "bell",
        "nobody": "",
    }
    path = os.path.join(sb_root, "clusters", "bell", "agg", "leaderboards", "alltime", "clock_hours.json")
    with open(path) as handle:
        doc = json.load(handle)
    doc["rows"].append({"rank": 4, "user": "zed", "value": 1.0})
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(doc, handle)
    os.replace(tmp, path)  # the poller's atomic rename
    assert ("zed", 1.0) in store.board("bell", "alltime", "clock_hours").entries


def test_optout_from_policy_json_and_bad_policy(tmp_path):
    root = tmp_path / "r"
    (root / "config").mkdir(parents=True)
    (root / "config" / "policy.json").write_text(json.dumps({"opt_out": ["Zoe", "yan"]}))
    assert read_optout(str(root)) == ({"zoe", "yan"}, [])
    (root / "config" / "policy.json").write_text("{oops")
    hidden, problems = read_optout(str(root))
    assert hidden == set() and problems == []  # the config loader reports a bad policy.json, once


# -- controller (the keys every backend shares) ------------------------------------------------------


@pytest.fixture
def ctrl(sb_root):
    return Controller(Store(sb_root), ViewState())


def test_controller_hides_opted_out_user_in_merged_view(ctrl):
    assert users(ctrl.view)[:3] == ["alice", "frank", "bob"]
    assert "mallory" not in users(ctrl.view)
    assert ctrl.view.columns[-1] == "main"


def test_keys_w_m_g_switch_window_metric_cluster(ctrl):
    ctrl.handle("END")
    ctrl.handle("w")
    assert ctrl.state.cursor == 0  # a different board starts at the top
    assert ctrl.state.window == "30d" and users(ctrl.view) == ["frank", "bob", "alice"]
    ctrl.handle("w")
    ctrl.handle("w")
    assert ctrl.state.window == "alltime"
    ctrl.handle("m")
    assert ctrl.state.metric == "elapsed_hours" and not ctrl.view.available
    ctrl.handle("m")
    assert ctrl.state.metric == "gpu_clock_hours" and users(ctrl.view) == ["alice", "bob"]
    ctrl.handle("g")
    assert ctrl.state.cluster == "bell" and not ctrl.view.available
    ctrl.handle("g")
    assert ctrl.state.cluster == "hammer" and users(ctrl.view) == ["alice", "bob"]
    assert ctrl.view.columns == ["rank", "user", "xp", "share"]  # no "main" for one cluster
    ctrl.handle("g")
    assert ctrl.state.cluster == "ALL"


def test_tab_and_s_sort_the_focused_column_and_toggle(ctrl):
    ctrl.handle("TAB")
    assert ctrl.state.focus == 1
    ctrl.handle("s")
    assert (ctrl.state.sort_col, ctrl.state.sort_desc) == ("user", False)
    assert users(ctrl.view)[:2] == ["alice", "bob"]
    ctrl.handle("s")
    assert ctrl.state.sort_desc and users(ctrl.view)[0] == "frank"
    ctrl.handle("BTAB")
    ctrl.handle("BTAB")
    assert ctrl.state.focus == len(ctrl.view.columns) - 1


def test_filter_prompt_typing_backspace_enter_and_escape(ctrl):
    for key in ["f", "c", "a", "x", "BACKSPACE", "r"]:
        ctrl.handle(key)
    assert ctrl.prompt == "filter" and ctrl.prompt_line().endswith(": car")
    assert ctrl.state.user_filter == ""  # nothing applied until Enter
    ctrl.handle("ENTER")
    assert users(ctrl.view) == ["carol"] and ctrl.prompt == ""
    # the prompt starts with the current filter, so it can be edited
    for key in ["f", "BACKSPACE", "BACKSPACE", "BACKSPACE", "z", "z", "ENTER"]:
        ctrl.handle(key)
    assert ctrl.state.user_filter == "zz"
    assert ctrl.view.records == [] and "no player matches" in ctrl.message
    ctrl.handle("f")
    ctrl.handle("x")
    ctrl.handle("ESC")
    assert ctrl.prompt == "" and ctrl.state.user_filter == "zz"


def test_search_jumps_to_matches_and_n_cycles(ctrl):
    for key in ["/", "a", "ENTER"]:
        ctrl.handle(key)
    order = users(ctrl.view)
    assert order[ctrl.state.cursor] == "alice" and "match 1 of" in ctrl.message
    ctrl.handle("n")
    assert order[ctrl.state.cursor] == "frank"
    ctrl.handle("N")
    assert order[ctrl.state.cursor] == "alice"
    for key in ["/", "q", "z", "ENTER"]:  # q inside a prompt is text, not quit
        assert ctrl.handle(key) is True
    assert "no player named like 'qz'" in ctrl.message


def test_scrolling_is_clamped_and_follows_the_cursor(ctrl):
    ctrl.fit(2)
    ctrl.handle("END")
    assert ctrl.state.cursor == 5 and ctrl.state.top == 4
    ctrl.handle("PGDN")
    assert ctrl.state.cursor == 5
    ctrl.handle("k")
    ctrl.handle("UP")
    assert ctrl.state.cursor == 3 and ctrl.state.top == 3
    ctrl.handle("HOME")
    assert (ctrl.state.cursor, ctrl.state.top) == (0, 0)
    ctrl.handle("PGUP")
    ctrl.handle("j")
    assert ctrl.state.cursor == 1


def test_selected_player_stays_selected_across_sort_and_reload(ctrl):
    for key in ["/", "dave", "ENTER"]:
        for ch in [key] if len(key) == 1 or key == "ENTER" else key:
            ctrl.handle(ch)
    assert ctrl.selected_user() == "dave"
    ctrl.handle("TAB")
    ctrl.handle("s")
    assert ctrl.selected_user() == "dave"
    ctrl.handle("r")
    assert ctrl.selected_user() == "dave" and ctrl.message == "reloaded"


def test_q_quits_and_unknown_keys_are_ignored(ctrl):
    assert ctrl.handle("@") is True and ctrl.handle("F12") is True
    assert ctrl.handle("q") is False


def test_a_bad_row_is_reported_with_row_and_field(sb_root, board_writer):
    path = board_writer(sb_root, "hammer", "alltime", "failed_jobs", {"alice": 3, "bob": 1})
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write(text.replace('"value": 1}', '"value": "1"}'))
    store = Store(sb_root)
    assert store.board("hammer", "alltime", "failed_jobs") is None
    assert "rows[1].value: expected a number" in store.problems[0]
    board_writer(sb_root, "hammer", "alltime", "failed_jobs", {"alice": 3, "bob": 1})  # fixed by the poller
    assert dict(store.board("hammer", "alltime", "failed_jobs").entries) == {"alice": 3.0, "bob": 1.0}


def test_a_board_whose_metric_field_disagrees_with_its_name_is_skipped(sb_root, board_writer):
    path = board_writer(sb_root, "hammer", "alltime", "elapsed_hours", {"alice": 3})
    os.replace(path, path.replace("elapsed_hours", "gpu_elapsed_hours"))
    store = Store(sb_root)
    assert store.board("hammer", "alltime", "gpu_elapsed_hours") is None
    assert "field 'metric' is 'elapsed_hours'" in store.problems[0]
