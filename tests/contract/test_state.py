"""StateStore conformance: versioned records and compare-and-set, the same on every backend."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest

from slurmctl.errors import ConflictError, StorageError


def test_create_get(state: Any) -> None:
    assert state.get("jobs", "j1") is None
    rec = state.create("jobs", "j1", {"state": "created", "n": 1})
    assert (rec.key, rec.version, rec.value) == ("j1", 1, {"state": "created", "n": 1})
    got = state.get("jobs", "j1")
    assert (got.key, got.version, got.value) == ("j1", 1, {"state": "created", "n": 1})
    with pytest.raises(ConflictError):
        state.create("jobs", "j1", {"state": "other"})
    assert state.get("jobs", "j1").value == {"state": "created", "n": 1}


def test_compare_and_set(state: Any) -> None:
    state.create("tasks", "j1/t1", {"state": "queued", "attempt": 0})
    rec = state.compare_and_set("tasks", "j1/t1", {"state": "running", "attempt": 1}, 1)
    assert rec.version == 2
    with pytest.raises(ConflictError):
        state.compare_and_set("tasks", "j1/t1", {"state": "lost"}, 1)
    got = state.get("tasks", "j1/t1")
    assert (got.version, got.value) == (2, {"state": "running", "attempt": 1})
    with pytest.raises(ConflictError):
        state.compare_and_set("tasks", "j1/missing", {"state": "x"}, 1)


def test_values_roundtrip_exactly(state: Any) -> None:
    value = {"f": 0.1, "big": 2**53 + 1, "neg": -1.5e-9, "s": "ünï", "l": [1, None, True], "d": {"x": {}}}
    state.create("tasks", "j/t", value)
    assert state.get("tasks", "j/t").value == value


def test_scan(state: Any) -> None:
    for key in ["j1/t2", "j1/t1", "j10/t1", "j2/t1"]:
        state.create("tasks", key, {"k": key})
    assert [r.key for r in state.scan("tasks", "j1/")] == ["j1/t1", "j1/t2"]
    assert [r.key for r in state.scan("tasks", "j1/t1")] == ["j1/t1"]
    assert [r.key for r in state.scan("tasks", "j1")] == ["j1/t1", "j1/t2", "j10/t1"]
    assert [r.key for r in state.scan("tasks")] == ["j1/t1", "j1/t2", "j10/t1", "j2/t1"]
    assert state.scan("tasks", "none/") == []
    for key in ["b", "a"]:
        state.create("jobs", key, {})
    assert [r.key for r in state.scan("jobs")] == ["a", "b"]


def test_scan_nested_keys(state: Any) -> None:
    state.create("limits", "job/api", {"n": 1})
    state.create("limits", "job/sub/api", {"n": 2})
    assert [r.key for r in state.scan("limits", "job/")] == ["job/api", "job/sub/api"]


def test_delete_is_idempotent(state: Any) -> None:
    state.create("jobs", "gone", {})
    state.delete("jobs", "gone")
    state.delete("jobs", "gone")
    assert state.get("jobs", "gone") is None
    state.create("jobs", "gone", {"again": True})  # a deleted key can be created afresh
    assert state.get("jobs", "gone").version == 1


def test_update_helper(state: Any) -> None:
    rec = state.update("jobs", "u", lambda v: {"n": 1} if v is None else {"n": v["n"] + 1})
    assert (rec.version, rec.value) == (1, {"n": 1})
    rec = state.update("jobs", "u", lambda v: {"n": v["n"] + 1})
    assert (rec.version, rec.value) == (2, {"n": 2})
    same = state.update("jobs", "u", lambda v: None)
    assert same.version == 2


def test_invalid_key(state: Any) -> None:
    with pytest.raises(StorageError):
        state.create("jobs", "/abs", {})


def _increment(spec: dict[str, Any], who: int, times: int, start: Any, out: Any) -> None:
    from slurmctl.storage.open import open_backend

    st = open_backend(spec).state
    start.wait()
    for i in range(times):

        def change(v: dict[str, Any] | None, i: int = i) -> dict[str, Any]:
            v = v or {"count": 0, "applied": []}
            return {"count": v["count"] + 1, "applied": [*v["applied"], f"{who}:{i}"]}

        st.update("limits", "counter", change, attempts=1000)
    out.put(who)


def test_concurrent_compare_and_set_from_processes(state_spec: dict[str, Any], state: Any) -> None:
    """N processes x K increments through update(): every successful update is applied exactly
    once (no lost update, no double application)."""
    n, k = 6, 15
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_increment, args=(state_spec, i, k, start, out)) for i in range(n)]
    for p in procs:
        p.start()
    start.set()
    done = sorted(out.get(timeout=300) for _ in range(n))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert done == list(range(n))
    rec = state.get("limits", "counter")
    assert rec.value["count"] == n * k
    assert sorted(rec.value["applied"]) == sorted(f"{w}:{i}" for w in range(n) for i in range(k))
    assert rec.version == n * k
