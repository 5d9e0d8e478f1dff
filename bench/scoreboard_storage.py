#!/usr/bin/env python3
"""Benchmark: bytes on disk for 12 months x 5 clusters x N jobs/month (target: <= 100 MB at 1M jobs).

    bench/scoreboard_storage.py [--jobs 1000000] [--users 2000] [--full-jobs 20000]

Two measurements in one run:
  1. one cluster-month at full size (--jobs): ingest a synthetic month, derive everything, and measure
     each file kind; then extrapolate to 12 months x 5 clusters: per-month files (.state, .bloom,
     monthly rollup) x 60, per-cluster files (user files, leaderboards, tables, totals) x 5, merged x 1.
  2. the real 12 x 5 layout at a small size (--full-jobs per month), measured end to end, as the
     baseline that shows how the per-month files scale (same users, fewer jobs).
The users (Zipf over --users) and job-id gaps come from ``slurmctl.scoreboard.synth``.
"""

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from slurmctl.scoreboard import derive, ingest, layout, store, synth
from slurmctl.scoreboard.config import DEFAULT_BLOOM_FP_RATE
from slurmctl.scoreboard.schemas import DEFAULT_FAILURE_STATES

TARGET_MB = 100.0
MONTHS = [f"2025-{m:02d}" for m in range(12, 13)] + [f"2026-{m:02d}" for m in range(1, 12)]
CLUSTERS = ["hammer", "negishi", "bell", "gautschi", "gilbreth"]


def kind(path: str) -> str:
    if path.endswith(".state"):
        return "month state (.state)"
    if path.endswith(".bloom"):
        return "bloom (.bloom)"
    if "/rollups/monthly/" in path:
        return "monthly rollup"
    if "/agg/users/" in path:
        return "user files"
    if "leaderboards" in path:
        return "leaderboards+tables"
    return "other state"


def sizes(root: str) -> dict:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            k = "merged leaderboards" if p.startswith(os.path.join(root, "leaderboards")) else kind(p)
            out[k] = out.get(k, 0) + os.path.getsize(p)
    return out


ARRAY_SHARE = [synth.DEFAULT_ARRAY_SHARE]
REQUEUE_SHARE = [0.01]


def ingest_month(root: str, cluster: str, month: str, jobs: int, users: int, seed: int, first: int) -> None:
    data = os.path.join(os.path.dirname(root), "month.sacct")
    with open(data, "w", buffering=1 << 20) as fh:
        synth.generate(
            fh,
            jobs,
            month=month,
            n_users=users,
            seed=seed,
            first_job_id=first,
            array_share=ARRAY_SHARE[0],
            requeue_share=REQUEUE_SHARE[0],
        )
    with open(data) as fh:
        ingest.ingest(root, cluster, fh, DEFAULT_FAILURE_STATES)
    os.unlink(data)


def main() -> int:
    ap = argparse.ArgumentParser(description="scoreboard storage benchmark")
    ap.add_argument("--jobs", type=int, default=1000000, help="jobs in the full-size cluster-month")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--full-jobs", type=int, default=20000, help="jobs/month in the real 12 x 5 layout")
    ap.add_argument(
        "--array-share",
        type=float,
        default=ARRAY_SHARE[0],
        help="share of submissions that are job arrays (0: every job independent, the worst case)",
    )
    ap.add_argument(
        "--requeue-share",
        type=float,
        default=REQUEUE_SHARE[0],
        help="share of jobs with earlier runs (State REQUEUED, counted in the month state's runs blob)",
    )
    a = ap.parse_args()
    ARRAY_SHARE[0] = a.array_share
    REQUEUE_SHARE[0] = a.requeue_share
    tmp = tempfile.mkdtemp(prefix="sb-storage-")
    now = datetime.datetime(2026, 11, 30, 12)
    try:
        t = time.time()
        one = os.path.join(tmp, "one")
        ingest_month(one, "hammer", "2026-10", a.jobs, a.users, 1, 10**6)
        derive.derive(one, "hammer", derive.Policy(), now=now)
        s1 = sizes(one)
        print(f"one cluster-month, {a.jobs} jobs, {a.users} users ({time.time() - t:.0f} s):")
        for k in sorted(s1):
            print(f"  {k:24} {s1[k] / 1e6:9.3f} MB")
        h = store.read_header(layout.month_state(one, "hammer", "2026-10"))
        print(
            f"  (month state v{h['version']}: ids {h['ids_bytes'] / 1e6:.3f}"
            f" + totals {h['totals_bytes'] / 1e6:.3f} + days {h['days_bytes'] / 1e6:.3f}"
            f" + runs {h.get('runs_bytes', 0) / 1e6:.3f} MB for {h.get('n_runs', 0)} runs;"
            f" Bloom p = {DEFAULT_BLOOM_FP_RATE})"
        )
        month_kinds = ("month state (.state)", "bloom (.bloom)", "monthly rollup")
        per_month = sum(v for k, v in s1.items() if k in month_kinds)
        per_cluster = sum(v for k, v in s1.items() if k not in month_kinds and k != "merged leaderboards")
        merged = s1.get("merged leaderboards", 0)
        est = 60 * per_month + 5 * per_cluster + merged
        print(
            f"extrapolated 12 months x 5 clusters: 60 x {per_month / 1e6:.2f} MB"
            f" + 5 x {per_cluster / 1e6:.2f} MB"
            f" + {merged / 1e6:.2f} MB = {est / 1e6:.1f} MB"
        )
        print(f"target <= {TARGET_MB:.0f} MB: {est / 1e6 <= TARGET_MB}")
        t = time.time()
        full = os.path.join(tmp, "full")
        for ci, cluster in enumerate(CLUSTERS):
            for mi, month in enumerate(MONTHS):
                ingest_month(full, cluster, month, a.full_jobs, a.users, 100 * ci + mi, 10**6 * (mi + 1))
            derive.derive(full, cluster, derive.Policy(), now=now, write_merged=cluster == CLUSTERS[-1])
        s2 = sizes(full)
        total = sum(s2.values())
        took = time.time() - t
        print(f"real 12 x 5 layout at {a.full_jobs} jobs/month ({took:.0f} s): {total / 1e6:.1f} MB")
        for k in sorted(s2):
            print(f"  {k:24} {s2[k] / 1e6:9.3f} MB")
        small = sum(v for k, v in s2.items() if k in month_kinds) / 60
        print(
            f"per cluster-month: {per_month / 1e6:.3f} MB at {a.jobs} jobs"
            f" vs {small / 1e6:.3f} MB at {a.full_jobs}"
        )
        return 0 if est / 1e6 <= TARGET_MB else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
