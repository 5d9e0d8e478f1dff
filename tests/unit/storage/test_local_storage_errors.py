"""Every file-system failure of the local stores reaches the caller as a StorageError naming the
path and the cause, with a hint for the failures a user can act on (full, over quota, read-only,
permissions) — never as a raw OSError, which the worker's heartbeat thread would die of."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurmctl.errors import StorageError
from slurmctl.storage.local import FileStateStore, LocalObjectStore


def _broken_root(tmp_path: Path) -> Path:
    """A root below a regular file: every write meets ENOTDIR (for root too, unlike chmod)."""
    (tmp_path / "file").write_text("not a directory")
    return tmp_path / "file" / "root"


def test_state_store_under_a_regular_file(tmp_path: Path) -> None:
    state = FileStateStore(_broken_root(tmp_path), fsync=False)
    with pytest.raises(StorageError, match=r"cannot create state record .*/root/t/k\.json: Not a directory"):
        state.create("t", "k", {"n": 0})
    with pytest.raises(StorageError, match=r"/file/root/t/k\.json.*Not a directory"):
        state.compare_and_set("t", "k", {"n": 1}, 1)
    with pytest.raises(StorageError, match="Not a directory"):
        state.get("t", "k")
    with pytest.raises(StorageError, match="Not a directory"):
        state.scan("t")


def test_table_that_is_a_file(tmp_path: Path) -> None:
    state = FileStateStore(tmp_path, fsync=False)
    (tmp_path / "t").write_text("x")
    with pytest.raises(StorageError, match=r"/t/k\.json: .*(File exists|Not a directory)"):
        state.create("t", "k", {"n": 0})
    with pytest.raises(StorageError, match=r"/t/k\.json"):
        state.compare_and_set("t", "k", {"n": 1}, 1)


def test_object_store_under_a_regular_file(tmp_path: Path) -> None:
    objects = LocalObjectStore(_broken_root(tmp_path), fsync=False)
    for call in (
        lambda: objects.put("a/b", b"x"),
        lambda: objects.put_if_absent("a/b", b"x"),
        lambda: objects.get("a/b"),
    ):
        with pytest.raises(StorageError, match=r"/file/root/a/b: Not a directory"):
            call()
    assert objects.head("a/b") is None and not objects.exists("a/b")
    assert list(objects.list("a/")) == []


# Runs ``code`` (with ``state`` and ``objects`` on argv[1]) under a file-size limit of 4 KiB, with
# SIGXFSZ ignored so that a write past the limit fails with EFBIG, as it does for a job whose
# `ulimit -f` is set; prints what each call raised.
_FSIZE_PROBE = """
import json, resource, signal, sys
from slurmctl.storage.local import FileStateStore, LocalObjectStore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
state = FileStateStore(sys.argv[1] + "/state")
objects = LocalObjectStore(sys.argv[1] + "/objects")
state.create("t", "k", {"n": 0})
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
big = {"pad": "x" * 8192}
out = {}
for name, call in [
    ("create", lambda: state.create("t", "big", big)),
    ("compare_and_set", lambda: state.compare_and_set("t", "k", big, 1)),
    ("put", lambda: objects.put("o/big", b"x" * 8192)),
    ("put_if_absent", lambda: objects.put_if_absent("o/big2", b"x" * 8192)),
]:
    try:
        call()
        out[name] = ["ok", ""]
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


def test_a_file_size_limit_is_a_storage_error(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-c", _FSIZE_PROBE, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    for name, (kind, message) in got.items():
        assert kind == "StorageError", (name, kind, message)
        assert "File too large" in message and str(tmp_path) in message, (name, message)
    # nothing half-written was published
    assert FileStateStore(tmp_path / "state").get("t", "big") is None
    assert FileStateStore(tmp_path / "state").get("t", "k").version == 1
    assert sorted(os.listdir(tmp_path / "state" / "t")) == ["k.json"]
    assert sorted(os.listdir(tmp_path / "objects" / "o")) == []


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str = "64k") -> Iterator[Path]:
    where.mkdir()
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, check=False
    )
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(fs: Path) -> None:
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)


