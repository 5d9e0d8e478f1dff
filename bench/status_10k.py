"""Benchmark: ``slurmctl status JOB --json`` on a job of 10,000 tasks, local and AWS (moto), against a
full scan of the task records.

Usage: python bench/status_10k.py [TASKS] [--repeat R] [--dir DIR] [--no-aws]
  TASKS: tasks in the job (default 10,000; CI runs ~60). R: runs per contender (default 5).
  --no-aws: the local backend only (the AWS part starts a moto server, ``moto_server`` of the venv).

Set-up (not timed): a job record and TASKS task records in a realistic mix — 55% succeeded, 8% running
(live lease), 2% failed (attempts left), 20% queued, 15% pending — created with
``slurmctl.lifecycle.create_tasks`` (task records, then one progress record per 256 tasks), the job
``running``. The same job is built on the local backend and, unless ``--no-aws``, on S3 + DynamoDB of a
moto server (``slurmctl aws bootstrap``'s tables).

Contenders, each in a fresh child process (interpreter start-up, imports, reads, JSON print: nothing
of a previous call is reused; the page cache is warm), alternating, in the same run:

* **status CLI** — ``python -m slurmctl status JOB --json`` (local: ``SLURMCTL_ROOT``; AWS:
  ``--backend SPEC``, whose first-contact check is one request per resource). Target: <= 0.3 s local,
  <= 2 s and <= 20 requests on AWS.
* **full scan** (baseline) — a script that opens the backend the same way and computes the same answer
  from every task record (``slurmctl.status.progress(..., exact_scan=True)``), end to end.
* local only: both in-process (timed inside the child after imports), and ``python -c pass``.

On AWS every botocore request of the child is counted by an event hook (``before-send`` on each client).
The CLI's counts are checked against the mix written, and equal to the full scan's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, child_env, machine, mib, ratio, result, run_child, summary

BENCH = "status_10k"
MIX = (("succeeded", 0.55), ("running", 0.08), ("failed", 0.02), ("queued", 0.20), ("pending", 0.15))

# Counts every botocore request of the process (an event hook on each client made), then runs
# ARGV: `cli JOB SPEC` (the slurmctl CLI) or `scan JOB SPEC` (the full-scan baseline).
_AWS_CHILD = r"""
import json, sys, runpy
import boto3.session
sent = [0]
make = boto3.session.Session.client
def client(self, *a, **k):
    c = make(self, *a, **k)
    c.meta.events.register("before-send", lambda **_: sent.__setitem__(0, sent[0] + 1))
    return c
boto3.session.Session.client = client
what, job, spec = sys.argv[1:4]
try:
    if what == "cli":
        sys.argv = ["slurmctl", "status", job, "--json", "--backend", spec]
        runpy.run_module("slurmctl", run_name="__main__")
    else:
        from slurmctl.status import progress
        from slurmctl.storage.open import open_backend
        p = progress(open_backend(json.loads(spec), check=True), job, exact_scan=True)
        print(json.dumps(p.to_dict()))
finally:
    print(f"REQUESTS {sent[0]}", file=sys.stderr)
