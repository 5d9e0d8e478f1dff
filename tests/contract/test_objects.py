"""ObjectStore conformance: every backend behaves the same (see slurmctl.storage.base)."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import pytest

from slurmctl.errors import ChecksumMismatchError, ConflictError, ObjectNotFoundError, StorageError


def test_put_get_roundtrip(objects: Any) -> None:
    info = objects.put("jobs/j1/job.json", b'{"a": 1}')
    assert info.key == "jobs/j1/job.json"
    assert info.size == 8
    assert info.sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert objects.get("jobs/j1/job.json") == b'{"a": 1}'


def test_put_replaces_and_empty_object(objects: Any) -> None:
    objects.put("k/x", b"first")
    objects.put("k/x", b"")
    assert objects.get("k/x") == b""
    assert objects.head("k/x").size == 0


def test_missing_object(objects: Any) -> None:
    with pytest.raises(ObjectNotFoundError):
        objects.get("jobs/nope/job.json")
    assert objects.head("jobs/nope/job.json") is None
    assert not objects.exists("jobs/nope/job.json")
    with pytest.raises(ObjectNotFoundError):
        objects.get_file("jobs/nope/job.json", Path(os.devnull + "-never-written"))


def test_head_and_exists(objects: Any) -> None:
    data = os.urandom(1000)
    objects.put("a/b/c.bin", data)
    info = objects.head("a/b/c.bin")
    assert (info.size, info.sha256) == (1000, hashlib.sha256(data).hexdigest())
    assert objects.exists("a/b/c.bin")


def test_put_file_and_get_file_large(objects: Any, tmp_path: Path) -> None:
    # Larger than the aws fixtures' multipart threshold (5 MiB), so S3 assembles it from parts.
    src = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(12):
            f.write(block[i:] + block[:i])
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    info = objects.put_file("jobs/j/results/t1/a1.jsonl", src)
    assert (info.size, info.sha256) == (src.stat().st_size, want)
    dst = tmp_path / "out" / "copy.bin"
    got = objects.get_file("jobs/j/results/t1/a1.jsonl", dst)
    assert got.sha256 == want
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == want
    assert objects.head("jobs/j/results/t1/a1.jsonl").sha256 == want
    assert not [p for p in dst.parent.iterdir() if p.name != "copy.bin"]  # no temp files left


def test_put_if_absent(objects: Any) -> None:
    objects.put_if_absent("jobs/j/results/t1/.done", b"one")
    with pytest.raises(ConflictError):
        objects.put_if_absent("jobs/j/results/t1/.done", b"two")
    assert objects.get("jobs/j/results/t1/.done") == b"one"


def _race(spec: dict[str, Any], key: str, who: int, start: Any, out: Any) -> None:
    from slurmctl.storage.open import open_backend

    store = open_backend(spec).objects
    start.wait()
    try:
        store.put_if_absent(key, f"winner {who}".encode())
        out.put(("won", who))
    except ConflictError:
        out.put(("lost", who))


def test_put_if_absent_race_has_one_winner(object_spec: dict[str, Any], objects: Any) -> None:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    n = 6
    procs = [ctx.Process(target=_race, args=(object_spec, "race/.done", i, start, out)) for i in range(n)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(60)
    winners = [who for what, who in results if what == "won"]
    assert len(winners) == 1, results
    assert objects.get("race/.done") == f"winner {winners[0]}".encode()


def test_list_is_sorted_and_prefix_exact(objects: Any) -> None:
    for key in ["jobs/j2/b", "jobs/j1/tasks/t2.json", "jobs/j1/tasks/t1.json", "jobs/j10/x", "other/y"]:
        objects.put(key, b"x")
    assert list(objects.list("jobs/j1/")) == ["jobs/j1/tasks/t1.json", "jobs/j1/tasks/t2.json"]
    assert list(objects.list("jobs/j1")) == ["jobs/j1/tasks/t1.json", "jobs/j1/tasks/t2.json", "jobs/j10/x"]
    assert list(objects.list("jobs/")) == [
        "jobs/j1/tasks/t1.json",
        "jobs/j1/tasks/t2.json",
        "jobs/j10/x",
        "jobs/j2/b",
    ]
    assert list(objects.list("nothing/")) == []


def test_list_includes_dot_files(objects: Any) -> None:
    objects.put("jobs/j/results/t1/a1.jsonl", b"r")
    objects.put_if_absent("jobs/j/results/t1/.done", b"d")
    assert list(objects.list("jobs/j/results/t1/")) == [
        "jobs/j/results/t1/.done",
        "jobs/j/results/t1/a1.jsonl",
    ]


def test_delete_is_idempotent(objects: Any) -> None:
    objects.put("d/x", b"1")
    objects.delete("d/x")
    objects.delete("d/x")
    assert not objects.exists("d/x")


def test_get_verified(objects: Any) -> None:
    objects.put("v/x", b"payload")
    assert objects.get_verified("v/x", hashlib.sha256(b"payload").hexdigest()) == b"payload"
    with pytest.raises(ChecksumMismatchError):
        objects.get_verified("v/x", "0" * 64)


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "a/"])
def test_invalid_keys(objects: Any, key: str) -> None:
    with pytest.raises(StorageError):
        objects.put(key, b"x")
