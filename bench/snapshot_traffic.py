"""Benchmark: bytes a task's checkpoint snapshots send to the store — segments vs whole-database copies.

Usage: python bench/snapshot_traffic.py [N] [--items-per-s R] [--every-s S] [--dir DIR]
  N: items in ONE task (default 1,000,000; CI runs ~20,000). R: the handler's simulated speed
  (default 1,000 items/s, i.e. 1 ms per item: a 1M-item task runs ~17 minutes). S: the worker's
  snapshot interval (default 30 s, ``checkpoint_s``).

The real worker (``Worker.run_task``, local backend, the ~90-byte rows of ``worker_overhead.py``'s
no-op handler) runs the task in a child process. Time is simulated, not waited for: the handler is
as fast as it is, and a snapshot is taken each time another R x S items have been recorded — where
a handler of R items/s would see ``checkpoint_s`` go by. At each snapshot, in the same run:

* **segments** — what the worker ships: one segment of the runs committed since the previous
  snapshot (``Checkpoint.write_segment``), stored with the store's own ``put_file``; the bytes are
  counted as they are stored.
* **full copy** — the baseline, what a snapshot cost before segments: a consistent copy of the whole
  checkpoint database (SQLite backup API), i.e. ``page_count * page_size`` of the file at that moment
  (checked against a real backup's size at the last snapshot).

Prints both totals, the rows' bytes (what any scheme must ship at least once), and the ratio
segments / full copy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, child_env, machine, ratio, result, run_child
from worker_overhead import TASK, prepare

BENCH = "snapshot_traffic"

_WORKER = r"""
import contextlib, json, sqlite3, sys, time
from pathlib import Path
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.worker import checkpoint
from slurmctl.worker.runtime import Worker

root, job_id, task, every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
backend = open_backend({"kind": "local", "root": root})
# checkpoint_s = 0: the item loop offers a snapshot after every chunk; the wrapper below takes one
# only when `every` more items are recorded (the simulated clock).
w = Worker(backend, job_id, checkpoint_s=0.0)
w.handler()
fig = {"snapshots": 0, "segments": 0, "segment_bytes": 0, "full_copy_bytes": 0, "save_s": 0.0,
       "recorded": 0, "sizes_mib": []}
record_run = checkpoint.Checkpoint.record_run

def counting_record_run(self, first_id, last_id, *rest):
    fig["recorded"] += last_id - first_id + 1
    return record_run(self, first_id, last_id, *rest)

checkpoint.Checkpoint.record_run = counting_record_run
put_file = backend.objects.put_file

def counting_put_file(key, path):
    info = put_file(key, path)
    if key.endswith(".seg"):
        fig["segments"] += 1
        fig["segment_bytes"] += info.size
    return info

backend.objects.put_file = counting_put_file
save = w._save_checkpoint
due = [every]
last = {}

def simulated_save(task_id, ckpt, scratch):
    if fig["recorded"] < due[0]:
        return
    while due[0] <= fig["recorded"]:  # a chunk may span several intervals: one snapshot for them
        due[0] += every
    t = time.perf_counter()
    save(task_id, ckpt, scratch)  # commits what is pending, then ships the new runs
    fig["save_s"] += time.perf_counter() - t
    pages = ckpt.db.execute("PRAGMA page_count").fetchone()[0]
    size = pages * ckpt.db.execute("PRAGMA page_size").fetchone()[0]
    fig["snapshots"] += 1
    fig["full_copy_bytes"] += size
    fig["sizes_mib"].append(round(size / 2**20, 1))
    last["ckpt"], last["scratch"], last["size"] = ckpt, scratch, size

