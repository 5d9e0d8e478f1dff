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

    def counting_many(dir_fd, names, fields, base):  # type: ignore[no-untyped-def]
        head = Path(base).relative_to(store.root / "tasks").as_posix()
        reads.extend(f"{head}/{n[: -len('.json')]}" for n in names)
        return real_many(dir_fd, names, fields, base)

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


def _write_raw(store: FileStateStore, key: str, text: str) -> None:
    """A record file with exactly ``text`` in it (as a hand edit or another tool might leave it)."""
    path = store.root / "tasks" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


ODD_VALUES = [
    0,
    -1,
    2**63,
    -(2**70),
    0.1,
    -0.0,
    1e-310,
    1.7976931348623157e308,
    5e-324,
    "",
    'é\n\t"\\ \u2028 😀',
    None,
    True,
    False,
    [],
    [1, [2, {"a": None}]],
    {"nested": {"x": 1.5}},
]


@pytest.mark.parametrize("bulk", [False, True], ids=["json", "msgspec"])
def test_projection_decodes_exactly_like_json_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    """Both decoders of a projected scan (the C JSON scanner; msgspec for big reads) give what
    json.loads gives, for any JSON value and for records only json.loads accepts (NaN, a BOM,
    whitespace, lone surrogates, floats beyond range)."""
    from slurmctl.storage import local

    monkeypatch.setattr(local, "BULK_DECODE_MIN", 1 if bulk else 10**9)
    store = FileStateStore(tmp_path, fsync=False)
    rng = random.Random(11)
    fields = ("state", "n", "absent", "x")
    want = []
    for i in range(300):
        value = {"state": rng.choice(ODD_VALUES), "n": rng.random() * 10 ** rng.randint(-300, 300)}
        if rng.random() < 0.5:
            value["x"] = rng.choice(ODD_VALUES)
        value["other"] = rng.choice(ODD_VALUES)  # not projected
        store.create("tasks", f"j/t{i:03d}", value)
        want.append((f"j/t{i:03d}", [value.get(f) for f in fields]))
    odd = {
        "j/u0": ('{"version": 1, "value": {"state": NaN, "n": Infinity}}', [float("nan"), float("inf")]),
        "j/u1": ('\ufeff{"version":1,"value":{"state":"bom"}}', ["bom", None]),
        "j/u2": (' \n{"version":1,"value":{"state":"ws"}}\n\n', ["ws", None]),
        "j/u3": ('{"version":1,"value":{"state":"\\ud800"}}', ["\ud800", None]),
        "j/u4": ('{"version":1,"value":{"state":1e999}}', [float("inf"), None]),
        "j/u5": ('{"version":1,"value":{"state":"a","state":"b"}}', ["b", None]),
    }
    for key, (text, _) in odd.items():
        if key == "j/u1":
            (store.root / "tasks" / "j").mkdir(parents=True, exist_ok=True)
            (store.root / "tasks" / f"{key}.json").write_bytes(text.encode("utf-8"))
        else:
            _write_raw(store, key, text)
    got = store.scan_fields("tasks", "j/", fields)
    assert got[: len(want)] == want
    assert [k for k, _ in got[len(want) :]] == list(odd)
    for (key, vals), (_, want_vals) in zip(got[len(want) :], odd.values(), strict=True):
        assert repr(vals[:2]) == repr(want_vals), key  # repr: nan == nan is False
    assert got == store.scan_fields("tasks", "j/", fields)  # and the cached copy is the same
    one = store.scan_fields("tasks", "j/", ["x"])  # a one-field projection has its own path
    assert one[: len(want)] == [(k, v[3:]) for k, v in want]


@pytest.mark.parametrize("bulk", [False, True], ids=["json", "msgspec"])
@pytest.mark.parametrize(
    "text, message",
    [
        ('{"version": 1, "value": {"state": "x"}', "Expecting"),
        ("", "Expecting value"),
        ('{"version": 1, "value": 5}', "its value is not an object"),
        ('{"value": {}}', "not a state record"),
        ("[1, 2]", "not a state record"),
        ('{"version": 1, "value": {}} {}', "Extra data"),
    ],
)
def test_unreadable_record_is_a_clear_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk: bool, text: str, message: str
) -> None:
    from slurmctl.errors import StorageError
    from slurmctl.storage import local

    monkeypatch.setattr(local, "BULK_DECODE_MIN", 1 if bulk else 10**9)
    store = FileStateStore(tmp_path, fsync=False)
    store.create("tasks", "j/a", {"state": "queued"})
    _write_raw(store, "j/b", text)
    with pytest.raises(StorageError) as err:
        store.scan_fields("tasks", "j/", ["state"])
    assert str(tmp_path / "tasks" / "j" / "b.json") in str(err.value) and message in str(err.value)
    if "value" not in message or "object" not in message:  # the whole-value scan fails the same way
        with pytest.raises(StorageError, match=message):
            store.scan("tasks", "j/")