"""

_LOCAL_SCAN = r"""
import json, sys
from slurmctl.status import progress
from slurmctl.storage.local import local_backend
print(json.dumps(progress(local_backend(sys.argv[1]), sys.argv[2], exact_scan=True).to_dict()))
"""

_IN_PROCESS = r"""
import json, sys, time
from slurmctl.status import progress
from slurmctl.storage.local import local_backend
backend = local_backend(sys.argv[1])
t0 = time.perf_counter()
p = progress(backend, sys.argv[2], exact_scan=sys.argv[3] == "scan")
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "tasks": p.tasks}))
"""


def build(backend: Any, tasks: int) -> tuple[str, dict[str, int], int]:
    """A TASKS-task job in the MIX of states. Returns (job id, counts by state, items done)."""
    from slurmctl.lifecycle import create_job, create_tasks, set_job_state
    from slurmctl.model.core import JobStatus, TaskStatus, task_id
    from slurmctl.model.states import JobState, TaskState

    job_id = f"bench-status-{uuid.uuid4().hex[:8]}"
    create_job(backend, JobStatus(job_id=job_id, name="bench-status", state=JobState.CREATED))
    set_job_state(backend, job_id, JobState.PARTITIONED, total_items=tasks, tasks=tasks)
    rnd = random.Random(7)
    states = [s for s, share in MIX for _ in range(round(share * tasks))]
    states = (states + ["pending"] * tasks)[:tasks]
    rnd.shuffle(states)
    now = time.time()
    t0 = now - 600
    counts: dict[str, int] = {}
    statuses = []
    for i, state in enumerate(states):
        counts[state] = counts.get(state, 0) + 1
        fields: dict[str, Any] = {"task_id": task_id(i), "state": TaskState(state), "items_total": 1}
        if state in ("succeeded", "running", "failed"):
            fields.update(attempt=1, owner=f"node{i % 16}:{1000 + i}", started_at=t0 + rnd.random() * 500)
        if state == "succeeded":
            fields.update(items_done=1, finished_at=now - rnd.random() * 60, exit_code=0, owner=None)
        elif state == "running":
            fields.update(lease_expires=now + 3600)
        elif state == "failed":
            fields.update(
                finished_at=now - 30,
                exit_code=1,
                failures=1,
                error="handler module 'h' raised while importing",
            )
        statuses.append(TaskStatus(**fields))
    create_tasks(backend, job_id, statuses)
    set_job_state(backend, job_id, JobState.SUBMITTED)
    set_job_state(backend, job_id, JobState.RUNNING)
    return job_id, counts, counts.get("succeeded", 0)


def check(label: str, stdout: str, expected: dict[str, int], done: int, tasks: int) -> dict[str, Any]:
    got = json.loads(stdout)
    states = {k: v for k, v in got["task_states"].items() if v}
    if states != expected or got["tasks"] != tasks or got["items_done"] != done:
        raise BenchError(
            f"{label} counted {states}, {got['tasks']} tasks, {got['items_done']} items done; "
            f"expected {expected}, {done}"
        )
    return got


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two answers agree on everything but what depends on the clock of the call."""
    clock = ("elapsed_s", "items_per_s", "eta_s")
    return {k: v for k, v in a.items() if k not in clock} == {k: v for k, v in b.items() if k not in clock}


def requests_of(stderr: str) -> int:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("REQUESTS ")]
    if not lines:
        raise BenchError(f"the child did not report its request count:\n{stderr[-2000:]}")
    return int(lines[-1].split()[1])