def checked_publish(*args, **kwargs):
    # At the last snapshot's state plus the runs since: one real backup, to check the estimate
    # method (page_count x page_size is what the backup API writes) on this very file.
    ckpt = last.get("ckpt")
    if ckpt is not None:
        ckpt.commit_if_due(force=True)
        pages = ckpt.db.execute("PRAGMA page_count").fetchone()[0]
        size = pages * ckpt.db.execute("PRAGMA page_size").fetchone()[0]
        copy = last["scratch"] / "full-copy.sqlite"
        t = time.perf_counter()
        with contextlib.closing(sqlite3.connect(copy)) as out:
            ckpt.db.backup(out)
        fig["one_full_copy_s"] = time.perf_counter() - t
        fig["estimate_check"] = [size, copy.stat().st_size]
        copy.unlink()
    return publish(*args, **kwargs)

w._save_checkpoint = simulated_save
publish = w._publish
w._publish = checked_publish
t0 = time.perf_counter()
code = w.run_task(task)
fig["seconds"] = time.perf_counter() - t0
done = json.loads(backend.objects.get(keys.done_marker(job_id, task)))
manifest = json.loads(backend.objects.get(done["manifest_key"]))
print(json.dumps({"code": code, "items": manifest["items_ok"], "rows_bytes": manifest["data_bytes"], **fig}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1_000_000, help="items (default 1,000,000)")
    ap.add_argument(
        "--items-per-s", type=float, default=1000.0, help="simulated handler speed (default 1,000)"
    )
    ap.add_argument("--every-s", type=float, default=30.0, help="snapshot interval, s (default 30)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    every = int(args.items_per_s * args.every_s)
    if args.n < 1 or every < 1:
        print("error: N and --items-per-s x --every-s must be at least 1", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir=args.dir))
    machine(BENCH, "start")
    try:
        root, job_id = prepare(work, args.n)
        env = child_env(SLURMCTL_SCRATCH=str(work / "scratch"))
        run = run_child(
            [sys.executable, "-c", _WORKER, str(root), job_id, TASK, str(every)], env=env, label="worker"
        )
        r = run.last_json()
        if r["code"] != 0 or r["items"] != args.n:
            raise BenchError(f"worker run: exit {r['code']}, {r['items']} of {args.n} items ok")
        if r["snapshots"] == 0:
            raise BenchError(f"no snapshot: {args.n} items at {every} items per snapshot; use a larger N")
        estimated, actual = r.get("estimate_check", [0, 0])
        if actual and abs(estimated - actual) > 0.01 * actual:
            raise BenchError(f"full-copy size estimate {estimated} B is off a real backup's {actual} B")
        simulated_s = args.n / args.items_per_s
        result(
            BENCH,
            contender="segments",
            items=args.n,
            simulated_task_s=round(simulated_s),
            snapshots=r["snapshots"],
            segments=r["segments"],
            bytes=r["segment_bytes"],
            rows_bytes=r["rows_bytes"],
            snapshot_s_total=round(r["save_s"], 3),
        )
        result(
            BENCH,
            contender="full_copy",
            items=args.n,
            snapshots=r["snapshots"],
            bytes=r["full_copy_bytes"],
            checkpoint_mib_at_each_snapshot=r["sizes_mib"],
            one_full_copy_s=round(r.get("one_full_copy_s", 0.0), 3),
        )
        mb = 1e6
        print(
            f"{args.n:,} items at a simulated {args.items_per_s:,.0f} items/s "
            f"({simulated_s / 60:.1f} min), a snapshot every {args.every_s:g} s = {every:,} items: "
            f"{r['snapshots']} snapshots; sent to the store: segments {r['segment_bytes'] / mb:,.1f} MB "
            f"({r['segments']} objects; the rows alone are {r['rows_bytes'] / mb:,.1f} MB), "
            f"whole-checkpoint copies {r['full_copy_bytes'] / mb:,.1f} MB; worker run {r['seconds']:.2f} s, "
            f"of which snapshots {r['save_s']:.2f} s"
        )
        ratio("segments_vs_full_copy", r["segment_bytes"], r["full_copy_bytes"], unit="B", target="< 1.00x")
        ratio("segments_vs_rows", r["segment_bytes"], r["rows_bytes"], unit="B", target="~1x (each row once)")
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
