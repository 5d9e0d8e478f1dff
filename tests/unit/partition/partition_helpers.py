"""Helpers shared by the partitioner tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from slurmctl.partition import BatchInfo, PartitionSummary


def make_jsonl(path: Path, n: int, start: int = 0) -> list[bytes]:
    """Write ``n`` distinct records to ``path``; returns their lines (no terminator)."""
    lines = [
        json.dumps({"id": i, "name": f"user_{i:06d}", "v": [i % 7, "x" * (i % 13)]}).encode()
        for i in range(start, start + n)
    ]
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return lines


def batch_bytes(out_dir: Path, b: BatchInfo) -> bytes:
    """Returns a batch's bytes: its file, or for a reference batch the input's bytes it names (then
    there must be no batch file)."""
    if b.ref_path is None:
        return (out_dir / f"{b.batch_id}.jsonl").read_bytes()
    assert not (out_dir / f"{b.batch_id}.jsonl").exists()
    assert b.ref_offset is not None and Path(b.ref_path).is_absolute()
    with open(b.ref_path, "rb") as fh:
        fh.seek(b.ref_offset)
        return fh.read(b.bytes)


def batch_lines(out_dir: Path, summary: PartitionSummary) -> list[bytes]:
    """Returns every batch line, in batch order, after checking each batch against its BatchInfo."""
    result: list[bytes] = []
    expected_first = 0
    for k, b in enumerate(summary.batches):
        data = batch_bytes(out_dir, b)
        assert b.index == k and b.batch_id == f"b{k:07d}"
        assert b.bytes == len(data) and b.sha256 == hashlib.sha256(data).hexdigest()
        assert b.first_item == expected_first
        lines = data.split(b"\n")
        assert lines.pop() == b""
        assert len(lines) == b.items > 0
        expected_first += b.items
        result.extend(lines)
    assert expected_first == summary.total_items
    return result


def read_rejects(summary: PartitionSummary) -> list[dict]:
    """Returns the rejects file's entries ([] when there is none)."""
    if summary.rejects_path is None:
        return []
    return [json.loads(line) for line in summary.rejects_path.read_text().splitlines()]


def tree(out_dir: Path) -> dict[str, bytes]:
    """Returns every batch/rejects file's bytes by name (not the state files)."""
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir()) if not p.name.startswith("_")}
