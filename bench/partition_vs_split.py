"""Benchmark: the streaming partitioner against `split -l` on the same JSONL file.

Usage: python bench/partition_vs_split.py [N] [--items-per-batch K] [--repeat R] [--dir DIR]
                                          [--workers W] [--python-scanner] [--compare-src DIR]
  N: records of ~100 bytes to generate (default 5,000,000; CI runs ~50,000).
  --workers W: the partitioner's ``workers`` option (default: its own default).
  --python-scanner: also run the partitioner with its pure-Python scanner (as without a C compiler).
  --compare-src DIR: also run the partitioner from another source tree (a "before" contender, e.g.
      ``git archive <commit> src | tar -x -C /tmp/before`` then ``--compare-src /tmp/before/src``).

Contenders:
  * ``partition``: what ``slurmctl submit`` does on the local backend (``input.staging: auto``, which
    is reference there): clean batches are byte ranges of the input, validated and hashed, not copied.
  * ``partition_copy``: ``input.staging: copy`` (as on a remote backend): every batch a file, written
    temp -> fsync -> rename.
  * ``split -l K`` (no fsync, no validation, no checksum), and ``split -l K`` followed by ``sync`` of its
    output files (the durability ``partition_copy`` provides).

Contenders run alternately, R times each (the median is reported), in an order rotated by one each
repetition, each in a child of a fresh measuring process: wall time, CPU time (user + system of the
contender and all its children: sync, workers) and peak RSS. Peak RSS is the largest single process's
(getrusage RUSAGE_CHILDREN ru_maxrss); the partitioner also reports the sum over its own processes
(VmHWM of the main process + its workers). The 1-minute load average after each run is recorded too.

Outputs are deleted only at the end of a repetition, and the order rotates, so that no contender always
runs right after the same one or right after a deletion of thousands of files (file creation cost on
this shared ext4 varies 3x from minute to minute; a fixed order would put any systematic part of that
on one contender). Use an R that is a multiple of the number of contenders (4, 5 with one of the
optional ones) so that each runs first equally often.

Every partition's output is checked: its batches, read through the batch log (files, or the input
ranges references name), must each match their sha256 and concatenate to the input. Prints RESULT and
RATIO lines (bench/common.py); exits non-zero only if a contender fails or an output differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, ratio, result

BENCH = "partition_vs_split"

_MEASURE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[2:], env=json.loads(sys.argv[1]), capture_output=True, text=True)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_kib": ru.ru_maxrss,
                  "returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr}))
"""

_PARTITION = """
import json, re, sys
from pathlib import Path
from slurmctl.partition import jsonl, partition
kw = {"items_per_batch": int(sys.argv[3])}
if sys.argv[4] != "default":
    kw["workers"] = int(sys.argv[4])
if sys.argv[5] == "reference":
    kw["reference"] = True
if sys.argv[6] == "python":
    jsonl._scan = None
s = partition([Path(sys.argv[1])], Path(sys.argv[2]), **kw)
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"batches": len(s.batches), "items": s.total_items, "main_hwm_kib": hwm}))
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


def measure(cmd: list[str], env: dict[str, str]) -> dict:
    """Returns {wall_s, cpu_s, peak_rss_kib, stdout, ...} of ``cmd`` run in a child of a fresh process.

    Raises: SystemExit naming the command when it fails."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(env), *cmd], check=True, capture_output=True, text=True
    )
    run = json.loads(out.stdout)
    if run["returncode"] != 0:
        raise SystemExit(f"{cmd[0]} failed ({run['returncode']}):\n{run['stderr'][-3000:]}")
    return run


def concat_digest(paths: list[Path]) -> str:
    """Returns the sha256 of the files' bytes concatenated, read in 1 MiB chunks (bounded memory)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def batches_digest(out: Path) -> str:
    """Returns the sha256 of the partition's batches concatenated in order, read from its batch log:
    a batch file's bytes, or for a reference batch the input bytes it names."""
    h = hashlib.sha256()
    for line in (out / "_batches.jsonl").read_bytes().splitlines():
        b = json.loads(line)
        if b.get("ref_path"):
            with open(b["ref_path"], "rb") as fh:
                fh.seek(b["ref_offset"])
                data = fh.read(b["bytes"])
        else:
            data = (out / f"{b['batch_id']}.jsonl").read_bytes()
        if hashlib.sha256(data).hexdigest() != b["sha256"]:
            raise SystemExit(f"{out}: batch {b['batch_id']} does not match its sha256")
        h.update(data)
    return h.hexdigest()


