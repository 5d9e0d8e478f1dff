"""Local-backend specifics (the shared contract is in tests/contract)."""

import json
import multiprocessing as mp
import os
import time

import pytest

from slurmctl.errors import ConflictError, ObjectNotFoundError, StorageError
from slurmctl.storage.local import local_backend


def test_put_get_list_delete(tmp_path):
    b = local_backend(tmp_path)
    info = b.objects.put("jobs/j/a.json", b"{}")
    assert info.size == 2 and len(info.sha256) == 64
    b.objects.put("jobs/j/sub/b.json", b"x")
    b.objects.put("jobs/k/c.json", b"y")
    assert list(b.objects.list("jobs/j/")) == ["jobs/j/a.json", "jobs/j/sub/b.json"]
    assert list(b.objects.list("jobs/")) == ["jobs/j/a.json", "jobs/j/sub/b.json", "jobs/k/c.json"]
    b.objects.delete("jobs/j/a.json")
    b.objects.delete("jobs/j/a.json")  # idempotent
    with pytest.raises(ObjectNotFoundError):
        b.objects.get("jobs/j/a.json")


def test_in_flight_temp_files_are_invisible(tmp_path):
    b = local_backend(tmp_path)
    b.objects.put("p/x", b"1")
    (tmp_path / "p" / ".y.abc.tmp").write_bytes(b"partial")  # what a crash mid-write leaves
    assert list(b.objects.list("p/")) == ["p/x"]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b"])
def test_bad_keys_rejected(tmp_path, key):
    with pytest.raises(StorageError):
        local_backend(tmp_path).objects.put(key, b"")


def _race_put_if_absent(root: str, i: int, q: mp.Queue) -> None:
    b = local_backend(root)
    try:
        b.objects.put_if_absent("marker", str(i).encode())
        q.put(i)
    except ConflictError:
        q.put(None)


def test_put_if_absent_has_one_winner_across_processes(tmp_path):
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_race_put_if_absent, args=(str(tmp_path), i, q)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    outcomes = [q.get() for _ in procs]
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1
    assert (tmp_path / "marker").read_bytes() == str(winners[0]).encode()


def test_stale_lock_of_a_dead_writer_is_broken(tmp_path):
    """A lock file without boot id and token (written by hand or by an older slurmctl) cannot be
    checked by pid: it is stale once unchanged for stale_lock_s on this process's clock. The
    liveness cases are in tests/unit/storage/test_local_lock_liveness.py."""
    b = local_backend(tmp_path)
    b.state.stale_lock_s = 0.5
    b.state.create("t", "k", {"n": 0})
    lock = tmp_path / "state" / "t" / "k.json.lock"
    lock.write_text(json.dumps({"host": "gone", "pid": 1, "time": 0}))
    old = time.time() - 10
    os.utime(lock, (old, old))
    rec = b.state.compare_and_set("t", "k", {"n": 1}, 1)
    assert rec.version == 2
    assert not lock.exists()


def test_cas_conflict_and_scan(tmp_path):
    b = local_backend(tmp_path)
    b.state.create("tasks", "j1/t0", {"s": "a"})
    b.state.create("tasks", "j1/t1", {"s": "b"})
    b.state.create("tasks", "j2/t0", {"s": "c"})
    with pytest.raises(ConflictError):
        b.state.create("tasks", "j1/t0", {})
    b.state.compare_and_set("tasks", "j1/t0", {"s": "a2"}, 1)
    with pytest.raises(ConflictError):
        b.state.compare_and_set("tasks", "j1/t0", {"s": "lost"}, 1)
    assert [(r.key, r.version) for r in b.state.scan("tasks", "j1/")] == [("j1/t0", 2), ("j1/t1", 1)]
    assert len(b.state.scan("tasks")) == 3


def test_unwritable_root_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")  # fails for root too, unlike chmod
    with pytest.raises(StorageError, match="cannot create backend root"):
        local_backend(tmp_path / "file" / "sub")


def test_backend_root_description_and_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = local_backend("rel//dir/")
    assert b.description == f"local:{tmp_path}/rel/dir"
    assert b.spec == {"kind": "local", "root": f"{tmp_path}/rel/dir"}
    assert (tmp_path / "rel" / "dir").is_dir() and str(b.state.root) == f"{tmp_path}/rel/dir/state"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError, match="cannot create backend root"):
        local_backend(tmp_path / "afile" / "sub")
