"""Benchmark: the item retry round trip, from an item's failure to its successful retry (local or pilots).

Usage: python bench/retry_roundtrip.py [ITEMS] [--repeat R] [--busy-s S] [--executor E] [--idle-only]
                                       [--pilot] [--dir DIR]
  ITEMS: items of the failing task (default 100). R: jobs per contender (default 5). S: how long the
  other tasks of the ``busy`` and ``queued`` contenders run (default 4). E: the jobs' ``executor:``
  block (default ``{kind: local, max_parallel: 2}``). ``--idle-only``: only the ``idle`` contender.
  ``--pilot``: pilot mode on the dev cluster, ``{kind: slurm, mode: pilot, workers: 1}``, ``idle``
  only (DIR then on a file system its nodes share; the default temporary directory is, on the
  one-node dev cluster). DIR: the work directory, kept.

Each job is a real ``slurmctl submit --wait`` on the local executor and backend; its handler fails
item 0 once with ``TransientItemError`` (it succeeds on its retry) and returns every other item at
once. The backoff is ``base_s: 0.1, jitter: none`` (a fixed 0.1 s wait), so the figure measures the
machinery: publishing the failed task, the runner's planning pass (retry manifest, retry batch, task
manifest and record), the wait, a new worker process, its claim, the item, the publication. The
round trip is read from the records: the retry task's ``finished_at`` minus the failure's ``at`` in
the original task's error file; the parts are the error's ``at`` → the original task's
``finished_at`` (publish) → the retry manifest's ``created_at`` (plan) → the retry task's
``started_at`` (claim) → its ``finished_at``.

Contenders, alternating, one job each per repeat:

* **idle** — one task of ITEMS items: the runner has nothing else to do when the task ends, so it
  plans at once;
* **busy** — the same task plus one whose single item sleeps S s: workers still run when the failing
  task ends, so the runner plans on its cadence (at most every 2 s);
* **queued** — the same task plus four tasks of ITEMS items that take S s each, two workers: tasks
  are still queued when the failing task ends (the retry is planned as tasks finish and goes before
  them);
* **submit one item** (baseline) — ``slurmctl submit --wait`` of a one-item job that succeeds, timed
  from outside: what running the item again as a job of its own costs.

In pilot mode the one pilot ends with the failing task (its retry is not planned yet), so the watch
loop of ``submit --wait`` plans the retry and submits a pilot for it: the round trip holds an sbatch
and Slurm's start of the new pilot.

Each job's outcome is checked (exit 0, every item once in the output, one retry task holding item 0);
the script exits 1 if not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, child_env, ratio, result, run_in_workdir, summary

BENCH = "retry_roundtrip"

HANDLER = """
import os, time
from pathlib import Path
from slurmctl.errors import TransientItemError

def handle(record, ctx):
    n = record["n"]
    if n == 0:
        mark = Path(os.environ["RT_MARKS"]) / ctx.job_id
        if not mark.exists():
            mark.write_text(ctx.task_id)
            raise TransientItemError("upstream busy")
    time.sleep(record.get("sleep", 0))
    return {"n": n}
