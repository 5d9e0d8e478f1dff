"""Benchmark: ``analyze-errors`` on a job of 1,000,000 failed items in 20 signatures.

Usage: python bench/analyze_errors.py [ITEMS] [--tasks T] [--repeat R] [--dir DIR]
  ITEMS: failed items (default 1,000,000; CI runs ~20,000). T: tasks (default 1,000). R: runs per
  contender (default 3). DIR: the work directory, kept; a DIR an earlier run built is used again
  (ITEMS and T must be the same).

Set-up (not timed): ``slurmctl submit --dry-run`` of an ITEMS-record input in T tasks on the local
backend (the real coordinator: job record, task manifests, task records); then every task is given a
published attempt in which every item failed — its ``a1.errors.jsonl`` written in the worker's
format (``Checkpoint.iter_errors`` fields), a result manifest and the ``.done`` marker — and its
record is moved to succeeded. Item ``n`` fails with signature ``n % 20``: 20 templates of real
formatted tracebacks (raised through a generated handler module, 1-3 frames deep, some through the
standard library; the frames formatted once per signature, the exception's lines per item) whose
messages hold the item's numbers, ids, paths, hex, URLs and quoted strings; the categories are what
the classification table says for each exception. About 0.6 KB per record.

Contenders, each in its own child process, alternating, same run, page cache warm for all:

* **analyze()** — ``slurmctl.failures.analyze.analyze`` timed in the child after its imports (the
  listing, the markers, every error file streamed and grouped, the task records scanned); the child's
  wall time (interpreter start-up included) is reported too. Its groups are checked: exactly 20, each
  with ITEMS/20 items in T tasks, masked as expected. Target: <= 5 s.
* **json.loads** (baseline) — a bare script: ``json.loads`` of every line of the same error files,
  counted by ``type`` (the least any reader of these files does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

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

BENCH = "analyze_errors"
SIGNATURES = 20

# A handler module: raise_<k>(n) raises signature k's exception for item n, from 1-3 frames deep.
HANDLER = """
import errno, hashlib, json, urllib.error

class RemoteError(Exception):
    pass

def _parse(text):
    return json.loads(text)

def _fetch(n):
    url = f"https://api.example.com/v1/items/{n}"
    raise urllib.error.HTTPError(url, 503, "Service Unavailable", {}, None)

def _deep(n):
    return _deeper(n)

def _deeper(n):
    raise RemoteError(f"upstream {n} answered 0x{n * 7:08x}")

def raise_0(n): raise ValueError(f"bad record {n}: field 'price' is {n * 3}")
def raise_1(n): raise KeyError(f"field_{n % 7}")
def raise_2(n): raise ConnectionResetError(errno.ECONNRESET, f"connection reset by 10.0.{n % 256}.{n % 13}")
def raise_3(n): _fetch(n)
def raise_4(n): raise FileNotFoundError(errno.ENOENT, "No such file", f"/data/shard-{n % 100}/doc-{n}.json")
def raise_5(n): raise TimeoutError(f"read timed out after {n % 30}.5 s")
def raise_6(n): return n / 0
def raise_7(n): return n + "x"
def raise_8(n): raise MemoryError()
def raise_9(n): _parse("{" + str(n))
def raise_10(n): _deep(n)
def raise_11(n): raise PermissionError(errno.EACCES, "Permission denied", f"/scratch/u{n % 50}/out")
def raise_12(n): raise OSError(errno.ENOSPC, "No space left on device", f"/tmp/item{n}")
def raise_13(n): raise RuntimeError(f"worker {n % 9} saw state {n} for 123e4567-e89b-12d3-a456-{n:012d}")
def raise_14(n): raise AssertionError(f"expected {n} rows, got {n + 1}")
def raise_15(n): raise IndexError(f"list index {n} out of range")
def raise_16(n): raise UnicodeDecodeError("utf-8", bytes([255, n % 256]), 0, 1, "invalid start byte")
def raise_17(n): raise ValueError(f"sha {hashlib.sha1(str(n).encode()).hexdigest()} does not match")
def raise_18(n): raise LookupError(f'no entry "{n}-{n % 3}" in table t{n % 11}')
def raise_19(n): raise NotImplementedError(f"format v{n % 4} of item {n}")
"""

_BASELINE = r"""
import json, os, sys, time
from collections import Counter
base = sys.argv[1]
t0, c0 = time.perf_counter(), time.process_time()
counts = Counter()
for entry in os.scandir(base):
    path = os.path.join(entry.path, "a1.errors.jsonl")
    with open(path, "rb") as f:
        for line in f:
            counts[json.loads(line)["type"]] += 1
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu, "records": sum(counts.values()), "types": len(counts)}))
"""

_ANALYZE = r"""
import json, sys, time
from slurmctl.failures.analyze import analyze
from slurmctl.storage.open import open_backend
backend = open_backend({"kind": "local", "root": sys.argv[1]})
t0, c0 = time.perf_counter(), time.process_time()
a = analyze(backend, sys.argv[2])
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
groups = [[g.category, g.type, g.message, g.frame, g.count, g.items, g.tasks] for g in a.groups]
print(json.dumps({"seconds": seconds, "cpu": cpu, "failed_items": a.failed_items, "groups": groups}))
"""


def templates(work: Path) -> list[tuple[str, Any, str]]:
    """Per signature: (category, raiser of item n, the frames of its traceback). The frames are the
    same for every item of a signature (formatting them, with Python 3.11's carets, costs ~0.1 ms
    a record); the exception's own lines are formatted per item."""
    sys.path.insert(0, str(work))
    import bench_handler  # type: ignore[import-not-found]

    from slurmctl.failures.classify import classify_exception

    out = []
    for k in range(SIGNATURES):
        fn = getattr(bench_handler, f"raise_{k}")
        try:
            fn(0)
        except Exception as exc:
            full = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
            own = "".join(traceback.format_exception_only(type(exc), exc))
            out.append((classify_exception(exc).category, fn, full[: len(full) - len(own)]))
    return out


