"""Records the worker's decoder refuses are rejected at submit, with their line and reason, through the CLI.

Deep nesting, a lone surrogate escape and a number beyond the float range: `json.loads` reads the last
two, the worker's decoder does not, and deep nesting used to crash `submit` with a RecursionError (exit
70). See docs/partitioning.md, "Records and rejects".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import read_jsonl, slurmctl, submit_wait, write_job

HANDLER = "def handle(record, ctx):\n    return {'n': record['n']}\n"

BAD = {
    3: (b'{"n": 2, "deep": ' + b"[" * 1500 + b"]" * 1500 + b"}", "nested more than 512 levels"),
    6: (b'{"n": 5, "t": "\\ud800"}', "lone UTF-16 surrogate \\ud800"),
    9: (b'{"n": 8, "x": 1e999}', "1e999 is beyond the range of a 64-bit float"),
}


def _job(tmp: Path, max_rejects: int) -> Path:
    (tmp / "h.py").write_text(HANDLER)
    lines = [BAD[k + 1][0] if k + 1 in BAD else json.dumps({"n": k}).encode() for k in range(12)]
    (tmp / "in.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    return write_job(
        tmp,
        f"name: t\ninput: {{path: in.jsonl, max_rejects: {max_rejects}}}\n"
        "handler: {function: 'h:handle'}\nbatch: {items: 4}\noutput: {format: jsonl}\n",
    )


@pytest.mark.parametrize("staging", ["auto", "copy"])
def test_bad_records_are_rejected_and_the_others_run(tmp_path: Path, staging: str) -> None:
    job = _job(tmp_path, max_rejects=3)
    job.write_text(job.read_text().replace("max_rejects: 3", f"max_rejects: 3, staging: {staging}"))
    root = tmp_path / "root"
    job_id, r = submit_wait(job, root)
    assert r.code == 0, r.err
    assert "3 malformed record(s) rejected" in r.err
    assert "Traceback" not in r.err
    r = slurmctl("results", job_id, "-o", str(tmp_path / "o.jsonl"), root=root)
    assert r.code == 0, r.err
    assert sorted(row["n"] for row in read_jsonl(tmp_path / "o.jsonl")) == [0, 1, 3, 4, 6, 7, 9, 10, 11]
    errors = tmp_path / "o.jsonl.errors.jsonl"
    assert not errors.exists() or not read_jsonl(errors)  # no item failed
    (rejects_file,) = root.rglob("rejects.jsonl")
    rejects = read_jsonl(rejects_file)
    assert [r["line"] for r in rejects] == sorted(BAD)
    for rej in rejects:
        assert BAD[rej["line"]][1] in rej["reason"]
        assert rej["source"] == str(tmp_path / "in.jsonl")


def test_bad_records_over_max_rejects_are_listed_with_line_and_reason(tmp_path: Path) -> None:
    job = _job(tmp_path, max_rejects=0)
    r = slurmctl("submit", str(job), "--wait", root=tmp_path / "root")
    assert r.code == 3, r.err  # an input error, not an internal error (70)
    assert "Traceback" not in r.err and "RecursionError" not in r.err
    assert "3 malformed record(s) rejected" in r.err
    for line, (_, reason) in BAD.items():
        assert f"in.jsonl:{line}: " in r.err and reason in r.err
