"""``slurmctl retry`` by hand on the local executor: the plan printed first, --dry-run changes
nothing, --force adds permanent failures, bad input gets a message and its exit code."""

from __future__ import annotations

import json

from slurmctl.retry.store import manifests
from slurmctl.storage.open import open_backend
from tests.e2e.cli import read_jsonl, slurmctl, submit_wait, write_job

# 60 items in 3 tasks. n % 10 == 3: transient until a mark exists (the first call makes it);
# n % 10 == 7: permanent until the file "fixed" exists. retry.attempts.transient 1: no automatic retry.
HANDLER = """
import os
from pathlib import Path
from slurmctl.errors import PermanentItemError, TransientItemError

MARKS = Path(os.environ["RETRY_MARKS"])

def handle(record, ctx):
    n = record["n"]
    if n % 10 == 7 and not (MARKS / "fixed").exists():
        raise PermanentItemError(f"bad {n}")
    if n % 10 == 3 and not (MARKS / f"t{n}").exists():
        (MARKS / f"t{n}").write_text("")
        raise TransientItemError(f"busy {n}")
    return {"n": n}
"""


def test_retry_by_hand(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "byhand.py").write_text(HANDLER)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(60)))
    job = write_job(
        tmp_path,
        "name: byhand\ninput: {path: in.jsonl}\nhandler: {function: 'byhand:handle'}\n"
        "batch: {items: 20}\nretry: {attempts: {transient: 1}}\nexecutor: {kind: local, max_parallel: 2}\n",
    )
    root = tmp_path / "root"
    env = {"RETRY_MARKS": str(marks)}
    job_id, r = submit_wait(job, root, env=env)
    assert job_id and r.code == 9 and "60/60 items, 12 failed" in r.err, r.err

    # Bad input.
    r = slurmctl("retry", "no-such-job", root=root)
    assert r.code == 5 and "no-such-job" in r.err, r.err
    r = slurmctl("retry", job_id, "--category", "flaky", root=root)
    assert r.code == 2 and "transient, permanent, infrastructure, resources, unknown" in r.err, r.err
    r = slurmctl("retry", job_id, "--category", "resources", root=root)
    assert r.code == 5 and "nothing to retry" in r.err and "6 transient not selected" in r.err, r.err

    # The plan, without changing anything.
    r = slurmctl("retry", job_id, "--dry-run", root=root)
    assert r.code == 0, r.err
    assert f"job {job_id}: retry 6 item(s) in 1 task(s)" in r.out and "6 permanent" in r.out, r.out
    assert "dry run" in r.out
    backend = open_backend({"kind": "local", "root": str(root)})
    assert not [m for m in manifests(backend, job_id) if m.items]

    # The transient items, for real; then the permanent ones once fixed, with --force.
    r = slurmctl("retry", job_id, root=root, env=env)
    assert r.code == 0 and "submitted" in r.out, r.err + r.out
    r = slurmctl("status", job_id, "--watch", root=root, env=env)
    assert r.code == 9, r.err + r.out
    (marks / "fixed").write_text("")
    r = slurmctl("retry", job_id, "--force", "--category", "permanent", root=root, env=env)
    assert r.code == 0 and "retry 6 item(s)" in r.out, r.err + r.out
    r = slurmctl("status", job_id, "--watch", root=root, env=env)
    assert r.code == 0, r.err + r.out
    r = slurmctl("retry", job_id, root=root)
    assert r.code == 5 and "nothing to retry" in r.err, r.err

    out = tmp_path / "out.jsonl"
    r = slurmctl("results", job_id, "-o", str(out), root=root)
    assert r.code == 0, r.err
    ids = [row["_item_id"] for row in read_jsonl(out)]
    assert sorted(ids) == list(range(60))