def _env(src: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=5_000_000)
    ap.add_argument("--items-per-batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", default="default", help="partition(workers=...), default: its default")
    ap.add_argument("--compare-src", type=Path, default=None, help="also run the partitioner from here")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument(
        "--python-scanner", action="store_true", help="also run the pure-Python scanner (no C extension)"
    )
    args = ap.parse_args()
    if args.n < 1 or args.repeat < 1 or args.items_per_batch < 1:
        print("N, --repeat and --items-per-batch must be positive", file=sys.stderr)
        return 2
    if shutil.which("split") is None:
        print("split (coreutils) is not installed", file=sys.stderr)
        return 2
    machine(BENCH, "start")
    work = Path(tempfile.mkdtemp(prefix="partition-bench-", dir=args.dir))
    try:
        src = work / "in.jsonl"
        generate(src, args.n)
        size = src.stat().st_size
        want = concat_digest([src])
        k = str(args.items_per_batch)
        contenders: dict[str, tuple[list[str], dict[str, str], str]] = {
            "split": (["split", "-l", k, str(src), "{out}/x"], dict(os.environ), "x*"),
            "split+sync": (["sh", "-c", _SPLIT_SYNC, "sh", k, str(src), "{out}"], dict(os.environ), "x*"),
            # what `slurmctl submit` does on the local backend (input.staging: auto -> reference)
            "partition": (
                [sys.executable, "-c", _PARTITION, str(src), "{out}", k, args.workers, "reference", "c"],
                _env(str(REPO / "src")),
                "",
            ),
            # input.staging: copy (every batch a durable file), as on a remote backend
            "partition_copy": (
                [sys.executable, "-c", _PARTITION, str(src), "{out}", k, args.workers, "copy", "c"],
                _env(str(REPO / "src")),
                "",
            ),
        }
        if args.python_scanner:
            contenders["partition_python"] = (
                [sys.executable, "-c", _PARTITION, str(src), "{out}", k, args.workers, "reference", "python"],
                _env(str(REPO / "src")),
                "",
            )
        if args.compare_src:
            contenders["partition_before"] = (
                [sys.executable, "-c", _PARTITION, str(src), "{out}", k, "default", "copy", "c"],
                _env(str(args.compare_src.resolve())),
                "",
            )
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        names = list(contenders)
        for rep in range(args.repeat):
            outs = []
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                argv, env, pattern = contenders[name]
                out = work / f"{name}-{rep}"
                out.mkdir()
                outs.append(out)
                subprocess.run(["sync"], check=False)  # every contender starts with clean writeback
                run = measure([a.replace("{out}", str(out)) for a in argv], env)
                got = batches_digest(out) if not pattern else concat_digest(sorted(out.glob(pattern)))
                if got != want:
                    print(f"{name}: the output files do not concatenate to the input", file=sys.stderr)
                    return 1
                if name.startswith("partition"):
                    run.update(json.loads(run["stdout"].strip().splitlines()[-1]))
                run["load1"] = os.getloadavg()[0]
                runs[name].append(run)
            for out in outs:  # see the docstring: never between two contenders of a repetition
                shutil.rmtree(out)
        med = {
            n: {f: statistics.median(r[f] for r in rs) for f in ("wall_s", "cpu_s")} for n, rs in runs.items()
        }
        for name, rs in runs.items():
            result(
                BENCH,
                contender=name,
                records=args.n,
                input_mib=round(size / 2**20, 1),
                items_per_batch=args.items_per_batch,
                repeat=args.repeat,
                wall_s=round(med[name]["wall_s"], 3),
                wall_s_all=[round(r["wall_s"], 3) for r in rs],
                load1_all=[round(r["load1"], 2) for r in rs],
                cpu_s=round(med[name]["cpu_s"], 3),
                peak_rss_mib=round(max(r["peak_rss_kib"] for r in rs) / 1024, 1),
                **(
                    {"main_peak_rss_mib": round(max(r["main_hwm_kib"] for r in rs) / 1024, 1)}
                    if name.startswith("partition")
                    else {}
                ),
                mib_per_s=round(size / 2**20 / med[name]["wall_s"], 1),
            )
        part = med["partition"]
        copy = med["partition_copy"]
        ratio("partition_vs_split", part["wall_s"], med["split"]["wall_s"], target="<= 1.5x")
        ratio("partition_cpu_vs_split_cpu", part["cpu_s"], med["split"]["cpu_s"])
        ratio("partition_copy_vs_split", copy["wall_s"], med["split"]["wall_s"])
        ratio("partition_copy_vs_split_sync", copy["wall_s"], med["split+sync"]["wall_s"])
        if "partition_python" in med:
            ratio("partition_vs_python_scanner", part["wall_s"], med["partition_python"]["wall_s"])
        if "partition_before" in med:
            ratio("partition_vs_before", part["wall_s"], med["partition_before"]["wall_s"])
        print(
            f"partition {part['wall_s']:.2f}s wall, {part['cpu_s']:.2f}s CPU = "
            f"{part['wall_s'] / med['split']['wall_s']:.2f}x split ({med['split']['wall_s']:.2f}s wall, "
            f"{med['split']['cpu_s']:.2f}s CPU), {part['wall_s'] / med['split+sync']['wall_s']:.2f}x "
            f"split+sync ({med['split+sync']['wall_s']:.2f}s); peak RSS "
            f"{max(r['peak_rss_kib'] for r in runs['partition']) / 1024:.0f} MB "
            "(targets: <=1.5x split, <=100 MB); copying: "
            f"{copy['wall_s']:.2f}s wall = {copy['wall_s'] / med['split+sync']['wall_s']:.2f}x split+sync"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()
        machine(BENCH, "end")


if __name__ == "__main__":
    t = time.perf_counter()
    rc = main()
    print(f"bench wall time {time.perf_counter() - t:.1f}s", file=sys.stderr)
    sys.exit(rc)