def local_part(work: Path, tasks: int, repeat: int) -> dict[str, float]:
    from slurmctl.storage.local import local_backend

    root = work / "root"
    t_build = time.perf_counter()
    job_id, expected, done = build(local_backend(root), tasks)
    t_build = time.perf_counter() - t_build
    env = child_env(SLURMCTL_ROOT=str(root), PYTHONPYCACHEPREFIX=str(work / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # children read .pyc files, as an installed slurmctl does
    runs: dict[str, list[float]] = {k: [] for k in ("cli", "plain", "scan", "prog", "prog_scan", "python")}
    rss = 0
    cli = [sys.executable, "-m", "slurmctl", "status", job_id]
    run_child([*cli, "--json"], env=env, label="priming (writes .pyc)")
    for _ in range(repeat):
        c = run_child([*cli, "--json"], env=env, label="status --json")
        exact = check("status --json", c.stdout, expected, done, tasks)
        runs["cli"].append(c.wall_s)
        rss = max(rss, c.peak_rss_kib)
        plain = run_child(cli, env=env, label="status")
        if f"succeeded={expected.get('succeeded', 0)}" not in plain.stdout:
            raise BenchError(f"status (plain) printed {plain.stdout!r}")
        runs["plain"].append(plain.wall_s)
        s = run_child([sys.executable, "-c", _LOCAL_SCAN, str(root), job_id], env=env, label="full scan")
        if not same(json.loads(s.stdout), exact):
            raise BenchError("status --json and the full scan of the task records disagree")
        runs["scan"].append(s.wall_s)
        for key, how in (("prog", "groups"), ("prog_scan", "scan")):
            p = run_child([sys.executable, "-c", _IN_PROCESS, str(root), job_id, how], env=env, label=key)
            runs[key].append(p.last_json()["seconds"])
        runs["python"].append(run_child([sys.executable, "-c", "pass"], env=env).wall_s)
    med = {k: summary(v)["median"] for k, v in runs.items()}
    for key, name in (
        ("cli", "status_cli_local"),
        ("plain", "status_cli_plain_local"),
        ("scan", "full_scan_end_to_end_local"),
        ("prog", "progress_in_process_local"),
        ("prog_scan", "full_scan_in_process_local"),
        ("python", "python_startup"),
    ):
        result(BENCH, contender=name, tasks=tasks, seconds=summary(runs[key]))
    result(BENCH, contender="status_cli_local", tasks=tasks, peak_rss_mib=mib(rss))
    print(
        f"local, {tasks:,} tasks ({', '.join(f'{k}={v}' for k, v in expected.items())}; set-up "
        f"{t_build:.1f}s), median of {repeat}: `status --json` {med['cli']:.3f}s (plain view "
        f"{med['plain']:.3f}s); full scan {med['scan']:.3f}s end to end; in-process: progress() "
        f"{med['prog'] * 1000:.1f} ms, full scan {med['prog_scan'] * 1000:.1f} ms; python start-up "
        f"{med['python']:.3f}s"
    )
    ratio("status_cli_local_vs_0.3s_target", med["cli"], 0.3, target="<= 1.00x")
    ratio("status_cli_local_vs_full_scan_end_to_end", med["cli"], med["scan"])
    ratio("progress_vs_full_scan_in_process_local", med["prog"], med["prog_scan"])
    return med


def aws_part(work: Path, tasks: int, repeat: int) -> None:
    from dynamo_requests import start_moto

    from slurmctl.storage.aws.bootstrap import ensure_bucket, ensure_tables
    from slurmctl.storage.aws.settings import AwsSettings
    from slurmctl.storage.open import open_backend

    creds = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(creds)
    moto, port = start_moto(work)
    try:
        spec = {
            "kind": "aws",
            "bucket": f"st-{uuid.uuid4().hex[:8]}",
            "table_prefix": f"st{uuid.uuid4().hex[:6]}-",
            "region": "us-east-1",
            "endpoint_url": f"http://127.0.0.1:{port}",
        }
        settings = AwsSettings.from_spec(spec)
        ensure_bucket(settings)
        ensure_tables(settings, wait_s=30)
        t_build = time.perf_counter()
        job_id, expected, done = build(open_backend(spec), tasks)
        t_build = time.perf_counter() - t_build
        env = child_env(PYTHONPYCACHEPREFIX=str(work / "pycache"), **creds)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        argv = [sys.executable, "-c", _AWS_CHILD]
        spec_json = json.dumps(spec)
        run_child([*argv, "cli", job_id, spec_json], env=env, label="priming")
        cli_s: list[float] = []
        scan_s: list[float] = []
        cli_req = scan_req = 0
        for _ in range(repeat):
            c = run_child([*argv, "cli", job_id, spec_json], env=env, label="aws status --json")
            exact = check("aws status --json", c.stdout, expected, done, tasks)
            cli_s.append(c.wall_s)
            cli_req = max(cli_req, requests_of(c.stderr))
            s = run_child([*argv, "scan", job_id, spec_json], env=env, label="aws full scan")
            if not same(json.loads(s.stdout), exact):
                raise BenchError("aws: status --json and the full scan of the task records disagree")
            scan_s.append(s.wall_s)
            scan_req = max(scan_req, requests_of(s.stderr))
        result(BENCH, contender="status_cli_aws", tasks=tasks, seconds=summary(cli_s), requests=cli_req)
        result(
            BENCH,
            contender="full_scan_end_to_end_aws",
            tasks=tasks,
            seconds=summary(scan_s),
            requests=scan_req,
        )
        med_cli, med_scan = summary(cli_s)["median"], summary(scan_s)["median"]
        print(
            f"aws (moto), {tasks:,} tasks (set-up {t_build:.1f}s), median of {repeat}: `status --json` "
            f"{med_cli:.3f}s with {cli_req} requests; full scan {med_scan:.3f}s with {scan_req} requests"
        )
        ratio("status_cli_aws_vs_2s_target", med_cli, 2.0, target="<= 1.00x")
        ratio("status_cli_aws_requests_vs_20_target", cli_req, 20, unit="requests", target="<= 1.00x")
        ratio("status_cli_aws_vs_full_scan_end_to_end", med_cli, med_scan)
        ratio("status_cli_aws_requests_vs_full_scan", cli_req, scan_req, unit="requests")
    finally:
        moto.terminate()
        moto.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="?", type=int, default=10_000, help="tasks (default 10,000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per contender (default 5)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--no-aws", action="store_true", help="the local backend only (no moto server)")
    args = ap.parse_args()
    if args.tasks < 1 or args.repeat < 1:
        print("error: TASKS and --repeat must be positive", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="status-bench-", dir=args.dir))
    machine(BENCH, "start")
    try:
        local_part(work, args.tasks, args.repeat)
        if not args.no_aws:
            aws_part(work, args.tasks, args.repeat)
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
