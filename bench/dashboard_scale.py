"""Benchmark: ``slurmctl dashboard`` of a 100,000-task job — file size, time to generate, time to
first render in headless Chromium — against ``slurmctl status --json`` (and ``analyze-errors --json``)
of the same job, in the same run.

Usage: python bench/dashboard_scale.py [TASKS] [--repeat R] [--dir DIR] [--no-browser]
  TASKS: tasks in the job (default 100,000; the smoke test runs 200). R: runs per contender (default 3).
  --dir DIR: work directory, kept (default: a temp dir, removed); a job built there before is reused
  (building 100k tasks takes ~10 min on the 2-core VM).

Set-up (not timed), through the normal store APIs on a local backend: the job record, manifest (a
config with resources.mem_gb and a rate limit) and task manifests; task records (lifecycle
``create_tasks``: records, then progress records) in a mix of 90 % succeeded, 3 % failed, 2 % running,
5 % queued; for each succeeded task what a worker publishes — result manifest and ``.done`` — plus the
per-attempt metrics file and gzip JSON-lines log (20 lines), and for one in ten an errors file of
3 failed items drawn from 6 signatures.

Contenders, each a fresh child process (interpreter start-up and imports included; warm page cache),
alternating:

* **dashboard** — ``python -m slurmctl dashboard JOB -o FILE``. Targets: FILE <= 5 MB, opens in <= 2 s.
* **status** (baseline) — ``python -m slurmctl status JOB --json``: progress records only.
* **analyze-errors** — ``python -m slurmctl analyze-errors JOB --json``: every error file and task record.

Then, unless ``--no-browser``, the written file is opened R times in headless Chromium (a new page
each time, the browser started before): time from ``goto`` to the page's ready mark (every chart and
the first page of the task table drawn), and the page's own ``performance.now()`` at that mark.
The embedded data is checked against ``status --json`` (task counts per state, items done).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, child_env, machine, mib, ratio, result, run_child, summary

BENCH = "dashboard_scale"
MIX = (("succeeded", 0.90), ("failed", 0.03), ("running", 0.02), ("queued", 0.05))
ITEMS = 100  # items per task
SIGNATURES = [
    ("permanent", "ValueError", "bad value {n} in /data/{n}.json", "parse"),
    ("permanent", "KeyError", "'field_{n}'", "extract"),
    ("transient", "TimeoutError", "upstream took {n}.5 s", "fetch"),
    ("transient", "ConnectionResetError", "[Errno 104] Connection reset by peer", "fetch"),
    ("infrastructure", "OSError", "[Errno 5] Input/output error: '/scratch/{n}'", "save"),
    ("unknown", "RuntimeError", "inconsistent state {n}", "merge"),
]


def build(root: Path, tasks: int) -> tuple[str, dict[str, int]]:
    """The synthetic job (see the module docstring). Returns (job id, counts by state)."""
    from slurmctl.lifecycle import create_job, create_tasks, set_job_state
    from slurmctl.model.core import Batch, Job, JobStatus, Task, TaskStatus, task_id
    from slurmctl.model.states import JobState, TaskState
    from slurmctl.storage import keys
    from slurmctl.storage.local import local_backend

    backend = local_backend(str(root))
    job_id = "bench-dashboard"
    rnd = random.Random(11)
    states = [s for s, share in MIX for _ in range(round(share * tasks))]
    states = (states + ["succeeded"] * tasks)[:tasks]
    rnd.shuffle(states)
    now = time.time()
    t0 = now - 4 * 3600
    config = {
        "name": "bench-dashboard",
        "resources": {"cpus": 1, "mem_gb": 2},
        "limits": {"api": {"rate": 50.0}},
        "retry": {"max_attempts": 3},
    }
    create_job(backend, JobStatus(job_id=job_id, name="bench-dashboard", state=JobState.CREATED))
    job = Job(
        job_id=job_id,
        name="bench-dashboard",
        created_at=t0 - 60,
        config=config,
        config_sha256="0" * 64,
        backend={"kind": "local", "root": str(root)},
        executor="slurm",
        total_items=tasks * ITEMS,
        tasks=tasks,
    )
    backend.objects.put(keys.job_manifest(job_id), job.to_json())
    set_job_state(backend, job_id, JobState.PARTITIONED, total_items=tasks * ITEMS, tasks=tasks)
    counts: dict[str, int] = {}
    statuses = []
    with backend.deferred_sync():
        for i, state in enumerate(states):
            tid = task_id(i)
            counts[state] = counts.get(state, 0) + 1
            batch = Batch(
                batch_id=f"b{i:07d}",
                index=i,
                key=keys.batch(job_id, f"b{i:07d}"),
                first_item=i * ITEMS,
                items=ITEMS,
                bytes=ITEMS * 40,
                sha256="0" * 64,
                source="/data/input.jsonl",
                first_line=i * ITEMS + 1,
                last_line=(i + 1) * ITEMS,
            )
            backend.objects.put(
                keys.task_manifest(job_id, tid),
                Task(task_id=tid, job_id=job_id, index=i, batch=batch).to_json(),
            )
            host = f"node{i % 64:03d}"
            slurm = f"{900000 + i // 1000}_{i % 1000}"
            fields: dict[str, Any] = {"task_id": tid, "state": TaskState(state), "items_total": ITEMS}
            started = t0 + (i / tasks) * 3.5 * 3600 + rnd.random() * 60
            wall = 30 + rnd.expovariate(1 / 60)
            if state in ("succeeded", "running", "failed"):
                fields.update(
                    attempt=1, owner=f"{host}:{1000 + i}:{slurm}", started_at=started, slurm_job_id=slurm
                )
            if state == "running":
                fields.update(lease_expires=now + 3600, items_done=ITEMS // 2)
            elif state == "failed":
                oom = rnd.random() < 0.5
                fields.update(
                    finished_at=started + wall,
                    exit_code=1,
                    failures=3,
                    attempt=3,
                    error="worker pid 4242 exited -9 before finishing" if oom else "handler raised at import",
                    slurm_state="out_of_memory" if oom else "failed",
                    slurm_exit="0:9" if oom else "1:0",
                    cause="resources/memory" if oom else None,
                )
            elif state == "succeeded":
                failed = 3 if i % 10 == 0 else 0
                fields.update(finished_at=started + wall, items_done=ITEMS, items_failed=failed, exit_code=0)
                _publish(backend, job_id, tid, i, batch, host, slurm, started, wall, failed, rnd)
            statuses.append(TaskStatus(**fields))
        create_tasks(backend, job_id, statuses)
    set_job_state(backend, job_id, JobState.SUBMITTED)
    set_job_state(backend, job_id, JobState.RUNNING)
    return job_id, counts


def _publish(backend, job_id, tid, i, batch, host, slurm, started, wall, failed, rnd) -> None:
    """What a worker leaves for a published attempt 1 (rows are not needed by any reader here)."""
    from slurmctl.model.manifests import DoneMarker, ResultManifest
    from slurmctl.storage import keys

    base = keys.result_prefix(job_id, tid) + "a1"
    errors_key = None
    cats: dict[str, int] = {}
    if failed:
        lines = []
        for k in range(failed):
            cat, typ, msg, fn = SIGNATURES[(i // 10 + k) % len(SIGNATURES)]
            n = batch.first_item + k
            cats[cat] = cats.get(cat, 0) + 1
            tb = f'Traceback (most recent call last):\n  File "/app/handler.py", line 42, in {fn}\n{typ}: x\n'
            lines.append(
                json.dumps(
                    {
                        "item_id": n,
                        "category": cat,
                        "type": typ,
                        "message": msg.format(n=n),
                        "traceback": tb,
                        "attempt": 1,
                        "host": host,
                        "slurm_job_id": slurm,
                        "at": started + wall / 2,
                    }
                )
            )
        errors_key = keys.result_errors(job_id, tid, 1)
        backend.objects.put(errors_key, ("\n".join(lines) + "\n").encode())
    manifest = ResultManifest(
        job_id=job_id,
        task_id=tid,
        attempt=1,
        data_key=keys.result_data(job_id, tid, 1),
        data_sha256="0" * 64,
        data_bytes=ITEMS * 50,
        rows=ITEMS - failed,
        errors_key=errors_key,
        errors_sha256="0" * 64 if errors_key else None,
        items=ITEMS,
        items_ok=ITEMS - failed,
        items_failed=failed,
        first_item=batch.first_item,
        batch_sha256="0" * 64,
        started_at=started,
        finished_at=started + wall,
        handler_seconds=wall * 0.9,
        worker=f"{host}:{1000 + i}:{slurm}",
        failure_categories=cats,
    )
    info = backend.objects.put(keys.result_manifest(job_id, tid, 1), manifest.to_json())
    metrics = {
        "format": 1,
        "job": job_id,
        "task": tid,
        "attempt": 1,
        "host": host,
        "slurm_job_id": slurm,
        "started": started,
        "ended": started + wall,
        "wall_s": wall,
        "cpu_s": wall * rnd.uniform(0.2, 0.98),
        "items_ok": ITEMS - failed,
        "items_failed": failed,
        "failed_by_category": cats,
        "items_per_s": ITEMS / wall,
        "peak_rss_bytes": int(rnd.lognormvariate(20.2, 0.4)),
        "read_bytes": ITEMS * 40,
        "written_bytes": ITEMS * 50,
        "queue_wait_s": rnd.expovariate(1 / 90),
        "ratelimit": {"api": {"tokens": ITEMS, "wait_s": rnd.random() * 5}},
        "store": {"calls": 8, "seconds": rnd.random() * 0.2},
        "custom": {"counters": {"records": ITEMS}, "gauges": {}, "histograms": {}},
    }
    backend.objects.put(base + ".metrics.json", json.dumps(metrics).encode())
    log = "".join(
        json.dumps(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started + k)) + ".000Z",
                "level": "INFO",
                "logger": "handler",
                "msg": f"item {batch.first_item + k} done",
                "job": job_id,
                "task": tid,
                "attempt": 1,
                "item": batch.first_item + k,
                "worker": manifest.worker,
                "host": host,
                "slurm_job_id": slurm,
            }
        )
        + "\n"
        for k in range(20)
    )
    backend.objects.put(base + ".log.jsonl.gz", gzip.compress(log.encode(), 6))
    done = DoneMarker(
        task_id=tid, attempt=1, manifest_key=keys.result_manifest(job_id, tid, 1), manifest_sha256=info.sha256
    )
    backend.objects.put_if_absent(keys.done_marker(job_id, tid), done.to_json())


def first_render(html: Path, repeat: int) -> list[dict[str, float]]:
    """Open ``html`` ``repeat`` times in headless Chromium; seconds from goto to the ready mark."""
    from playwright.sync_api import sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=args)
        try:
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.on("console", lambda m, errors=errors: m.type == "error" and errors.append(m.text))
                t0 = time.perf_counter()
                page.goto(html.as_uri(), wait_until="commit")
                page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                wall = time.perf_counter() - t0
                in_page = page.evaluate("performance.now()") / 1000
                if errors:
                    raise BenchError(f"the page reported errors: {errors[:3]}")
                out.append({"wall_s": wall, "page_s": in_page})
                page.close()
        finally:
            browser.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tasks", nargs="?", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--dir", type=Path, default=None, help="work directory, kept; a job built there before is reused"
    )
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        machine(BENCH, "start")
        root = work / "root"
        if (root / "state" / "jobs" / "bench-dashboard.json").exists():
            job_id = "bench-dashboard"
            print(f"reusing the job in {root}", flush=True)
        else:
            t = time.perf_counter()
            job_id, counts = build(root, args.tasks)
            print(f"built a {args.tasks:,}-task job in {time.perf_counter() - t:.1f} s: {counts}", flush=True)
        env = child_env(SLURMCTL_ROOT=str(root))
        html = work / "job.html"
        runs: dict[str, list[Any]] = {"dashboard": [], "status": [], "analyze-errors": []}
        for _ in range(args.repeat):
            for name, argv in (
                ("dashboard", ["dashboard", job_id, "-o", str(html)]),
                ("status", ["status", job_id, "--json"]),
                ("analyze-errors", ["analyze-errors", job_id, "--json"]),
            ):
                runs[name].append(run_child([sys.executable, "-m", "slurmctl", *argv], env=env, label=name))
        status = json.loads(runs["status"][-1].stdout)
        tasks = status["tasks"]
        page = html.read_text(encoding="utf-8")
        data = json.loads(
            re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)[1]
        )
        if data["states"] != status["task_states"] or data["job"]["items_done"] != status["items_done"]:
            raise BenchError(
                f"the page's counts {data['states']} differ from status's {status['task_states']}"
            )
        size = html.stat().st_size
        for name, rs in runs.items():
            result(
                BENCH,
                contender=name,
                tasks=tasks,
                wall_s=summary([r.wall_s for r in rs]),
                peak_rss_mib=max(mib(r.peak_rss_kib) for r in rs),
                **({"file_bytes": size} if name == "dashboard" else {}),
            )
        med = {name: summary([r.wall_s for r in rs])["median"] for name, rs in runs.items()}
        print(f"file: {size / 1e6:.2f} MB ({size / tasks:.1f} bytes a task); target <= 5 MB", flush=True)
        ratio("dashboard_vs_status", med["dashboard"], med["status"])
        ratio("dashboard_vs_analyze_errors", med["dashboard"], med["analyze-errors"])
        if not args.no_browser:
            renders = first_render(html, args.repeat)
            result(
                BENCH,
                contender="chromium_first_render",
                tasks=tasks,
                wall_s=summary([r["wall_s"] for r in renders]),
                page_s=summary([r["page_s"] for r in renders]),
            )
            first = summary([r["wall_s"] for r in renders])["median"]
            ratio("first_render_vs_status", first, med["status"], target="first render <= 2 s")
        machine(BENCH, "end")
        return 0
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
