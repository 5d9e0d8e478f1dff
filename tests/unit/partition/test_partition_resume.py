"""Resuming after SIGKILL, and a property test of the whole JSONL path against a simple oracle."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from partition_helpers import batch_lines, read_rejects, tree

from slurmctl.errors import InputError
from slurmctl.partition import jsonl as jsonl_mod
from slurmctl.partition import partition
from slurmctl.worker.runtime import _decode_line

# The child makes a commit after every 3 batches and reads small blocks slowly, so a kill lands mid-run.
_CHILD = """
import sys, time
from pathlib import Path
from slurmctl.partition import durable, jsonl, partition
durable.BatchWriter.GROUP_BATCHES = 3
jsonl.BLOCK_BYTES = 1 << 14
partition([Path(sys.argv[1])], Path(sys.argv[2]), items_per_batch=50, workers=int(sys.argv[3]),
          progress=lambda d, t: time.sleep(0.002), reference=sys.argv[4] == "1")
"""


def _write_input(path: Path, n: int) -> None:
    rows = []
    for i in range(n):
        if i % 997 == 5:
            rows.append(b"{broken\n" if path.suffix != ".csv" else b"too,many,fields,here\n")
        elif i % 1009 == 7:
            rows.append(b"\n")
        elif path.suffix == ".csv":
            rows.append(b"%d,name %d\n" % (i, i))
        else:
            rows.append(json.dumps({"i": i, "pad": "p" * (i % 17)}).encode() + b"\n")
    data = (b"i,name\n" if path.suffix == ".csv" else b"") + b"".join(rows)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def _batches_in_state(out_dir: Path) -> int:
    try:
        state = json.loads((out_dir / "_partition.json").read_text())
    except (OSError, ValueError):
        return 0
    return -1 if state.get("complete") else state.get("batches", 0)


@pytest.mark.parametrize(
    ("name", "workers", "reference"),
    [
        ("in.jsonl", 0, False),
        ("in.jsonl", 2, False),
        ("in.jsonl", 0, True),
        ("in.jsonl.gz", 0, False),
        ("in.csv", 0, False),
    ],
)
def test_resume_after_sigkill_gives_the_clean_result(
    tmp_path: Path, name: str, workers: int, reference: bool
) -> None:
    src = tmp_path / name
    _write_input(src, 12000)
    ref = {"reference": reference}
    clean = partition([src], tmp_path / "clean", items_per_batch=50, workers=2 - workers, **ref)
    out = tmp_path / "out"
    kills = 0
    for threshold in (2, 40, 120):
        # killed runs validate with `workers` processes, the final resume in-process (and the reverse):
        # the workers are not part of the state, and neither changes a byte
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(src), str(out), str(workers), "1" if reference else "0"]
        )
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            if _batches_in_state(out) >= threshold:
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.001)
        child.wait()
    assert kills >= 2, "the child finished before it could be killed; slow it down"
    resumed = partition([src], out, items_per_batch=50, workers=0, **ref)
    assert resumed == partition([src], out, items_per_batch=50, **ref)  # and a re-run is a no-op
    assert tree(out) == tree(tmp_path / "clean")
    assert batch_lines(out, resumed) == batch_lines(tmp_path / "clean", clean)
    assert any(b.ref_path for b in resumed.batches) == reference
    assert [b.sha256 for b in resumed.batches] == [b.sha256 for b in clean.batches]
    assert resumed.total_items == clean.total_items and resumed.rejected == clean.rejected == 13
    assert resumed.inputs == clean.inputs
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_lines = st.one_of(
    _json_values.map(lambda v: json.dumps(v).encode()),
    _json_values.map(lambda v: json.dumps(v, ensure_ascii=False, separators=(" , ", " : ")).encode()),
    st.sampled_from([b"", b"  ", b"\t", b"{", b"[1,]", b"NaN", b"1 2", b'"\xff"', b"\xc3", b"{}\r{}"]),
    st.just(b'{"a":\r1}'),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b),
)


def _file_lines(data: bytes) -> list[bytes]:
    """Returns the lines of ``data`` as docs/partitioning.md defines them, terminators removed.

    Derived from the bytes written, not from the list they were built from: when the last generated
    line is empty and the file gets no final newline, the file simply ends after the previous line's
    terminator, so that empty "line" is not in the file at all (it is not a blank line). Likewise a
    generated line ending in "\\r" followed by "\\n" is a CRLF line end, and a "\\r" at the very end of
    the file belongs to the (missing) terminator.
    """
    if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark is dropped
        data = data[3:]
    pieces = data.split(b"\n")
    if pieces[-1] == b"":  # after the final newline (or an empty file): no line
        pieces.pop()
    return [p[:-1] if p.endswith(b"\r") else p for p in pieces]


def _oracle(line: bytes) -> bool | None:
    """True: accepted; None: blank; False: rejected — judged by the worker's decoder alone (these lines
    nest far less than the limit, so that is the definition of a record here)."""
    if not line.strip(b" \t\r"):
        return None
    try:
        line.decode("utf-8")
        _decode_line(line)
    except (UnicodeDecodeError, msgspec.DecodeError):
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_lines, max_size=40),
    crlf=st.lists(st.booleans(), max_size=40),
    ipb=st.one_of(st.none(), st.integers(1, 7)),
    bpb=st.one_of(st.none(), st.integers(1, 120)),
    block=st.integers(8, 200),
    final_newline=st.booleans(),
    reference=st.booleans(),
    c_scanner=st.booleans(),
)
def test_every_accepted_record_appears_once_in_order(
    lines: list[bytes],
    crlf: list[bool],
    ipb: int | None,
    bpb: int | None,
    block: int,
    final_newline: bool,
    reference: bool,
    c_scanner: bool,
) -> None:
    """Against the worker's-decoder oracle, on either scanner (C or pure Python), copying or referring."""
    if ipb is None and bpb is None:
        ipb = 3
    ends = [b"\r\n" if i < len(crlf) and crlf[i] else b"\n" for i in range(len(lines))]
    data = b"".join(line + end for line, end in zip(lines, ends, strict=True))
    if lines and not final_newline:
        data = data[: -len(ends[-1])]
    file_lines = _file_lines(data)
    verdicts = [_oracle(line) for line in file_lines]
    accepted = [line.replace(b"\r", b" ") for line, v in zip(file_lines, verdicts, strict=True) if v]
    rejected_lines = [i + 1 for i, v in enumerate(verdicts) if v is False]
    old, old_scan = jsonl_mod.BLOCK_BYTES, jsonl_mod._scan
    jsonl_mod.BLOCK_BYTES = block
    if not c_scanner:
        jsonl_mod._scan = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.jsonl"
            src.write_bytes(data)
            if data.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd")):  # gzip/zstd magic: refused by design
                with pytest.raises(InputError, match="compressed but its name does not say so"):
                    partition([src], Path(tmp) / "out", items_per_batch=ipb, bytes_per_batch=bpb)
                return
            if not accepted:
                with pytest.raises(InputError, match=r"no records|were rejected"):
                    partition([src], Path(tmp) / "out", items_per_batch=ipb, bytes_per_batch=bpb)
                return
            s = partition(
                [src], Path(tmp) / "out", items_per_batch=ipb, bytes_per_batch=bpb, reference=reference
            )
            assert batch_lines(Path(tmp) / "out", s) == accepted
            assert [r["line"] for r in read_rejects(s)] == rejected_lines
            assert s.inputs[0]["blank_lines"] == verdicts.count(None)
            for b in s.batches:
                assert ipb is None or b.items <= ipb
                assert bpb is None or b.bytes <= bpb or b.items == 1
    finally:
        jsonl_mod.BLOCK_BYTES, jsonl_mod._scan = old, old_scan


