"""Aggregation at scale: ``slurmctl results`` (the merge tree) against polars and DuckDB.

    python bench/aggregate_scale.py [--tasks 10000] [--rows 100] [--fan-in 64] [--processes 2]

Publishes a job of TASKS results of ROWS rows each (slurmctl.aggregate.synthetic: the files a run
leaves, JSON lines), then merges them into one Parquet file (zstd) three ways, each in a child
process (wall time, peak RSS of the largest process):

* slurmctl — discovery, the plan, every level (checksums and row counts verified at each);
* polars — ``scan_ndjson(<results>).sink_parquet(...)`` (streaming; verifies nothing);
* DuckDB — ``COPY (SELECT * FROM read_json(<results>)) TO ... (FORMAT parquet)`` (verifies nothing).

The results are JSON lines, so the two baselines read the same files with their JSON readers. Each
output's row count is checked (the benchmark exits 1 if one differs). Also printed: discovery's
requests (listings and reads) per 1,000 results. Figures: RESULT lines; ratios: RATIO lines.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, child_env, machine, mib, ratio, result, run_child

sys.path.insert(0, str(REPO / "src"))

OURS = r"""
import json, sys, time
from pathlib import Path
from slurmctl.aggregate import Settings, aggregate
from slurmctl.aggregate.discover import discover
from slurmctl.storage.local import local_backend
root, out, fan_in, processes = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b = local_backend(root)
t = time.perf_counter()
d = discover(b, "bench")
disc = time.perf_counter() - t
requests = d.requests
del d  # the merge discovers again: one set of sources in memory, as in `slurmctl results`
t = time.perf_counter()
m = aggregate(b, "bench", out, "parquet", settings=Settings(fan_in=fan_in, processes=processes))
print(json.dumps({"seconds": time.perf_counter() - t, "discovery_s": disc, "requests": requests,
                  "rows": m.rows, "levels": m.levels}))
"""

POLARS = r"""
import json, sys, time
import polars as pl
glob, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
pl.scan_ndjson(glob).sink_parquet(out, compression="zstd")
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

DUCKDB = r"""
import json, sys, time
import duckdb
glob, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
duckdb.connect().execute(
    f"COPY (SELECT * FROM read_json('{glob}', format='newline_delimited')) TO '{out}' "
    "(FORMAT parquet, COMPRESSION zstd)"
)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def s3_discovery(work: Path, tasks: int) -> None:
    """Discovery of ``tasks`` results on S3 (a moto server): every botocore request counted."""
    import os
    import uuid

    from dynamo_requests import start_moto

    from slurmctl.aggregate.discover import discover
    from slurmctl.aggregate.synthetic import publish_job
    from slurmctl.storage.aws.bootstrap import ensure_bucket, ensure_tables
    from slurmctl.storage.aws.settings import AwsSettings
    from slurmctl.storage.open import open_backend

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    moto, port = start_moto(work)
    try:
        spec = {
            "kind": "aws",
            "bucket": f"agg-{uuid.uuid4().hex[:8]}",
            "table_prefix": f"agg{uuid.uuid4().hex[:6]}-",
            "region": "us-east-1",
            "endpoint_url": f"http://127.0.0.1:{port}",
        }
        settings = AwsSettings.from_spec(spec)
        ensure_bucket(settings)
        ensure_tables(settings, wait_s=30)
        backend = open_backend(spec)
        publish_job(backend, "s3bench", tasks, 1)
        sent = [0]
        backend.objects.s3.meta.events.register("before-send", lambda **_: sent.__setitem__(0, sent[0] + 1))
        t = time.perf_counter()
        d = discover(backend, "s3bench")
        seconds = time.perf_counter() - t
        result(
            "aggregate_scale",
            contender="discovery_s3",
            tasks=tasks,
            requests=sent[0],
            requests_per_1000=round(sent[0] / tasks * 1000),
            counted_by_discovery=d.requests,
            seconds=round(seconds, 3),
        )
    finally:
        moto.terminate()
        moto.wait(10)


def rows_of(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(str(path)).metadata.num_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--fan-in", type=int, default=256)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="directory to use (default: a temp dir)")
    ap.add_argument(
        "--s3", type=int, default=0, help="also count discovery's S3 requests for N results (moto)"
    )
    args = ap.parse_args()
    from slurmctl.aggregate.synthetic import publish_job
    from slurmctl.storage.local import local_backend

    work = Path(args.work or tempfile.mkdtemp(prefix="agg-bench-"))
    root = work / "root"
    machine("aggregate_scale", "start")
    t = time.perf_counter()
    publish_job(
        local_backend(root, fsync=False),
        "bench",
        args.tasks,
        args.rows,
        lambda task, i: [{"x": i, "y": i * 0.5, "s": f"word{i % 1000}"}],
    )
    print(f"published {args.tasks} results x {args.rows} rows in {time.perf_counter() - t:.1f} s", flush=True)
    expected = args.tasks * args.rows
    glob = str(root / "jobs" / "bench" / "results" / "*" / "a1.jsonl")
    env = child_env()
    runs = {}
    for name, argv in (
        ("slurmctl", [OURS, str(root), str(work / "ours.parquet"), str(args.fan_in), str(args.processes)]),
        ("polars", [POLARS, glob, str(work / "polars.parquet")]),
        ("duckdb", [DUCKDB, glob, str(work / "duckdb.parquet")]),
    ):
        shutil.rmtree(root / "jobs" / "bench" / "aggregate", ignore_errors=True)
        run = run_child([sys.executable, "-c", *argv], env=env, label=name)
        figures = run.last_json()
        rows = rows_of(work / f"{'ours' if name == 'slurmctl' else name}.parquet")
        if rows != expected:
            print(f"{name}: {rows} rows, expected {expected}", file=sys.stderr)
            return 1
        runs[name] = figures
        result(
            "aggregate_scale",
            contender=name,
            tasks=args.tasks,
            rows_per_task=args.rows,
            seconds=round(figures["seconds"], 3),
            tasks_per_min=round(args.tasks / figures["seconds"] * 60),
            peak_rss_mib=mib(run.peak_rss_kib),
            **{k: v for k, v in figures.items() if k != "seconds"},
        )
    ours = runs["slurmctl"]
    print(
        f"discovery: {ours['requests']} requests for {args.tasks} results "
        f"({ours['requests'] / args.tasks * 1000:.0f} per 1,000), {ours['discovery_s']:.2f} s",
        flush=True,
    )
    fastest = min(runs["polars"]["seconds"], runs["duckdb"]["seconds"])
    ratio("slurmctl_vs_fastest_baseline", ours["seconds"], fastest, target="<= 1.5x")
    ratio("slurmctl_vs_polars", ours["seconds"], runs["polars"]["seconds"])
    ratio("slurmctl_vs_duckdb", ours["seconds"], runs["duckdb"]["seconds"])
    if args.s3:
        s3_discovery(work, args.s3)
    machine("aggregate_scale", "end")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
