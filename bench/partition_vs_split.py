"""Benchmark: the streaming partitioner against `split -l` on the same JSONL file.

Usage: python bench/partition_vs_split.py [N] [--items-per-batch K] [--dir DIR]
  N: records of ~100 bytes to generate (default 5,000,000; CI runs ~50,000).

Each contender runs in a child process; wall time and the child's peak RSS (getrusage
RUSAGE_CHILDREN ru_maxrss, measured in a fresh intermediate process per contender) are printed.
Baselines, measured in the same run: `split -l K` (no fsync, no validation), and `split -l K` followed
by `sync` of its output files (the durability the partitioner provides). Prints ratios; exits non-zero
only if a contender fails or the outputs differ.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MEASURE = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], check=True)
wall = time.perf_counter() - t0
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

_PARTITION = """
import sys
from pathlib import Path
from slurmctl.partition import partition
s = partition([Path(sys.argv[1])], Path(sys.argv[2]), items_per_batch=int(sys.argv[3]))
print(len(s.batches), s.total_items, file=sys.stderr)
"""

_SPLIT_SYNC = 'split -l "$1" "$2" "$3/x" && sync -- "$3"/x*'


def generate(path: Path, n: int) -> None:
    """Write ``n`` JSONL records of about 100 bytes, deterministically."""
    rnd = random.Random(42)
    cities = [b"Paris", b"Oslo", b"Lima", b"Kyiv", b"Quito"]
    with open(path, "wb") as fh:
        buf = []
        for i in range(n):
            buf.append(
                b'{"id":%d,"name":"user_%06d","score":%.4f,"tags":["a","b"],"ok":true,"city":"%s"}\n'
                % (i, rnd.randrange(10**6), rnd.random(), rnd.choice(cities))
            )
            if len(buf) == 10000:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))


def measure(cmd: list[str]) -> tuple[float, int]:
    """Returns (wall seconds, peak RSS KiB) of ``cmd`` run in a child of a fresh process."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], check=True, capture_output=True, text=True)
    wall, rss = out.stdout.split()
    return float(wall), int(rss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=5_000_000)
    ap.add_argument("--items-per-batch", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    if shutil.which("split") is None:
        print("split (coreutils) is not installed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="partition-bench-", dir=args.dir))
    try:
        src = work / "in.jsonl"
        generate(src, args.n)
        size = src.stat().st_size
        k = str(args.items_per_batch)
        (work / "split").mkdir()
        (work / "split-sync").mkdir()
        subprocess.run(["sync"], check=False)  # start every contender with clean page-cache writeback
        t_split, rss_split = measure(["split", "-l", k, str(src), str(work / "split" / "x")])
        subprocess.run(["sync"], check=False)
        t_sync, _ = measure(["sh", "-c", _SPLIT_SYNC, "sh", k, str(src), str(work / "split-sync")])
        subprocess.run(["sync"], check=False)
        t_part, rss_part = measure([sys.executable, "-c", _PARTITION, str(src), str(work / "part"), k])
        same = b"".join(p.read_bytes() for p in sorted((work / "part").glob("b*.jsonl"))) == src.read_bytes()
        report = {
            "records": args.n,
            "input_mb": round(size / 2**20, 1),
            "items_per_batch": args.items_per_batch,
            "split_s": round(t_split, 3),
            "split_sync_s": round(t_sync, 3),
            "partition_s": round(t_part, 3),
            "ratio_vs_split": round(t_part / t_split, 2),
            "ratio_vs_split_sync": round(t_part / t_sync, 2),
            "partition_mb_per_s": round(size / 2**20 / t_part, 1),
            "partition_peak_rss_mb": round(rss_part / 1024, 1),
            "split_peak_rss_mb": round(rss_split / 1024, 1),
            "output_identical_to_input": same,
        }
        print(json.dumps(report, indent=1))
        print(
            f"partition {t_part:.2f}s = {t_part / t_split:.2f}x split ({t_split:.2f}s), "
            f"{t_part / t_sync:.2f}x split+sync ({t_sync:.2f}s); peak RSS {rss_part / 1024:.0f} MB "
            f"(targets: <=1.5x split, <=100 MB)"
        )
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    t = time.perf_counter()
    rc = main()
    print(f"bench wall time {time.perf_counter() - t:.1f}s", file=sys.stderr)
    sys.exit(rc)
