"""Benchmark: the automatic item retry plan of a 1,000,000-item job in 10,000 tasks with 1 % failed items.

Usage: python bench/retry_plan.py [ITEMS] [--tasks T] [--repeat R] [--dir DIR]
  ITEMS: items (default 1,000,000; CI runs ~20,000). T: tasks (default 10,000). R: runs per contender
  (default 3). DIR: the work directory, kept; a DIR an earlier run built is used again.

Set-up (not timed): ``slurmctl submit --dry-run`` of an ITEMS-record input in T tasks on the local
backend (the real coordinator: job record, task manifests, batches, task records); then every task is
given a published attempt in which items ``n % 100 == 0`` failed (1 %; every other one of them
transient, the rest permanent) — its ``a1.errors.jsonl`` in the worker's format, a result manifest,
the ``.done`` marker — and its record is moved to succeeded with its failed-item count.

Contenders, each in its own child process, alternating, page cache warm for all:

* **plan** — ``slurmctl.retry.store.plan_retries(backend, job, dry_run=True)``: the task records
  scanned, every failed task's ``.done`` marker and published error file read, the retry manifests
  read, the plan made. Its plan is checked: exactly the transient items.
* **plan+record** — ``plan_retries(backend, job)``: the same, then the retry manifest, the retry
  batches (the items' records copied from their tasks' batches, sha256 checked), the task manifests
  and the task records written. What it wrote is removed after the timing (not timed).
  Target: <= 5 s.
* **read errors** (baseline) — a bare script: ``json.loads`` of every line of the same error files
  (the least any planner does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BenchError,
    child_env,
    dry_run_submit,
    mib,
    ratio,
    result,
    run_child,
    run_in_workdir,
    summary,
)

BENCH = "retry_plan"

_BASELINE = r"""
import json, os, sys, time
base = sys.argv[1]
t0, c0 = time.perf_counter(), time.process_time()
n = 0
for entry in os.scandir(base):
    path = os.path.join(entry.path, "a1.errors.jsonl")
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                n += json.loads(line)["category"] == "transient"
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu, "transient": n}))
"""

_PLAN = r"""
import json, shutil, sys, time
from pathlib import Path
from slurmctl.retry.store import plan_retries
from slurmctl.storage.open import open_backend
root, job_id, record = sys.argv[1], sys.argv[2], sys.argv[3] == "record"
backend = open_backend({"kind": "local", "root": root})
t0, c0 = time.perf_counter(), time.process_time()
p, doc = plan_retries(backend, job_id, dry_run=not record)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
items = sorted(i for t in p.tasks for i in t)
out = {"seconds": seconds, "cpu": cpu, "items": len(items), "tasks": len(p.tasks),
       "check": sum(items), "skipped": p.skipped}
if record:  # put the job back as it was (not timed)
    jobs = Path(root) / "jobs" / job_id
    shutil.rmtree(jobs / "retries")
    for tid in doc.task_ids:
        (jobs / "tasks" / f"{tid}.json").unlink()
        backend.state.delete("tasks", f"{job_id}/{tid}")
    for b in (jobs / "batches").glob("r*.jsonl"):
        b.unlink()
