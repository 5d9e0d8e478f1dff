"""Benchmark: slurmctl (pilot and array mode) against submitit ``map_array`` on the dev Slurm cluster.

Usage: python bench/slurm_vs_submitit.py [ITEMS] [BATCHES] [--workers 4,8] [--modes pilot,array]
                                         [--timeout S] [--dir DIR]
  ITEMS: records (default 200,000), BATCHES: batches/tasks (default 200; ITEMS/BATCHES items each).
  CI runs e.g. ``2000 4 --workers 2``.

The same no-op handler (``def handle(r, ctx): return r``) and the same JSONL input, same cluster, same run:

* **submitit** 1.5.4 — a child script reads the input, splits it into BATCHES lists, runs
  ``executor.map_array(run_batch, batches)`` where ``run_batch`` calls the no-op per record, and gathers
  every job's ``result()``. This is the baseline.
* **slurmctl pilot W** — ``python -m slurmctl submit job.yaml --wait`` with
  ``executor: {kind: slurm, mode: pilot, workers: W}`` (partition, sbatch, follow to the end).
* **slurmctl array** — the same with ``mode: array`` (one array element per task).

Each contender is timed end to end as a child process (start-up included). Slurm commands are counted
with PATH shims: a temp dir of wrapper scripts named sbatch/squeue/sacct/scancel/scontrol/sinfo/srun
that append "<context> <name> <args>" to a log and exec the real binary (found with ``which`` before the
shim dir is prepended). The shim dir is first in PATH for every contender; context is ``client`` for
commands the submitting side runs and ``job`` for commands run inside a Slurm job (SLURM_JOB_ID set —
e.g. submitit's ``srun`` in its batch script). Prints wall-time and command-count ratios against submitit
(targets: slurmctl >= 3x faster, no more Slurm commands than submitit).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, ChildRun, child_env, machine, ratio, result, run_child

BENCH = "slurm_vs_submitit"
SHIMMED = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "srun")

_SHIM = """#!/bin/sh
if [ -n "$SLURM_JOB_ID" ]; then ctx=job; else ctx=client; fi
printf '%s %s %s\\n' "$ctx" {name} "$*" >> {log}
exec {real} "$@"
"""

_SUBMITIT = r"""
import json, sys, time
import submitit

def handle(r, ctx):
    return r

def run_batch(records):
    return [handle(r, None) for r in records]

inp, folder, name = sys.argv[1], sys.argv[2], sys.argv[4]
batches, timeout_min = int(sys.argv[3]), int(sys.argv[5])
with open(inp, "rb") as f:
    records = [json.loads(line) for line in f]
size = -(-len(records) // batches)
chunks = [records[i : i + size] for i in range(0, len(records), size)]
ex = submitit.SlurmExecutor(folder=folder)
ex.update_parameters(job_name=name, time=timeout_min, cpus_per_task=1)
t0 = time.perf_counter()
jobs = ex.map_array(run_batch, chunks)
out = [job.result() for job in jobs]
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "jobs": len(jobs), "items": sum(len(o) for o in out)}))
"""


def make_shims(shim_dir: Path, log: Path) -> None:
    """Write the counting wrappers. Raises BenchError if a Slurm command is not on PATH."""
    shim_dir.mkdir(parents=True, exist_ok=True)
    for name in SHIMMED:
        real = shutil.which(name)
        if real is None:
            raise BenchError(f"{name} is not on PATH: is Slurm installed? (sudo scripts/dev-cluster up)")
        path = shim_dir / name
        path.write_text(_SHIM.format(name=name, log=log, real=real))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def read_counts(log: Path) -> dict[str, Counter[str]]:
    """{context: Counter(command name)} from a shim log (missing log: nothing ran)."""
    out: dict[str, Counter[str]] = {"client": Counter(), "job": Counter()}
    if log.exists():
        for line in log.read_text().splitlines():
            ctx, name, *_ = [*line.split(" ", 2), ""]
            out.setdefault(ctx, Counter())[name] += 1
    return out


def generate(path: Path, n: int) -> None:
    """Write ``n`` JSONL records of about 60 bytes, deterministically."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f'{{"id": {i}, "name": "user_{i % 99991:06d}", "ok": true}}\n' for i in range(n))


