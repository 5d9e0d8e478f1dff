"""Item retries on the dev cluster (array and pilot mode): the watch loop of ``submit --wait``
plans the failed items of finished tasks and submits their retry tasks; the transient items end
succeeded, the permanent ones failed once and never retried, the output holds each item once."""

from __future__ import annotations

import json
import subprocess

import pytest

from slurmctl.retry.store import manifests
from slurmctl.storage.local import local_backend
from tests.e2e.cli import read_jsonl, slurmctl, submit_wait

pytestmark = pytest.mark.slurm

N = 200_000  # issue 14's acceptance: a 200k-item job, 1 % failing (half transient, half permanent)
HANDLER = """
import os
from pathlib import Path
from slurmctl.errors import PermanentItemError, TransientItemError

MARKS = Path(os.environ["RETRY_MARKS"])

def handle(record, ctx):
    n = record["n"]
    if n % 200 == 107:
        (MARKS / f"p{n}").write_text(ctx.task_id)
        raise PermanentItemError(f"item {n} is malformed")
    if n % 200 == 7:
        mark = MARKS / f"t{n}"
        if not mark.exists():
            mark.write_text(ctx.task_id)
            raise TransientItemError(f"upstream busy for item {n}")
    return {"n": n}
"""


@pytest.mark.parametrize("executor", ["{kind: slurm}", "{kind: slurm, mode: pilot, workers: 2}"])
def test_item_retries_on_slurm(slurm_cluster, tmp_path, executor):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "h.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(N)))
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: rs\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 10000}\n"
        "resources: {mem_gb: 0.25}\nretry: {backoff: {base_s: 0.5, cap_s: 1}}\n"
        f"executor: {executor}\n"
    )
    root = tmp_path / "root"
    try:
        job_id, r = submit_wait(job, root, env={"RETRY_MARKS": str(marks)}, timeout=600)
    finally:
        ids = [
            s["array_job_id"]
            for m in root.glob("jobs/*/job.json")
            for g in json.loads(m.read_text()).get("groups", [])
            for s in g.get("submissions", [])
        ]
        if ids:
            subprocess.run(["scancel", *ids], check=False)
    assert job_id and r.code == 9 and f"{N}/{N} items, {N // 200} failed" in r.err, r.err
    permanent = {n for n in range(N) if n % 200 == 107}
    plans = [m for m in manifests(local_backend(root), job_id) if m.items]
    assert sorted(i for m in plans for ids in m.items.values() for i in ids) == [
        n for n in range(N) if n % 200 == 7
    ]
    assert {int(p.name[1:]) for p in marks.glob("p*")} == permanent
    out = tmp_path / "out.jsonl"
    r = slurmctl("results", job_id, "-o", str(out), root=root)
    assert r.code == 9, r.err
    ids = [row["_item_id"] for row in read_jsonl(out)]
    assert len(ids) == len(set(ids)) and set(ids) == set(range(N)) - permanent