def test_every_way_of_syncing_a_group_gives_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slurmctl.partition import durable

    src = tmp_path / "in.jsonl"
    _write_input(src, 3000)
    monkeypatch.setattr(durable.BatchWriter, "GROUP_BATCHES", 4)  # many groups, each over several children
    jobs: list[str] = []

    class CountedSyncfs(durable._SyncfsJob):
        def __init__(self, directory: str) -> None:
            jobs.append(directory)
            super().__init__(directory)

    monkeypatch.setattr(durable, "_SyncfsJob", CountedSyncfs)
    runs = {}
    # syncfs where it suits the file system (ext4 here), else `sync` children; then `sync` children
    # by choice; then no `sync` on PATH: fsyncs on threads in-process
    runs["default"] = partition([src], tmp_path / "default", items_per_batch=50)
    # a group starts when the previous one is durable, so how many there are depends on the disk
    used_syncfs = len(jobs)
    assert used_syncfs >= 2 if durable.syncfs_suits(tmp_path) else used_syncfs == 0
    monkeypatch.setattr(durable.BatchWriter, "USE_SYNCFS", False)
    runs["children"] = partition([src], tmp_path / "children", items_per_batch=50)
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-dir"))
    assert shutil.which("sync") is None
    runs["threads"] = partition([src], tmp_path / "threads", items_per_batch=50)
    assert len(jobs) == used_syncfs  # only the default run used syncfs
    for name, summary in runs.items():
        assert tree(tmp_path / name) == tree(tmp_path / "default")
        assert summary.batches == runs["default"].batches
        assert len(summary.batches) == 60 and summary.rejected == 4
        state = json.loads((tmp_path / name / "_partition.json").read_text())
        assert state["complete"] and state["batches"] == 60


