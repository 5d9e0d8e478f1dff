"""Item retries on the local executor, end to end: a 20k-item job whose handler fails on 1 % of the
items — half transient (succeeds on its second try), half permanent. The job ends with every
transient item succeeded, every permanent item failed once and never retried, and the merged output
holds every other item exactly once by id."""

from __future__ import annotations

import json

from slurmctl.retry.store import manifests
from slurmctl.storage.open import open_backend
from tests.e2e.cli import read_jsonl, slurmctl, submit_wait, write_job

N = 20_000
HANDLER = """
import os
from pathlib import Path
from slurmctl.errors import PermanentItemError, TransientItemError

MARKS = Path(os.environ["RETRY_MARKS"])

def handle(record, ctx):
    n = record["n"]
    if n % 200 == 107:
        (MARKS / f"p{n}").write_text(ctx.task_id)  # a second call would be a retry of it: seen below
        raise PermanentItemError(f"item {n} is malformed")
    if n % 200 == 7:
        mark = MARKS / f"t{n}"
        if not mark.exists():
            mark.write_text(ctx.task_id)
            raise TransientItemError(f"upstream busy for item {n}")
        assert ctx.item_id == n
    return {"n": n, "sq": n * n}
"""


def test_transient_items_retried_permanent_never_output_once_by_id(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "flaky.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(N)))
    job = write_job(
        tmp_path,
        "name: flaky\ninput: {path: in.jsonl}\nhandler: {function: 'flaky:handle'}\n"
        "batch: {items: 1000}\nretry: {backoff: {base_s: 0.2, cap_s: 1}}\n"
        "executor: {kind: local, max_parallel: 2}\n",
    )
    root = tmp_path / "root"
    env = {"RETRY_MARKS": str(marks)}
    job_id, r = submit_wait(job, root, env=env, timeout=300)
    assert job_id and r.code == 9, r.err  # 9: items failed (the permanent ones)
    assert "20000/20000 items, 100 failed" in r.err
    transient = {n for n in range(N) if n % 200 == 7}
    permanent = {n for n in range(N) if n % 200 == 107}

    backend = open_backend({"kind": "local", "root": str(root)})
    plans = [m for m in manifests(backend, job_id) if m.items]
    retried = sorted(i for m in plans for ids in m.items.values() for i in ids)
    assert retried == sorted(transient)  # each transient item once, no permanent one
    assert all(m.categories == {"transient": sum(map(len, m.items.values()))} for m in plans)
    assert sum(m.skipped.get("permanent", 0) for m in manifests(backend, job_id)) == len(permanent)
    # Every permanent item was handled exactly once (its mark names the original task).
    assert {int(p.name[1:]) for p in marks.glob("p*")} == permanent

    out = tmp_path / "out.jsonl"
    r = slurmctl("results", job_id, "-o", str(out), root=root)
    assert r.code == 9 and "100 item(s) failed" in r.err, r.err
    ids = [row["_item_id"] for row in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == N - len(permanent)
    assert set(ids) == set(range(N)) - permanent
    errors = read_jsonl(out.with_name(out.name + ".errors.jsonl"))
    assert sorted(e["item_id"] for e in errors) == sorted(permanent)
    assert {e["category"] for e in errors} == {"permanent"}
    agg = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert (agg["items_ok"], agg["items_failed"], agg["rows"]) == (N - 100, 100, N - 100)
