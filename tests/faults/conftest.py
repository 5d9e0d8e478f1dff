"""Fixtures of the fault suite: the seeded ``replay`` and ``new_job`` (ends its leftover processes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import FaultJob, Replay, make_job, new_replay


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder carries the ``faults`` marker (``-m 'not faults'`` leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def replay(request: pytest.FixtureRequest) -> Replay:
    return new_replay(request.node.nodeid)


@pytest.fixture
def new_job(tmp_path: Path, replay: Replay) -> Iterator[Callable[..., FaultJob]]:
    """``new_job(**make_job options)``: a FaultJob in tmp_path; its runner and workers that still run
    at teardown are SIGKILLed by pid."""
    made: list[FaultJob] = []

    def factory(**kw: object) -> FaultJob:
        job = make_job(tmp_path, replay, **kw)  # type: ignore[arg-type]
        made.append(job)
        return job

    yield factory
    for job in made:
        job.end_leftovers()