def test_uncommitted_batch_files_are_deleted_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommitted batch files (temp names, fsynced or not) are left by a crash; resume deletes them
    and the committed ones are the only files under final names."""
    from slurmctl.errors import StorageError
    from slurmctl.partition import durable

    src = tmp_path / "in.jsonl"
    _write_input(src, 3000)
    clean = partition([src], tmp_path / "clean", items_per_batch=50)
    monkeypatch.setattr(durable.BatchWriter, "GROUP_BATCHES", 8)
    real_commit = durable.BatchWriter._commit
    commits = []

    def commit_then_crash(self: durable.BatchWriter, group: list, state: dict) -> None:
        if commits:  # the second commit (there is one at the latest at the end) never happens
            raise StorageError("simulated crash before the second commit")
        commits.append(len(group))
        real_commit(self, group, state)

    monkeypatch.setattr(durable.BatchWriter, "_commit", commit_then_crash)
    out = tmp_path / "out"
    with pytest.raises(StorageError, match="simulated crash"):
        partition([src], out, items_per_batch=50)
    state = json.loads((out / "_partition.json").read_text())
    final = sorted(p.name for p in out.glob("b*.jsonl"))
    temp = sorted(p.name for p in out.glob(".b*.jsonl.tmp"))
    assert state["batches"] == commits[0] >= 8 and not state["complete"]
    assert len(final) == state["batches"]  # only committed batches carry final names
    assert temp  # files of the uncommitted group(s) are on disk under temp names
    monkeypatch.setattr(durable.BatchWriter, "_commit", real_commit)
    monkeypatch.setattr(durable.BatchWriter, "GROUP_BATCHES", 512)
    resumed = partition([src], out, items_per_batch=50)
    assert tree(out) == tree(tmp_path / "clean")
    assert resumed.batches == clean.batches


def test_fs_type_tells_which_file_systems_get_syncfs(tmp_path: Path) -> None:
    from slurmctl.partition import durable

    assert durable.fs_type(Path("/proc")) == "proc"
    assert not durable.syncfs_suits(Path("/proc"))
    findmnt = shutil.which("findmnt")
    if findmnt is None:
        pytest.skip("findmnt (util-linux) is not installed; cannot cross-check the file system type")
    want = subprocess.run(
        [findmnt, "-n", "-o", "FSTYPE", "--target", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert durable.fs_type(tmp_path) == want
    if want in ("ext4", "xfs", "btrfs"):
        assert durable.syncfs_suits(tmp_path) == (durable._load_syncfs() is not None)
