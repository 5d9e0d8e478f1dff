"""Slurm state strings -> JobState."""

from __future__ import annotations

import pytest

from slurmctl.slurm.states import LONG_STATES, SHORT_STATES, TERMINAL_STATES, JobState, parse_state


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("PENDING", JobState.PENDING),
        ("PD", JobState.PENDING),
        ("CONFIGURING", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("COMPLETING", JobState.COMPLETING),
        ("COMPLETED", JobState.COMPLETED),
        ("CD", JobState.COMPLETED),
        ("FAILED", JobState.FAILED),
        ("CANCELLED by 0", JobState.CANCELLED),
        ("CANCELLED by 64030", JobState.CANCELLED),
        ("TIMEOUT", JobState.TIMEOUT),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY),
        ("OOM", JobState.OUT_OF_MEMORY),
        ("NODE_FAIL", JobState.NODE_FAIL),
        ("PREEMPTED", JobState.PREEMPTED),
        ("REQUEUED", JobState.REQUEUED),
        ("SUSPENDED", JobState.SUSPENDED),
        ("BOOT_FAIL", JobState.BOOT_FAIL),
        ("DEADLINE", JobState.DEADLINE),
        ("running", JobState.RUNNING),
        ("RUNNING+", JobState.RUNNING),
        ("SOMETHING_NEW", JobState.UNKNOWN),
        ("", JobState.UNKNOWN),
    ],
)
def test_parse_state(text, state):
    assert parse_state(text) is state


def test_terminal_states():
    assert {s for s in JobState if s.is_terminal} == TERMINAL_STATES
    for live in (
        JobState.PENDING,
        JobState.RUNNING,
        JobState.COMPLETING,
        JobState.REQUEUED,
        JobState.SUSPENDED,
        JobState.UNKNOWN,
    ):
        assert not live.is_terminal
    assert JobState.COMPLETED.is_success and not JobState.FAILED.is_success


def test_every_enum_member_is_reachable_from_a_slurm_string():
    reachable = set(LONG_STATES.values()) | set(SHORT_STATES.values()) | {JobState.UNKNOWN}
    assert reachable == set(JobState)
