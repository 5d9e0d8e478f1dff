"""DynamoStateStore behaviour beyond the shared contract: the update() shortcut over a cached
record, the state indexes, and exactly-once writes when a response is lost in the network."""

from __future__ import annotations

from typing import Any

import pytest

from slurmctl.storage.aws.state import DynamoStateStore
from slurmctl.storage.open import open_backend

pytestmark = pytest.mark.aws


def test_update_with_a_stale_cache_still_sees_the_current_value(moto_spec: dict[str, Any]) -> None:
    a = open_backend(moto_spec).state
    b = open_backend(moto_spec).state
    assert isinstance(a, DynamoStateStore)
    a.create("tasks", "j/t1", {"owner": "a", "n": 0})
    b.update("tasks", "j/t1", lambda v: {**v, "owner": "b"})  # a's cache is now stale

    def only_if_owner_is_b(v: dict[str, Any] | None) -> dict[str, Any]:
        assert v is not None
        if v["owner"] != "b":
            raise PermissionError("stale view")
        return {**v, "n": v["n"] + 1}

    rec = a.update("tasks", "j/t1", only_if_owner_is_b)  # raises on the cache, succeeds fresh
    assert rec is not None and rec.value == {"owner": "b", "n": 1} and rec.version == 3
    before = a.counter.total("dynamodb")
    a.update("tasks", "j/t1", lambda v: {**v, "n": v["n"] + 1})  # cache current: one PutItem
    assert a.counter.total("dynamodb") - before == 1
    assert b.get("tasks", "j/t1").value["n"] == 2


def test_query_state_by_job_and_across_jobs(moto_spec: dict[str, Any]) -> None:
    st = open_backend(moto_spec).state
    for job, task, state in [("j1", "t1", "running"), ("j1", "t2", "queued"), ("j2", "t1", "running")]:
        st.create("tasks", f"{job}/{task}", {"state": state})
    st.create("tasks", "j1/t3", {"no_state": True})  # sparse: not indexed
    assert [r.key for r in st.query_state("tasks", "running", job="j1")] == ["j1/t1"]
    assert [r.key for r in st.query_state("tasks", "running")] == ["j1/t1", "j2/t1"]


def test_lost_response_does_not_turn_our_write_into_a_conflict(
    moto: Any, moto_spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first PutItem reaches DynamoDB but its response is lost (connection dropped): the retry
    fails its condition, and the write token shows the earlier attempt was ours."""
    import botocore.exceptions

    st = open_backend(moto_spec).state
    assert isinstance(st, DynamoStateStore)
    st.create("limits", "ctr", {"n": 0})
    real = st.ddb.put_item
    calls = {"n": 0}

    def put_then_lose_response(**kwargs: Any) -> Any:
        calls["n"] += 1
        response = real(**kwargs)  # really applied on the server
        if calls["n"] == 1:
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=moto.url)
        return response

    monkeypatch.setattr(st.ddb, "put_item", put_then_lose_response)
    rec = st.compare_and_set("limits", "ctr", {"n": 1}, 1)
    assert rec.version == 2 and calls["n"] == 2
    fresh = open_backend(moto_spec).state.get("limits", "ctr")
    assert (fresh.version, fresh.value) == (2, {"n": 1})  # applied exactly once