def test_torn_or_foreign_cache_sections_are_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache whose identities section is torn (a crash without fsync), whose header names
    another Python, or whose bytes were flipped is never trusted: the records are read again."""
    store = FileStateStore(tmp_path, fsync=False)
    for i in range(40):
        store.create("tasks", f"job/t{i:02d}", {"i": i})
    _age_everything(tmp_path, 60)
    want = _uncached(store, "tasks", "job/", monkeypatch)
    assert _cached(store, "tasks", "job/") == want
    cache = Path(scancache.cache_file(tmp_path / ".scan-cache" / "tasks" / "job", None))
    good = cache.read_bytes()
    store.update("tasks", "job/t05", lambda v: {**v, "i": -5})  # the directory changed: stats needed
    want = _uncached(store, "tasks", "job/", monkeypatch)
    reads = _count_reads(store, monkeypatch)
    for broken in (
        good[:-10],  # torn identities section
        good.replace(b"py3.", b"py9.", 1),  # written by another Python
        good[:60] + bytes([good[60] ^ 0xFF]) + good[61:],  # a flipped byte in the listing
    ):
        cache.write_bytes(broken)
        _age_everything(tmp_path, 60)
        reads.clear()
        assert _cached(store, "tasks", "job/") == want
        assert len(reads) == 40, broken[:40]  # nothing trusted: every record read again


@pytest.mark.parametrize("cached", [False, True], ids=["first scan", "cached scan"])
def test_records_removed_between_listing_and_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    """A record deleted after the directory was listed but before it is read (a concurrent
    `slurmctl delete`) is simply absent from the scan, whatever the cache holds."""
    store = FileStateStore(tmp_path, fsync=False)
    for i in range(30):
        store.create("tasks", f"job/t{i:02d}", {"i": i})
    if cached:
        _age_everything(tmp_path, 60)
        _cached(store, "tasks", "job/")
        for i in (3, 17, 29):  # these will be read again, and vanish just before
            store.update("tasks", f"job/t{i:02d}", lambda v: {**v, "i": -1})
    real_many = FileStateStore._read_many

    def racing(dir_fd, names, fields, base):  # type: ignore[no-untyped-def]
        for victim in ("t03.json", "t17.json", "t29.json"):
            os.unlink(os.path.join(base, victim))
        return real_many(dir_fd, names, fields, base)

    monkeypatch.setattr(store, "_read_many", racing)
    got = store.scan_fields("tasks", "job/", ["i"])
    want = [(f"job/t{i:02d}", [i]) for i in range(30) if i not in (3, 17, 29)]
    assert got == want
    monkeypatch.undo()
    assert _cached(store, "tasks", "job/") == _uncached(store, "tasks", "job/", monkeypatch)


@pytest.mark.skipif(not hasattr(os, "O_NOATIME") or os.geteuid() != 0, reason="needs root (to become nobody)")
def test_records_of_another_user_are_read_without_noatime(tmp_path: Path) -> None:
    """Scans open records with O_NOATIME, which the kernel refuses on another user's files: such
    records are still read (and the scan cache, not writable there, is simply not written)."""
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="slurmctl-noatime-"))
    try:
        shared.chmod(0o755)
        store = FileStateStore(shared / "state", fsync=False)
        for i in range(5):
            store.create("tasks", f"job/t{i}", {"state": "queued", "i": i})
        for d, _, files in os.walk(shared):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        probe = (
            "import json, os, sys\n"
            "from slurmctl.storage.local import FileStateStore\n"  # imports first: nobody cannot read them
            "s = FileStateStore(sys.argv[1])\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "values = [r.value for r in s.scan('tasks', 'job/')]\n"
            "print(json.dumps([s.scan_fields('tasks', 'job/', ['i']), values]))"
        )
        p = subprocess.run(
            [sys.executable, "-c", probe, str(shared / "state")], capture_output=True, text=True, check=False
        )
        assert p.returncode == 0, p.stderr
        fields, values = json.loads(p.stdout)
        assert fields == [[f"job/t{i}", [i]] for i in range(5)]
        assert values == [{"state": "queued", "i": i} for i in range(5)]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_format2_projection_caches_are_removed_when_format3_replaces_them(tmp_path: Path) -> None:
    """Before format 3, a projection's cache was named after the sha256 of its fields (16 hex
    digits); the first format-3 scan of the directory removes such files (they were left beside every
    job otherwise) and nothing else."""
    store = FileStateStore(tmp_path, fsync=False)
    for i in range(5):
        store.create("tasks", f"job/t{i}", {"state": "queued", "items_done": i})
    fields = ("state", "items_done")
    cache_dir = tmp_path / ".scan-cache" / "tasks" / "job"
    cache_dir.mkdir(parents=True)
    legacy = [cache_dir / ".scan-0123456789abcdef", cache_dir / ".scan-fedcba9876543210"]
    keep = [cache_dir / ".scan-0123456789abcdeg", cache_dir / "notes"]  # not format 2's names
    for p in legacy + keep:
        p.write_bytes(b"slurmctl scan cache 2 ...")
    assert store.scan_fields("tasks", "job/", fields) == [(f"job/t{i}", ["queued", i]) for i in range(5)]
    names = {p.name for p in cache_dir.iterdir()}
    assert not names & {p.name for p in legacy} and {p.name for p in keep} <= names
    assert os.path.basename(scancache.cache_file(cache_dir, fields)) in names