def record(n: int, category: str, fn: Any, frames: str) -> dict[str, Any]:
    """Item n's failure record, as the worker writes it."""
    try:
        fn(n)
    except Exception as exc:
        return {
            "item_id": n,
            "category": category,
            "type": type(exc).__name__,
            "message": str(exc)[:2000],
            "traceback": frames + "".join(traceback.format_exception_only(type(exc), exc)),
            "attempt": 1,
            "host": f"node{n % 16:02d}",
            "slurm_job_id": str(90000 + n // 1000),
            "at": 1.7e9 + n / 1000,
        }
    raise BenchError(f"signature of item {n} did not raise")


def build(work: Path, items: int, tasks: int) -> tuple[Path, str]:
    """The job (see the module docstring). Returns (root, job id)."""
    from slurmctl.model.core import TaskStatus
    from slurmctl.model.manifests import DoneMarker, ResultManifest
    from slurmctl.model.states import TaskState
    from slurmctl.storage import keys
    from slurmctl.storage.open import open_backend

    (work / "bench_handler.py").write_text(HANDLER)
    (work / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    with open(work / "in.jsonl", "w") as f:
        f.writelines(f'{{"n": {i}}}\n' for i in range(items))
    per = -(-items // tasks)
    (work / "job.yaml").write_text(
        "name: bench-errors\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
        f"batch: {{items: {per}}}\n"
    )
    root = work / "root"
    job_id = dry_run_submit(work, root)
    backend = open_backend({"kind": "local", "root": str(root)})
    sigs = templates(work)
    first = 0
    t = 0
    while first < items:
        tid = f"t{t:07d}"
        last = min(first + per, items)
        path = root / keys.result_errors(job_id, tid, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            for n in range(first, last):
                f.write(json.dumps(record(n, *sigs[n % SIGNATURES])) + "\n")
        mkey = keys.result_manifest(job_id, tid, 1)
        manifest = ResultManifest(
            job_id=job_id,
            task_id=tid,
            attempt=1,
            data_key=keys.result_data(job_id, tid, 1),
            data_sha256="0" * 64,
            data_bytes=0,
            rows=0,
            errors_key=keys.result_errors(job_id, tid, 1),
            items=last - first,
            items_ok=0,
            items_failed=last - first,
            first_item=first,
            batch_sha256="0" * 64,
            started_at=0.0,
            finished_at=0.0,
            handler_seconds=0.0,
            worker="bench",
        )
        (root / mkey).write_bytes(manifest.to_json())
        (root / keys.result_data(job_id, tid, 1)).write_bytes(b"")
        marker = DoneMarker(task_id=tid, attempt=1, manifest_key=mkey, manifest_sha256="0" * 64)
        (root / keys.done_marker(job_id, tid)).write_bytes(marker.to_json())
        st = TaskStatus(
            task_id=tid,
            state=TaskState.SUCCEEDED,
            attempt=1,
            items_total=last - first,
            items_done=last - first,
            items_failed=last - first,
        )
        rec = backend.state.get(keys.TASKS_TABLE, keys.task_state(job_id, tid))
        backend.state.compare_and_set(
            keys.TASKS_TABLE, keys.task_state(job_id, tid), st.model_dump(mode="json"), rec.version
        )
        first, t = last, t + 1
    return root, job_id


def check(out: dict, items: int, tasks: int) -> None:
    """The groups analyze() found must be exactly the 20 signatures built. Raises BenchError."""
    groups = out["groups"]
    if out["failed_items"] != items or len(groups) != SIGNATURES:
        raise BenchError(
            f"expected {items} items in {SIGNATURES} groups, found {out['failed_items']} in {len(groups)}"
        )
    counts = sorted(g[4] for g in groups)
    want = sorted(items // SIGNATURES + (1 if k < items % SIGNATURES else 0) for k in range(SIGNATURES))
    if counts != want:
        raise BenchError(f"group sizes {counts}, expected {want}")
    per = -(-items // tasks)
    if per >= SIGNATURES and any(g[6] != -(-items // per) for g in groups):
        raise BenchError(f"tasks per group: {[g[6] for g in groups]}")
    frames = {g[3].rpartition("/")[2] for g in groups}
    if not all(f.startswith("bench_handler.py:") for f in frames):
        raise BenchError(f"handler frames: {sorted(frames)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("items", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, help="work directory, kept and reused (default: a temporary one)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    return run_in_workdir(BENCH, args.dir, "bench-errors-", lambda work: measure(args, work))


def measure(args: argparse.Namespace, work: Path) -> None:
    """The run itself, in ``work``. Raises BenchError."""
    t0 = time.perf_counter()
    if (work / "root" / "jobs").is_dir():  # --dir of an earlier run: its job is used again
        root = work / "root"
        (job_id,) = [p.name for p in (root / "jobs").iterdir()]
    else:
        root, job_id = build(work, args.items, args.tasks)
    size = sum(p.stat().st_size for p in (root / "jobs" / job_id / "results").rglob("*.errors.jsonl"))
    print(
        f"set-up: {args.items:,} failed items in {args.tasks:,} tasks, {size / 2**20:.0f} MiB of "
        f"error files, {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    env = child_env()
    base = root / "jobs" / job_id / "results"
    times: dict[str, list[float]] = {
        "analyze": [],
        "analyze_cpu": [],
        "analyze_wall": [],
        "json_loads": [],
        "json_loads_cpu": [],
    }
    rss: list[float] = []
    for _ in range(args.repeat):
        run = run_child([sys.executable, "-c", _ANALYZE, str(root), job_id], env=env, label="analyze")
        out = run.last_json()
        check(out, args.items, args.tasks)
        times["analyze"].append(out["seconds"])
        times["analyze_cpu"].append(out["cpu"])
        times["analyze_wall"].append(run.wall_s)
        rss.append(mib(run.peak_rss_kib))
        run = run_child([sys.executable, "-c", _BASELINE, str(base)], env=env, label="json.loads")
        base_out = run.last_json()
        if base_out["records"] != args.items:
            raise BenchError(f"baseline read {base_out['records']} records, expected {args.items}")
        times["json_loads"].append(base_out["seconds"])
        times["json_loads_cpu"].append(base_out["cpu"])
    for name, values in times.items():
        result(
            BENCH,
            contender=name,
            items=args.items,
            tasks=args.tasks,
            mib=round(size / 2**20),
            seconds=summary(values),
        )
    result(BENCH, contender="analyze_peak_rss", items=args.items, peak_rss_mib=max(rss))
    a = summary(times["analyze"])["median"]
    b = summary(times["json_loads"])["median"]
    ratio("analyze_vs_json_loads", a, b)
    ratio(
        "analyze_cpu_vs_json_loads_cpu",
        summary(times["analyze_cpu"])["median"],
        summary(times["json_loads_cpu"])["median"],
    )
    ratio("analyze_vs_5s_target", a, 5.0, target="<= 1.0x (5 s for 1M items)")


if __name__ == "__main__":
    sys.exit(main())