print(json.dumps(out))
"""


def build(work: Path, items: int, tasks: int) -> tuple[Path, str, list[int]]:
    """The job (see the module docstring). Returns (root, job id, the transient items)."""
    from slurmctl.model.core import TaskStatus
    from slurmctl.model.manifests import DoneMarker, ResultManifest
    from slurmctl.model.states import TaskState
    from slurmctl.storage import keys
    from slurmctl.storage.open import open_backend

    (work / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    with open(work / "in.jsonl", "w") as f:
        f.writelines(f'{{"n": {i}}}\n' for i in range(items))
    per = -(-items // tasks)
    (work / "job.yaml").write_text(
        "name: bench-retry\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
        f"batch: {{items: {per}}}\n"
    )
    root = work / "root"
    job_id = dry_run_submit(work, root)
    backend = open_backend({"kind": "local", "root": str(root)})
    transient: list[int] = []
    first = t = 0
    while first < items:
        tid = f"t{t:07d}"
        last = min(first + per, items)
        failed = [n for n in range(first, last) if n % 100 == 0]
        errors = []
        for n in failed:
            category = "transient" if n % 200 == 0 else "permanent"
            if category == "transient":
                transient.append(n)
            errors.append(
                json.dumps(
                    {
                        "item_id": n,
                        "category": category,
                        "type": "TransientItemError" if category == "transient" else "PermanentItemError",
                        "message": f"item {n} failed",
                        "traceback": "Traceback (most recent call last):\n  ...\n",
                        "attempt": 1,
                        "host": f"node{n % 16:02d}",
                        "slurm_job_id": None,
                        "at": 1.7e9 + n / 1000,
                    }
                )
                + "\n"
            )
        ekey = keys.result_errors(job_id, tid, 1)
        einfo = backend.objects.put(ekey, "".join(errors).encode()) if errors else None
        mkey = keys.result_manifest(job_id, tid, 1)
        manifest = ResultManifest(
            job_id=job_id,
            task_id=tid,
            attempt=1,
            data_key=keys.result_data(job_id, tid, 1),
            data_sha256="0" * 64,
            data_bytes=0,
            rows=0,
            errors_key=ekey if einfo else None,
            errors_sha256=einfo.sha256 if einfo else None,
            items=last - first,
            items_ok=last - first - len(failed),
            items_failed=len(failed),
            first_item=first,
            batch_sha256="0" * 64,
            started_at=0.0,
            finished_at=0.0,
            handler_seconds=0.0,
            worker="bench",
        )
        minfo = backend.objects.put(mkey, manifest.to_json())
        marker = DoneMarker(task_id=tid, attempt=1, manifest_key=mkey, manifest_sha256=minfo.sha256)
        backend.objects.put(keys.done_marker(job_id, tid), marker.to_json())
        st = TaskStatus(
            task_id=tid,
            state=TaskState.SUCCEEDED,
            attempt=1,
            items_total=last - first,
            items_done=last - first,
            items_failed=len(failed),
        )
        rec = backend.state.get(keys.TASKS_TABLE, keys.task_state(job_id, tid))
        backend.state.compare_and_set(
            keys.TASKS_TABLE, keys.task_state(job_id, tid), st.model_dump(mode="json"), rec.version
        )
        first, t = last, t + 1
    return root, job_id, transient


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("items", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, help="work directory, kept and reused (default: a temporary one)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    return run_in_workdir(BENCH, args.dir, "bench-retry-", lambda work: measure(args, work))


def measure(args: argparse.Namespace, work: Path) -> None:
    """The run itself, in ``work``. Raises BenchError."""
    t0 = time.perf_counter()
    saved = work / "transient.json"
    if saved.exists():  # --dir of an earlier run: its job is used again
        root = work / "root"
        (job_id,) = [p.name for p in (root / "jobs").iterdir()]
        transient = json.loads(saved.read_text())
    else:
        root, job_id, transient = build(work, args.items, args.tasks)
        saved.write_text(json.dumps(transient))
    print(
        f"set-up: {args.items:,} items in {args.tasks:,} tasks, {args.items // 100:,} failed "
        f"({len(transient):,} transient), {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    env = child_env()
    base = root / "jobs" / job_id / "results"
    want = {"items": len(transient), "check": sum(transient)}
    times: dict[str, list[float]] = {
        "plan": [],
        "plan_record": [],
        "read_errors": [],
        "plan_record_cpu": [],
    }
    rss: list[float] = []
    for _ in range(args.repeat):
        for mode, name in (("dry", "plan"), ("record", "plan_record")):
            run = run_child([sys.executable, "-c", _PLAN, str(root), job_id, mode], env=env, label=name)
            out = run.last_json()
            if {k: out[k] for k in want} != want:
                raise BenchError(f"{name} planned {out['items']} items, expected {len(transient)}")
            times[name].append(out["seconds"])
            if mode == "record":
                times["plan_record_cpu"].append(out["cpu"])
                rss.append(mib(run.peak_rss_kib))
        run = run_child([sys.executable, "-c", _BASELINE, str(base)], env=env, label="read errors")
        b = run.last_json()
        if b["transient"] != len(transient):
            raise BenchError(f"baseline found {b['transient']} transient items, expected {len(transient)}")
        times["read_errors"].append(b["seconds"])
    for name, values in times.items():
        result(BENCH, contender=name, items=args.items, tasks=args.tasks, seconds=summary(values))
    result(BENCH, contender="plan_record_peak_rss", items=args.items, peak_rss_mib=max(rss))
    rec = summary(times["plan_record"])["median"]
    ratio("plan_vs_read_errors", summary(times["plan"])["median"], summary(times["read_errors"])["median"])
    ratio("plan_record_vs_read_errors", rec, summary(times["read_errors"])["median"])
    ratio("plan_record_vs_5s_target", rec, 5.0, target="<= 1.0x (5 s for 1M items, 10k tasks)")


if __name__ == "__main__":
    sys.exit(main())
