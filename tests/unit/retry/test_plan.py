"""The retry planner (pure): caps per category, permanent never automatic, by-hand selection,
task sizes, backoff with full jitter."""

from __future__ import annotations

import pytest

from slurmctl.retry.plan import Failure, Policy, plan

POLICY = Policy(
    attempts={"transient": 3, "infrastructure": 2, "resources": 2}, base_s=10, cap_s=60, items_per_task=2
)


def fails(*spec: tuple[int, str]) -> list[Failure]:
    return [Failure(i, cat, "E", "t0000000") for i, cat in spec]


def test_retryable_categories_only_and_caps():
    f = fails((5, "transient"), (1, "permanent"), (2, "unknown"), (3, "infrastructure"), (4, "resources"))
    p = plan(f, {3: 2}, POLICY, rng=lambda: 0.5)
    assert p.tasks == [[4, 5]]  # 3 ran twice: infrastructure cap 2 reached
    assert p.skipped == {"permanent": 1, "unknown": 1, "infrastructure: attempts used up": 1}
    assert p.categories == {"resources": 1, "transient": 1}
    assert p.origin == {"t0000000": [4, 5]}
    assert p.round == 2 and p.delay_s == 5.0  # half of base_s


def test_items_split_into_tasks_in_item_order():
    p = plan(fails(*[(i, "transient") for i in (9, 1, 5, 3, 7)]), {}, POLICY)
    assert p.tasks == [[1, 3], [5, 7], [9]]
    assert p.items == 5


def test_backoff_doubles_per_round_up_to_the_cap_and_jitter_is_uniform():
    f = fails((1, "transient"))
    assert plan(f, {1: 2}, POLICY, rng=lambda: 1.0).delay_s == 20.0  # third run: base * 2
    assert plan(f, {}, Policy(attempts={"transient": 9}, base_s=10, cap_s=60), rng=lambda: 0.0).delay_s == 0
    assert (
        plan(f, {1: 8}, Policy(attempts={"transient": 9}, base_s=10, cap_s=60), rng=lambda: 1.0).delay_s == 60
    )
    no_jitter = Policy(attempts={"transient": 3}, base_s=10, cap_s=60, jitter=False)
    assert plan(f, {}, no_jitter, rng=lambda: 0.0).delay_s == 10


def test_by_hand_ignores_caps_selects_and_force_adds_permanent():
    f = fails((1, "transient"), (2, "permanent"), (3, "infrastructure"))
    tries = {1: 3, 3: 5}
    assert plan(f, tries, POLICY).tasks == []
    assert plan(f, tries, POLICY, by_hand=True).tasks == [[1, 3]]
    assert plan(f, tries, POLICY, by_hand=True, categories=["transient"]).tasks == [[1]]
    assert plan(f, tries, POLICY, by_hand=True, force=True).tasks == [[1, 2], [3]]
    assert plan(f, tries, POLICY, by_hand=True, categories=["permanent"], force=True).tasks == [[2]]


def test_an_item_is_planned_once():
    p = plan([Failure(1, "transient", "E", "t0000001"), Failure(1, "transient", "E", "t0000002")], {}, POLICY)
    assert p.tasks == [[1]] and p.origin == {"t0000001": [1]}


@pytest.mark.parametrize("cfg", [{}, {"retry": {"max_attempts": 3}}])
def test_policy_defaults_from_config(cfg):
    p = Policy.from_config(cfg)
    assert p.attempts == {"transient": 3, "infrastructure": 3, "resources": 2}
    assert (p.base_s, p.cap_s, p.jitter, p.items_per_task) == (10.0, 600.0, True, 1000)
