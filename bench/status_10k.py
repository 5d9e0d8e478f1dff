"""Benchmark: ``slurmctl status JOB --json`` on a job of 10,000 tasks against a bare scan of the records.

Usage: python bench/status_10k.py [TASKS] [--repeat R] [--dir DIR]
  TASKS: tasks in the job (default 10,000; CI runs ~300). R: runs per contender (default 5).

Set-up (not timed): ``slurmctl submit --dry-run`` of a generated input with ``batch.items: 1`` on the local
backend (TASKS batches, manifests and task records, the real coordinator), then the task records are
moved through the StateStore API to a realistic mix — 55% succeeded, 8% running (live lease, items under
way), 2% failed (attempts left), 20% queued, 15% pending — and the job to ``running``.

Contenders, each in its own child process, alternating, same run, page cache warm for all:

* **status CLI** — ``python -m slurmctl status JOB --json`` end to end (interpreter start-up, imports, the
  scan, the JSON print). Target <= 0.3 s.
* **progress()** — ``slurmctl.status.progress`` in-process, timed inside the child after imports.
* **bare scan** (baseline) — ``os.scandir`` of the task-record directory, read + ``json.loads`` of every
  record file, count the states: timed in-process, and end to end as a ``python -c`` script.
* **python start-up** (context) — ``python -c pass``, and the imports ``status`` needs before it reads a
  record (``slurmctl.cli.main``, ``slurmctl.status``, ``typer._adapters``).

The CLI's counts are checked against the mix that was written.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, child_env, dry_run_submit, machine, mib, ratio, result, run_child, summary

BENCH = "status_10k"
MIX = (("succeeded", 0.55), ("running", 0.08), ("failed", 0.02), ("queued", 0.20), ("pending", 0.15))

_BARE = r"""
import json, os, sys, time
from collections import Counter
base = sys.argv[1]
t0 = time.perf_counter()
counts = Counter()
done = 0
for e in os.scandir(base):
    if not e.name.endswith(".json") or e.name.startswith("."):
        continue
    with open(e.path, "rb") as f:
        v = json.loads(f.read())["value"]
    counts[v["state"]] += 1
    done += v["items_done"]
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "tasks": sum(counts.values()), "states": dict(counts)}))
"""

# What `status` imports before it reads a record: the CLI module, typer's parameter adapters (built at
# parse time by typer >= 0.2x) and slurmctl.status (coordinator, config models, pydantic).
_IMPORTS = "import slurmctl.cli.main, slurmctl.status, typer._adapters"

_PROGRESS = r"""
import json, sys, time
from slurmctl.status import progress
from slurmctl.storage.open import open_backend
backend = open_backend({"kind": "local", "root": sys.argv[1]})
t0 = time.perf_counter()
p = progress(backend, sys.argv[2])
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "tasks": p.tasks, "states": p.task_states}))
"""


def build(work: Path, tasks: int) -> tuple[Path, str, dict[str, int]]:
    """Prepare a TASKS-task job and put its tasks into the MIX of states. Returns (root, job id, counts)."""
    from slurmctl.coordinator import set_job_state
    from slurmctl.model.core import TaskStatus
    from slurmctl.model.states import JobState, TaskState
    from slurmctl.storage import keys
    from slurmctl.storage.open import open_backend

    (work / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    with open(work / "in.jsonl", "w") as f:
        f.writelines(f'{{"n": {i}}}\n' for i in range(tasks))
    (work / "job.yaml").write_text(
        "name: bench-status\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 1}\n"
    )
    root = work / "root"
    job_id = dry_run_submit(work, root)
    backend = open_backend({"kind": "local", "root": str(root)})
    rnd = random.Random(7)
    states = [s for s, share in MIX for _ in range(round(share * tasks))]
    states = (states + ["pending"] * tasks)[:tasks]
    rnd.shuffle(states)
    now = time.time()
    t0 = now - 600
    counts: dict[str, int] = {}
    with backend.deferred_sync():
        for i, state in enumerate(states):
            tid = f"t{i:07d}"
            counts[state] = counts.get(state, 0) + 1
            fields: dict[str, object] = {"task_id": tid, "state": TaskState(state), "items_total": 1}
            if state in ("succeeded", "running", "failed"):
                fields.update(attempt=1, owner=f"node{i % 16}:{1000 + i}", started_at=t0 + rnd.random() * 500)
            if state == "succeeded":
                fields.update(items_done=1, finished_at=now - rnd.random() * 60, exit_code=0, owner=None)
            elif state == "running":
                fields.update(lease_expires=now + 120)
            elif state == "failed":
                fields.update(
                    finished_at=now - 30, exit_code=1, error="handler module 'h' raised while importing"
                )
            value = TaskStatus(**fields).model_dump(mode="json")
            key = keys.task_state(job_id, tid)
            rec = backend.state.get(keys.TASKS_TABLE, key)
            if rec is None:
                raise BenchError(f"task record {key} missing after submit --dry-run")
            backend.state.compare_and_set(keys.TASKS_TABLE, key, value, rec.version)
    set_job_state(backend, job_id, JobState.SUBMITTED)
    set_job_state(backend, job_id, JobState.RUNNING)
    return root, job_id, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="?", type=int, default=10_000, help="tasks (default 10,000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per contender (default 5)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    if args.tasks < 1 or args.repeat < 1:
        print("error: TASKS and --repeat must be positive", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="status-bench-", dir=args.dir))
    machine(BENCH, "start")
    try:
        t_build = time.perf_counter()
        root, job_id, expected = build(work, args.tasks)
        t_build = time.perf_counter() - t_build
        records = root / "state" / "tasks" / job_id
        env = child_env(SLURMCTL_ROOT=str(root))
        cli_s: list[float] = []
        prog_s: list[float] = []
        bare_s: list[float] = []
        bare_e2e_s: list[float] = []
        startup_s: list[float] = []
        import_s: list[float] = []
        rss_cli = 0
        for _ in range(args.repeat):
            cli = run_child(
                [sys.executable, "-m", "slurmctl", "status", job_id, "--json"], env=env, label="status --json"
            )
            got = json.loads(cli.stdout)
            states = {k: v for k, v in got["task_states"].items() if v}
            if states != expected or got["tasks"] != args.tasks:
                raise BenchError(f"status --json counted {states} ({got['tasks']} tasks), wrote {expected}")
            cli_s.append(cli.wall_s)
            rss_cli = max(rss_cli, cli.peak_rss_kib)
            p = run_child([sys.executable, "-c", _PROGRESS, str(root), job_id], env=env, label="progress()")
            prog_s.append(p.last_json()["seconds"])
            bare = run_child([sys.executable, "-c", _BARE, str(records)], env=env, label="bare scan")
            b = bare.last_json()
            if b["states"] != expected:
                raise BenchError(f"bare scan counted {b['states']}, wrote {expected}")
            bare_s.append(b["seconds"])
            bare_e2e_s.append(bare.wall_s)
            startup_s.append(run_child([sys.executable, "-c", "pass"], env=env).wall_s)
            import_s.append(run_child([sys.executable, "-c", _IMPORTS], env=env).wall_s)
        result(
            BENCH, contender="status_cli", tasks=args.tasks, seconds=summary(cli_s), peak_rss_mib=mib(rss_cli)
        )
        result(BENCH, contender="progress_in_process", tasks=args.tasks, seconds=summary(prog_s))
        result(BENCH, contender="bare_scan_in_process", tasks=args.tasks, seconds=summary(bare_s))
        result(BENCH, contender="bare_scan_end_to_end", tasks=args.tasks, seconds=summary(bare_e2e_s))
        result(
            BENCH,
            contender="python_startup",
            python_c_pass_s=summary(startup_s),
            imports_of_status_s=summary(import_s),
        )
        print(
            f"{args.tasks:,} tasks ({', '.join(f'{k}={v}' for k, v in expected.items())}; set-up "
            f"{t_build:.1f}s), median of {args.repeat}: `status --json` {summary(cli_s)['median']:.3f}s, "
            f"progress() {summary(prog_s)['median']:.3f}s, bare scan {summary(bare_s)['median']:.3f}s "
            f"in-process / {summary(bare_e2e_s)['median']:.3f}s end to end; python start-up "
            f"{summary(startup_s)['median']:.3f}s, imports of `status` "
            f"{summary(import_s)['median']:.3f}s"
        )
        med = {k: summary(v)["median"] for k, v in (("cli", cli_s), ("prog", prog_s), ("bare", bare_s))}
        ratio("status_cli_vs_0.3s_target", med["cli"], 0.3, target="<= 1.00x")
        ratio("status_cli_vs_bare_scan_end_to_end", med["cli"], summary(bare_e2e_s)["median"])
        ratio("progress_vs_bare_scan_in_process", med["prog"], med["bare"])
        machine(BENCH, "end")
        return 0
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    t = time.perf_counter()
    rc = main()
    print(f"bench wall time {time.perf_counter() - t:.1f}s", file=sys.stderr)
    sys.exit(rc)
