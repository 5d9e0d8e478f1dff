"""The serve app's cache of dashboard data: an unknown job leaves nothing behind, and only the
jobs asked for last are kept (each can be megabytes)."""

from __future__ import annotations

import pytest

from slurmctl.errors import JobNotFoundError
from slurmctl.server.app import _Cache


class State:
    def __init__(self, jobs: set[str]) -> None:
        self.jobs = jobs

    def get(self, table: str, key: str):
        return object() if key in self.jobs else None


class Backend:
    description = "test backend"

    def __init__(self, jobs: set[str]) -> None:
        self.state = State(jobs)


def test_unknown_jobs_leave_nothing_and_only_the_last_jobs_are_kept(monkeypatch):
    monkeypatch.setattr("slurmctl.dashboard.data.collect", lambda backend, job_id, details: {"job": job_id})
    jobs = {f"j{i}" for i in range(5)}
    cache = _Cache(Backend(jobs), ttl_s=60, keep=2)
    for i in range(100):
        with pytest.raises(JobNotFoundError):
            cache.get(f"nope{i}")
    assert cache.locks == {} and cache.entries == {}
    for j in ("j0", "j1", "j2", "j1"):
        assert cache.get(j) == {"job": j}
    assert list(cache.entries) == ["j2", "j1"] and set(cache.locks) == {"j2", "j1"}
