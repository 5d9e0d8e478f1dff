"""Acceptance run: a job whose handler fails deterministically on 1 % of its items (local or Slurm).

Usage: python bench/retry_acceptance.py [ITEMS] [--items-per-task K] [--max-parallel P] [--base-s B]
                                        [--executor E] [--timeout T] [--dir DIR]
  ITEMS: items (default 200,000). K: items per task (default 1,000). P: the runner's workers (default
  2). B: the retry backoff's ``base_s`` (default 10, the default of ``retry:``). E: the ``executor:``
  block instead of the local one (``{kind: slurm}``, ``{kind: slurm, mode: pilot, workers: 2}`` on
  the dev cluster, 0.5 GB a task; P then does not apply). T: how long ``submit --wait`` may take
  (default 7200 s; on Slurm the job is cancelled when it is exceeded). DIR: the work directory, kept.

The handler fails item n when ``n % 200 == 7`` with ``TransientItemError`` on its first call only
(it succeeds on its retry) and when ``n % 200 == 107`` with ``PermanentItemError``; every call of a
failing item is appended to a file of its own. The job keeps the default ``retry:`` block but for
``backoff.base_s`` (cap 600 s, full jitter). One ``slurmctl submit --wait`` (timed from outside: the wall
time), then ``slurmctl results`` (timed too) and the checks:

* every transient item was handled twice (failed, then succeeded) and is in the output;
* every permanent item was handled once, is in no retry task, and is in the errors file;
* the output holds every other item exactly once by ``_item_id``; the output manifest's counts agree.

Prints ``RESULT`` lines (wall times, retry plans, retry tasks) and ``CHECK ... ok`` lines; exits 1 if
a check fails. No ratio: it is an acceptance run, not a comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, child_env, result, run_in_workdir

BENCH = "retry_acceptance"

HANDLER = """
import os
from pathlib import Path
from slurmctl.errors import PermanentItemError, TransientItemError

MARKS = Path(os.environ["RETRY_MARKS"])

def handle(record, ctx):
    n = record["n"]
    if n % 200 in (7, 107):
        mark = MARKS / str(n)
        first = not mark.exists()
        with open(mark, "a") as f:
            f.write(ctx.task_id + "\\n")
        if n % 200 == 107:
            raise PermanentItemError(f"item {n} is malformed")
        if first:
            raise TransientItemError(f"upstream busy for item {n}")
    return {"n": n}
"""


def slurmctl(
    *args: str, work: Path, env: dict[str, str], timeout: float = 7200
) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "slurmctl", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"slurmctl {' '.join(args)} took more than {timeout:.0f} s") from exc
    return p, time.perf_counter() - t0


def check(what: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise BenchError(f"{what}: {detail}")
    print(f"CHECK {what}: ok", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("items", nargs="?", type=int, default=200_000)
    ap.add_argument("--items-per-task", type=int, default=1000)
    ap.add_argument("--max-parallel", type=int, default=2)
    ap.add_argument("--base-s", type=float, default=10.0)
    ap.add_argument("--executor", help="the executor: block (default: local, --max-parallel workers)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds submit --wait may take")
    ap.add_argument("--dir", type=Path, help="work directory, kept (default: a temporary one)")
    args = ap.parse_args()
    if min(args.items, args.items_per_task, args.max_parallel) < 1 or args.base_s < 0:
        ap.error("ITEMS, --items-per-task and --max-parallel must be positive, --base-s not negative")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    return run_in_workdir(BENCH, args.dir, "bench-retry-acc-", lambda work: measure(args, work))


def measure(args: argparse.Namespace, work: Path) -> None:
    """The run itself, in ``work``. Raises BenchError."""
    marks, root = work / "marks", work / "root"
    marks.mkdir()
    n = args.items
    (work / "acc_handler.py").write_text(HANDLER)
    with open(work / "in.jsonl", "w") as f:
        f.writelines(f'{{"n": {i}}}\n' for i in range(n))
    local = f"{{kind: local, max_parallel: {args.max_parallel}}}"
    (work / "job.yaml").write_text(
        "name: acceptance\ninput: {path: in.jsonl}\nhandler: {function: 'acc_handler:handle'}\n"
        f"batch: {{items: {args.items_per_task}}}\nretry: {{backoff: {{base_s: {args.base_s}}}}}\n"
        f"executor: {args.executor or local}\nresources: {{mem_gb: 0.5}}\n"
    )
    env = child_env(RETRY_MARKS=str(marks), SLURMCTL_ROOT=str(root))
    transient = {i for i in range(n) if i % 200 == 7}
    permanent = {i for i in range(n) if i % 200 == 107}

    try:
        p, wall = slurmctl("submit", "job.yaml", "--wait", work=work, env=env, timeout=args.timeout)
    except BenchError:
        for job in (root / "jobs").glob("*"):  # stop what the job still runs (its own arrays only)
            slurmctl("cancel", job.name, "--yes", work=work, env=env)
        raise
    job_id = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    print(f"submit --wait: exit {p.returncode}, {wall:.1f} s: {p.stderr.strip()[-300:]}", flush=True)
    check("submit --wait exits 9 (items failed)", p.returncode == 9 and bool(job_id), p.stderr[-2000:])
    out = work / "out.jsonl"
    r, results_s = slurmctl("results", job_id, "-o", str(out), work=work, env=env)
    check("results exits 9 (items failed)", r.returncode == 9, r.stderr[-2000:])

    from slurmctl.retry.store import manifests
    from slurmctl.storage.open import open_backend

    calls = {int(m.name): m.read_text().splitlines() for m in marks.iterdir()}
    check(
        "every transient item handled twice",
        all(len(calls.get(i, [])) == 2 for i in transient),
        f"{sum(len(calls.get(i, [])) != 2 for i in transient)} not",
    )
    check(
        "every permanent item handled once",
        all(len(calls.get(i, [])) == 1 for i in permanent),
        f"{sum(len(calls.get(i, [])) != 1 for i in permanent)} not",
    )
    plans = [m for m in manifests(open_backend({"kind": "local", "root": str(root)}), job_id) if m.items]
    retried = sorted(i for m in plans for ids in m.items.values() for i in ids)
    check("the retry tasks hold each transient item once, no other", retried == sorted(transient))
    ids: list[int] = []
    with open(out) as f:
        ids.extend(json.loads(line)["_item_id"] for line in f)
    check(
        "the output holds every non-permanent item exactly once by id",
        len(ids) == len(set(ids)) == n - len(permanent) and set(ids) == set(range(n)) - permanent,
        f"{len(ids)} rows, {len(set(ids))} ids",
    )
    with open(out.with_name(out.name + ".errors.jsonl")) as f:
        errors = [json.loads(line) for line in f]
    check(
        "the errors file holds every permanent item once, category permanent",
        sorted(e["item_id"] for e in errors) == sorted(permanent)
        and {e["category"] for e in errors} == {"permanent"},
    )
    agg = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    check(
        "the output manifest's counts",
        (agg["items_ok"], agg["items_failed"], agg["rows"])
        == (n - len(permanent), len(permanent), n - len(permanent)),
        str(agg),
    )
    result(
        BENCH,
        contender="local" if args.executor is None else "slurm",
        executor=args.executor or local,
        items=n,
        tasks=-(-n // args.items_per_task),
        backoff_base_s=args.base_s,
        transient=len(transient),
        permanent=len(permanent),
        retry_plans=len(plans),
        retry_tasks=sum(len(m.task_ids) for m in plans),
        submit_wait_s=round(wall, 2),
        results_s=round(results_s, 2),
    )


if __name__ == "__main__":
    sys.exit(main())