"""


def write_job(work: Path, name: str, records: list[dict], items_per_task: int, executor: str) -> Path:
    d = work / name
    d.mkdir(parents=True)
    (d / "rt_handler.py").write_text(HANDLER)
    with open(d / "in.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    (d / "job.yaml").write_text(
        f"name: {name}\ninput: {{path: in.jsonl}}\nhandler: {{function: 'rt_handler:handle'}}\n"
        f"batch: {{items: {items_per_task}}}\n"
        "retry: {backoff: {base_s: 0.1, cap_s: 0.1, jitter: none}}\n"
        f"resources: {{mem_gb: 0.25}}\nexecutor: {executor}\n"
    )
    return d


def submit_wait(d: Path, root: Path) -> tuple[str, float]:
    """``slurmctl submit --wait`` of ``d/job.yaml``; returns (job id, wall seconds)."""
    marks = root.parent / "marks"
    marks.mkdir(exist_ok=True)
    env = child_env(RT_MARKS=str(marks))
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "slurmctl", "submit", str(d / "job.yaml"), "--wait", "--root", str(root)],
        cwd=d,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"submit --wait of {d.name} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout.strip().splitlines()[-1], wall


def roundtrip(root: Path, job_id: str, items: int) -> dict[str, float]:
    """The round trip of item 0 and its parts, from the job's records; checks the outcome."""
    from slurmctl.aggregate import aggregate as merge
    from slurmctl.lifecycle import task_statuses
    from slurmctl.retry.store import manifests
    from slurmctl.storage import keys
    from slurmctl.storage.open import open_backend

    backend = open_backend({"kind": "local", "root": str(root)})
    plans = [m for m in manifests(backend, job_id) if m.items]
    if len(plans) != 1 or list(plans[0].items.values()) != [[0]]:
        raise BenchError(f"{job_id}: expected one retry task holding item 0, got {plans}")
    doc = plans[0]
    by = {t.task_id: t for t in task_statuses(backend, job_id)}
    orig, retry = by["t0000000"], by[doc.task_ids[0]]
    errors = backend.objects.get(keys.result_errors(job_id, "t0000000", orig.attempt)).splitlines()
    failed_at = json.loads(errors[0])["at"]
    out = root.parent / f"{job_id}.jsonl"
    merge(backend, job_id, out)
    ids = sorted(json.loads(line)["_item_id"] for line in out.read_text().splitlines())
    if ids != list(range(items)):
        raise BenchError(f"{job_id}: the output does not hold every item once")
    assert orig.finished_at and retry.started_at and retry.finished_at
    return {
        "roundtrip": retry.finished_at - failed_at,
        "to_publish": orig.finished_at - failed_at,
        "to_plan": doc.created_at - orig.finished_at,
        "to_claim": retry.started_at - doc.created_at,
        "retry_run": retry.finished_at - retry.started_at,
        "task_run": orig.finished_at - orig.started_at,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("items", nargs="?", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--busy-s", type=float, default=4.0)
    ap.add_argument("--executor", default="{kind: local, max_parallel: 2}", help="the executor: block")
    ap.add_argument("--idle-only", action="store_true", help="only the idle contender")
    ap.add_argument("--pilot", action="store_true", help="pilot mode on the dev cluster (idle only)")
    ap.add_argument("--dir", type=Path, help="work directory, kept (default: a temporary one)")
    args = ap.parse_args()
    if args.items < 1 or args.repeat < 1 or args.busy_s < 0:
        ap.error("ITEMS and --repeat must be positive, --busy-s not negative")
    if args.pilot:
        args.executor, args.idle_only = "{kind: slurm, mode: pilot, workers: 1}", True
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    return run_in_workdir(BENCH, args.dir, "bench-retry-rt-", lambda work: measure(args, work))


def measure(args: argparse.Namespace, work: Path) -> None:
    """The run itself, in ``work``. Raises BenchError."""
    root = work / "root"
    names = ["idle"] if args.idle_only else ["idle", "busy", "queued"]
    parts: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    submit_one: list[float] = []
    n = args.items
    for r in range(args.repeat):
        plain = [{"n": i} for i in range(n)]
        slow = [{"n": i, "sleep": args.busy_s / n} for i in range(n, 5 * n)]  # 4 tasks of S s
        for name, records in (
            ("idle", plain),
            ("busy", [*plain, {"n": n, "sleep": args.busy_s}]),
            ("queued", plain + slow),
        ):
            if name not in parts:
                continue
            d = write_job(work, f"rt-{name}-{r}", records, args.items, args.executor)
            job_id, _ = submit_wait(d, root)
            got = roundtrip(root, job_id, len(records))
            for k, v in got.items():
                parts[name].setdefault(k, []).append(v)
            print(
                f"{name} {r}: round trip {got['roundtrip']:.3f} s (plan {got['to_plan']:.3f} s)", flush=True
            )
        d = write_job(work, f"rt-one-{r}", [{"n": 1}], 1, args.executor)
        _, wall = submit_wait(d, root)
        submit_one.append(wall)
        print(f"submit one item {r}: {wall:.3f} s", flush=True)
    for name, figures in parts.items():
        result(
            BENCH,
            contender=name,
            executor=args.executor,
            items=args.items,
            busy_s=args.busy_s if name != "idle" else None,
            backoff_s=0.1,
            **{k: summary(v) for k, v in figures.items()},
        )
    result(BENCH, contender="submit_one_item", executor=args.executor, seconds=summary(submit_one))
    base = summary(submit_one)["median"]
    for name, figures in parts.items():
        rt = summary(figures["roundtrip"])
        print(
            f"{name}: round trip median {rt['median']:.3f} s ({rt['min']:.3f}-{rt['max']:.3f} s)", flush=True
        )
        ratio(f"roundtrip_{name}_vs_submit_one_item", rt["median"], base)


if __name__ == "__main__":
    sys.exit(main())
