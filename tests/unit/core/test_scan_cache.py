"""The local state store's stat-validated scan cache (storage/scancache.py): never stale, and it
really does skip reading unchanged records."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from slurmctl.storage import scancache
from slurmctl.storage.local import FileStateStore


def _uncached(store: FileStateStore, table: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> list:
    with monkeypatch.context() as m:
        m.setenv("SLURMCTL_SCAN_CACHE", "0")
        return [(r.key, r.version, r.value) for r in store.scan(table, prefix)]


def _cached(store: FileStateStore, table: str, prefix: str) -> list:
    return [(r.key, r.version, r.value) for r in store.scan(table, prefix)]


def _count_reads(store: FileStateStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the record files a scan reads from now on (its bulk reader and single gets)."""
    reads: list[str] = []
    real_many, real_one = FileStateStore._read_many, FileStateStore._read

    def counting_many(dir_fd, names, fields, base, key_head):  # type: ignore[no-untyped-def]
        reads.extend(key_head + n[: -len(".json")] for n in names)
        return real_many(dir_fd, names, fields, base, key_head)

    def counting_one(path: str, key: str):  # type: ignore[no-untyped-def]
        reads.append(key)
        return real_one(path, key)

    monkeypatch.setattr(store, "_read_many", counting_many)
    monkeypatch.setattr(store, "_read", counting_one)
    return reads


def _age_everything(root: Path, seconds: float) -> None:
    """Backdate every record file and directory, as if written ``seconds`` ago (the racy window
    is what keeps fresh entries from being trusted; this test moves them out of it)."""
    past = time.time() - seconds
    for dirpath, _dirs, files in os.walk(root):
        if ".scan-cache" in dirpath:
            continue
        for f in files:
            os.utime(os.path.join(dirpath, f), (past, past))
        os.utime(dirpath, (past, past))


def test_rapid_changes_are_never_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Updates, creates and deletes interleaved with scans, faster than any timestamp tick: every
    cached scan equals an uncached one (same keys, versions, values, order)."""
    store = FileStateStore(tmp_path, fsync=False)
    rng = random.Random(7)
    keys = [f"j/t{i:03d}" for i in range(60)] + ["j/sub/x", "j/sub/y", "j/t010/z"]
    for k in keys:
        store.create("tasks", k, {"n": 0})
    for step in range(150):
        k = rng.choice(keys)
        rec = store.get("tasks", k)
        if rec is None:
            store.create("tasks", k, {"n": step})
        elif rng.random() < 0.1:
            store.delete("tasks", k)
        else:
            # same size on purpose: only the identity (inode, mtime) can tell the versions apart
            store.compare_and_set("tasks", k, {"n": step % 10}, rec.version)
        for prefix in ("j/", "j/t01", ""):
            assert _cached(store, "tasks", prefix) == _uncached(store, "tasks", prefix, monkeypatch)


def test_unchanged_records_are_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStateStore(tmp_path, fsync=False)
    for i in range(200):
        store.create("tasks", f"job/t{i:03d}", {"state": "queued", "i": i})
    _age_everything(tmp_path, 60)
    reads = _count_reads(store, monkeypatch)
    first = _cached(store, "tasks", "job/")
    assert len(reads) == 200  # no cache yet: everything read once, cache written after
    reads.clear()
    assert _cached(store, "tasks", "job/") == first
    assert reads == []  # nothing changed: the directory's identity vouches for all 200
    store.update("tasks", "job/t007", lambda v: {**v, "state": "running"})
    reads.clear()  # the update's own reads
    got = _cached(store, "tasks", "job/")
    assert reads == ["job/t007"]  # only the replaced file is read
    assert dict((k, v) for k, _, v in got)["job/t007"]["state"] == "running"
    assert len(got) == 200


def test_fresh_entries_are_always_reread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Within the racy window a rewrite could keep the same coarse mtime, so entries that young
    are never trusted from the cache."""
    store = FileStateStore(tmp_path, fsync=False)
    for i in range(5):
        store.create("tasks", f"job/t{i}", {"i": i})
    reads = _count_reads(store, monkeypatch)
    _cached(store, "tasks", "job/")
    reads.clear()
    _cached(store, "tasks", "job/")
    assert sorted(reads) == [f"job/t{i}" for i in range(5)]


def test_projection_cache_and_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStateStore(tmp_path, fsync=False)
    for i in range(50):
        store.create("tasks", f"job/t{i:02d}", {"state": "queued", "items_done": i, "big": "x" * 100})
    _age_everything(tmp_path, 60)
    fields = ("state", "items_done", "missing")
    want = [(f"job/t{i:02d}", ["queued", i, None]) for i in range(50)]
    assert store.scan_fields("tasks", "job/", fields) == want
    reads = _count_reads(store, monkeypatch)
    assert store.scan_fields("tasks", "job/", fields) == want
    assert reads == []
    store.delete("tasks", "job/t13")
    reads.clear()
    assert store.scan_fields("tasks", "job/", fields) == [w for w in want if w[0] != "job/t13"]
    assert reads == []  # a delete needs stats, not reads
    # the whole-value cache and the projection's are separate files
    names = sorted(p.name for p in (tmp_path / ".scan-cache" / "tasks" / "job").iterdir())
    assert len(names) == 1 and names[0].startswith(".scan-")


def test_corrupt_or_unwritable_cache_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStateStore(tmp_path, fsync=False)
    for i in range(10):
        store.create("tasks", f"job/t{i}", {"i": i})
    want = _uncached(store, "tasks", "job/", monkeypatch)
    assert _cached(store, "tasks", "job/") == want
    cache = Path(scancache.cache_file(tmp_path / ".scan-cache" / "tasks" / "job", None))
    assert cache.exists()
    cache.write_bytes(b"\x00garbage, as a crash without fsync may leave")
    assert _cached(store, "tasks", "job/") == want
    # a file where the cache directory should be: the cache cannot be written, the scan still works
    other = FileStateStore(tmp_path / "other", fsync=False)
    other.create("tasks", "a/b", {"v": 1})
    (tmp_path / "other" / ".scan-cache").write_bytes(b"not a directory")
    assert [r.value for r in other.scan("tasks", "a/")] == [{"v": 1}]


def test_missing_directory_scans_empty(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path, fsync=False)
    assert store.scan("tasks", "nothing/") == []
    assert store.scan_fields("tasks", "nothing/", ["state"]) == []