def test_a_full_file_system_names_the_cure(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "fs") as fs:
        state = FileStateStore(fs / "state", fsync=False)
        objects = LocalObjectStore(fs / "objects", fsync=False)
        state.create("t", "k", {"n": 0})
        objects.put_if_absent("o/x", b"x")
        _fill(fs)
        for call in (
            lambda: state.create("t", "new", {"n": 0}),
            lambda: state.compare_and_set("t", "k", {"n": 1}, 1),
            lambda: objects.put("o/y", b"y"),
            lambda: objects.put_if_absent("o/z", b"z"),
        ):
            with pytest.raises(StorageError, match="No space left on device") as err:
                call()
            assert str(fs) in err.value.message
            assert err.value.hint is not None and f"free space or raise the quota on {fs}" in err.value.hint
        assert state.get("t", "k").version == 1 and state.get("t", "new") is None
        assert sorted(os.listdir(fs / "state" / "t")) == ["k.json"]


def test_a_read_only_file_system_names_the_cure(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "fs") as fs:
        state = FileStateStore(fs / "state", fsync=False)
        objects = LocalObjectStore(fs / "objects", fsync=False)
        state.create("t", "k", {"n": 0})
        objects.put("o/x", b"x")
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        for call in (
            lambda: state.create("t", "new", {"n": 0}),
            lambda: state.compare_and_set("t", "k", {"n": 1}, 1),
            lambda: state.delete("t", "k"),
            lambda: objects.put("o/y", b"y"),
            lambda: objects.put_if_absent("o/z", b"z"),
            lambda: objects.delete("o/x"),
        ):
            with pytest.raises(StorageError, match="Read-only file system") as err:
                call()
            assert err.value.hint is not None and "read-only" in err.value.hint
        assert state.get("t", "k").value == {"n": 0}  # readers still work
        assert objects.get("o/x") == b"x"


_NOBODY_PROBE = """
import json, os, sys
from slurmctl.storage.local import FileStateStore, LocalObjectStore
state = FileStateStore(sys.argv[1] + "/state")
objects = LocalObjectStore(sys.argv[1] + "/objects")
# one of each call first, to import what they import lazily (the interpreter's own library may
# be unreadable for the unprivileged user)
FileStateStore(sys.argv[2] + "/state").create("t", "k", {"n": 0})
FileStateStore(sys.argv[2] + "/state").compare_and_set("t", "k", {"n": 1}, 1)
LocalObjectStore(sys.argv[2] + "/objects").put("o/x", b"x")
list(LocalObjectStore(sys.argv[2] + "/objects").list("o/"))
if os.getuid() == 0:
    os.setgid(65534); os.setuid(65534)
out = {}
for name, call in [
    ("create", lambda: state.create("t", "new", {"n": 0})),
    ("compare_and_set", lambda: state.compare_and_set("t", "k", {"n": 1}, 1)),
    ("put", lambda: objects.put("o/y", b"y")),
    ("list", lambda: list(objects.list("o/"))),
]:
    try:
        call()
        out[name] = ["ok", "", ""]
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc), getattr(exc, "hint", "") or ""]
print(json.dumps(out))
"""


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory any user can reach (pytest's tmp_path is private to its user)."""
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="slurmctl-perm-"))
    where.chmod(0o755)
    yield where
    for d, _, _ in os.walk(where):
        os.chmod(d, 0o755)
    shutil.rmtree(where, ignore_errors=True)


def test_no_permission_is_a_storage_error(world_dir: Path) -> None:
    """As an unprivileged user, in directories that user may not write (or, for `list`, read)."""
    root = world_dir / "r"
    FileStateStore(root / "state").create("t", "k", {"n": 0})
    LocalObjectStore(root / "objects").put("o/sub/x", b"x")
    for d, _, files in os.walk(root):
        os.chmod(d, 0o555)
        for f in files:
            os.chmod(os.path.join(d, f), 0o444)
    os.chmod(root / "objects" / "o" / "sub", 0o000)
    argv = [sys.executable, "-c", _NOBODY_PROBE, str(root), str(world_dir / "warm-up")]
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    for name, (kind, message, hint) in json.loads(p.stdout).items():
        assert kind == "StorageError", (name, kind, message)
        assert "Permission denied" in message and str(root) in message, (name, message)
        assert "permissions" in hint, (name, hint)