def cancel_by_name(name: str) -> None:
    """Cancel leftovers of a failed contender (real scancel, not the shim; best effort)."""
    real = shutil.which("scancel")
    if real:
        subprocess.run([real, f"--name={name}"], capture_output=True, check=False, timeout=30)


def check_slurmctl_run(
    run: ChildRun, root: Path, out: Path, items: int, row: dict[str, object]
) -> str | None:
    """Verify a ``submit --wait`` run: job succeeded with every item, and ``slurmctl results`` merges
    exactly ``items`` rows (its time goes into ``row``). Returns None, or what went wrong."""
    if run.returncode != 0:
        tail = " | ".join(line.strip() for line in run.stderr.strip().splitlines()[-3:])
        return f"submit --wait exited {run.returncode}: {tail}"
    job_id = run.stdout.strip().splitlines()[-1]
    status = run_child(
        [sys.executable, "-m", "slurmctl", "status", job_id, "--json", "--root", str(root)],
        env=child_env(),
        label="slurmctl status",
    )
    st = json.loads(status.stdout)
    if st["state"] != "succeeded" or st["items_done"] != items or st["items_failed"]:
        return f"job {job_id} ended {st['state']}, {st['items_done']}/{items} items done"
    merged = run_child(
        [sys.executable, "-m", "slurmctl", "results", job_id, "--root", str(root), "-o", str(out)],
        env=child_env(),
        check=False,
        label="slurmctl results",
    )
    if merged.returncode != 0:
        return f"slurmctl results exited {merged.returncode}: {merged.stderr.strip()[-300:]}"
    row["results_merge_s"] = round(merged.wall_s, 3)
    with open(out, "rb") as f:
        rows = sum(1 for _ in f)
    return None if rows == items else f"merged output has {rows} rows, expected {items}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("items", nargs="?", type=int, default=200_000)
    ap.add_argument("batches", nargs="?", type=int, default=200)
    ap.add_argument("--workers", default="4,8", help="pilot sizes W, comma-separated (default 4,8)")
    ap.add_argument("--modes", default="pilot,array", help="slurmctl modes (default pilot,array)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per contender, seconds (default 900)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, job roots)")
    args = ap.parse_args()
    if args.items < 1 or not 1 <= args.batches <= args.items:
        print("error: need ITEMS >= BATCHES >= 1", file=sys.stderr)
        return 2
    try:
        workers = [int(w) for w in args.workers.split(",") if w]
    except ValueError:
        print(f"error: --workers must be comma-separated integers, got {args.workers!r}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("submitit") is None:
        print("error: submitit is not installed: .venv/bin/pip install submitit==1.5.4", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - {"pilot", "array"}:
        print(f"error: --modes takes pilot and/or array, got {args.modes!r}", file=sys.stderr)
        return 2
    # The work dir must be visible from the compute node: on the one-node dev cluster any local dir is.
    work = Path(tempfile.mkdtemp(prefix="slurm-bench-", dir=args.dir))
    machine(BENCH, "start")
    token = secrets.token_hex(3)
    try:
        per = -(-args.items // args.batches)
        inp = work / "in.jsonl"
        generate(inp, args.items)
        (work / "noop.py").write_text("def handle(r, ctx):\n    return r\n")
        shim_dir = work / "shims"
        make_shims(shim_dir, work / "placeholder.log")  # fails early if Slurm is missing
        timeout_min = max(5, int(args.timeout / 60) + 1)

        def env_for(log: Path) -> dict[str, str]:
            make_shims(shim_dir, log)
            return child_env(PATH=f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}")

        rows = []
        # Baseline: submitit.
        log = work / "submitit.log"
        name = f"bench-submitit-{token}"
        try:
            sub = run_child(
                [
                    sys.executable,
                    "-c",
                    _SUBMITIT,
                    str(inp),
                    str(work / "submitit"),
                    str(args.batches),
                    name,
                    str(timeout_min),
                ],
                env=env_for(log),
                cwd=work,
                timeout=args.timeout,
                label="submitit",
            )
        except BaseException:
            cancel_by_name(name)
            raise
        s = sub.last_json()
        if s["items"] != args.items:
            raise BenchError(f"submitit returned {s['items']} of {args.items} items")
        base_counts = read_counts(log)
        base = {
            "contender": "submitit",
            "wall_s": round(sub.wall_s, 3),
            "map_array_s": round(s["seconds"], 3),
            "jobs": s["jobs"],
            "client_commands": dict(base_counts["client"]),
            "job_commands": dict(base_counts["job"]),
        }
        result(BENCH, items=args.items, batches=args.batches, **base)
        rows.append(base)

        contenders = [("pilot", w) for w in workers if "pilot" in modes] + (
            [("array", None)] if "array" in modes else []
        )
        for mode, w in contenders:
            label = f"slurmctl {mode}" + (f" W={w}" if w else "")
            slug = f"{mode}{w or ''}"
            executor = f"{{kind: slurm, mode: {mode}" + (f", workers: {w}" if w else "") + "}"
            job_name = f"bsv-{slug}-{token}"
            job = work / f"{slug}.yaml"
            job.write_text(
                f"name: {job_name}\ninput: {{path: in.jsonl}}\nhandler: {{function: 'noop:handle'}}\n"
                f"batch: {{items: {per}}}\noutput: {{format: jsonl}}\nexecutor: {executor}\n"
                f"resources: {{time_min: {timeout_min}}}\n"
            )
            log = work / f"{slug}.log"
            root = work / f"root-{slug}"
            argv = [sys.executable, "-m", "slurmctl", "submit", str(job), "--wait", "--root", str(root)]
            try:
                run = run_child(
                    argv, env=env_for(log), cwd=work, timeout=args.timeout, label=label, check=False
                )
            except BaseException:
                cancel_by_name(f"slurmctl-{job_name}")  # job names are slurmctl-<job id>, id starts with name
                for p in (root / "jobs").glob(f"{job_name}-*"):
                    cancel_by_name(f"slurmctl-{p.name}")
                raise
            counts = read_counts(log)
            row = {
                "contender": label,
                "wall_s": round(run.wall_s, 3),
                "client_commands": dict(counts["client"]),
                "job_commands": dict(counts["job"]),
            }
            problem = check_slurmctl_run(run, root, work / f"{slug}.out.jsonl", args.items, row)
            if problem:
                row["failed"] = problem
            result(BENCH, items=args.items, batches=args.batches, **row)
            rows.append(row)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)

        print()
        print(f"{args.items:,} items in {args.batches} batches of {per:,}, no-op handler, dev cluster:")
        for r in rows:
            client = sum(r["client_commands"].values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(r["client_commands"].items()))
            jobside = sum(r["job_commands"].values())
            flag = f"  FAILED: {r['failed']}" if r.get("failed") else ""
            print(
                f"  {r['contender']:<20} {r['wall_s']:8.2f}s  client Slurm commands {client:3d} ({detail})"
                f"; inside jobs {jobside}{flag}"
            )
        b_wall = rows[0]["wall_s"]
        b_cmds = sum(rows[0]["client_commands"].values())
        for r in rows[1:]:
            if r.get("failed"):
                continue
            ratio(
                f"submitit_vs_{r['contender'].replace(' ', '_')}_speedup",
                b_wall,
                r["wall_s"],
                target=">= 3.00x",
            )
            ratio(
                f"{r['contender'].replace(' ', '_')}_vs_submitit_client_slurm_commands",
                sum(r["client_commands"].values()),
                b_cmds,
                unit="commands",
                target="<= 1.00x",
            )
        machine(BENCH, "end")
        failed = [r["contender"] for r in rows if r.get("failed")]
        if failed:
            print(f"error: contender(s) failed, no ratio for them: {', '.join(failed)}", file=sys.stderr)
            return 1
        return 0
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    t = time.perf_counter()
    rc = main()
    print(f"bench wall time {time.perf_counter() - t:.1f}s", file=sys.stderr)
    sys.exit(rc)
