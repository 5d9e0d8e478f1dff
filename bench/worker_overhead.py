"""Benchmark: the real worker against a bare Python loop, N items through a no-op handler.

Usage: python bench/worker_overhead.py [N] [--repeat R] [--dir DIR] [--profile]
(the same script measures the overhead of logs and metrics: contender "worker, logs and metrics off")
  N: items in ONE task (default 1,000,000; CI runs ~20,000). R: runs per contender (default 3).

Contenders, each in its own child process, alternating, all in the same run:

* **worker** — ``Worker.run_task`` of a job prepared by ``slurmctl submit --dry-run`` on the local backend
  (claim, checkpoint in SQLite on scratch, handler per item, publish rows + manifest + .done). Timed inside
  the child around ``run_task`` only (the handler is imported before): its processing, not Python start-up.
  The ``_process`` (item loop) and ``_publish`` parts are timed separately by wrapping the two methods.
  The job's one batch is a reference batch (``input.staging: auto``): the worker copies its bytes out of
  the input to scratch and checks their sha256, inside the timed part.
* **worker, logs and metrics off** — the same, with ``Worker(observe=False)`` and no log handler
  configured: no task log, no metrics summary, no store-call counting. The **worker** contender runs
  as ``python -m slurmctl.worker`` does: JSON log lines on stderr at level info, the task's log (live
  file, then gzipped and stored) and its metrics summary. Their ratio is the observability overhead
  (target <= 1.02x), both measured alternately in the same run.
* **bare** — the baseline: read the same batch bytes (the input file), ``json.loads`` each line, call the
  same handler,
  ``json.dumps`` the same row (with ``_item_id``) and insert it into ONE SQLite file in ONE transaction.
  Timed inside the child around that loop.
* **bare, same codec** — the bare loop with the worker's own JSON codec (``runtime._decode_line`` /
  ``_row_encoder``): the framework's own overhead, codec aside.
* **worker CLI** (once) — ``python -m slurmctl worker --task`` end to end, start-up included, against the
  bare script end to end (also start-up included).

The rows the worker publishes are checked against every bare loop's as JSON values, and byte-for-byte
against the bare loop that uses the worker's codec (the RESULT line says whether they are also
byte-identical to ``json.dumps``, which they are not once the worker uses msgspec: ``{"a":1}``).
Prints items/s, ratios worker/bare (targets: >= 200k items/s, <= 1.3x both bare loops) and peak RSS (the
worker's is read inside the child when ``run_task`` returns, before the checks above read the rows back).
``--profile`` also runs the worker once under cProfile and prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, child_env, dry_run_submit, machine, mib, ratio, result, run_child, summary

BENCH = "worker_overhead"
HANDLER = "def handle(r, ctx):\n    return r\n"
TASK = "t0000000"

_BARE = r"""
import hashlib, json, sqlite3, sys, time
sys.path.insert(0, sys.argv[3])
from noop import handle
batch, out, fast = sys.argv[1], sys.argv[2], sys.argv[4] == "fast"
first = 0
dumps, loads = json.dumps, json.loads
if fast:  # the worker's own codec (whatever runtime.py uses: json shortcuts or msgspec)
    from slurmctl.worker import runtime
    dumps = runtime._row_encoder()
    if isinstance(dumps({}), bytes):  # sqlite3 binds str (TEXT) ~25% faster than bytes: the faster baseline
        _encode_bytes = dumps
        dumps = lambda obj: _encode_bytes(obj).decode()
    loads = getattr(runtime, "_decode_line", None) or getattr(runtime, "_load_line", None) or json.loads
t0 = time.perf_counter()
db = sqlite3.connect(out, isolation_level=None)
db.execute("CREATE TABLE items (item_id INTEGER PRIMARY KEY, ok INTEGER, nrows INTEGER, rows TEXT NOT NULL)")

def rows():
    with open(batch, "rb") as f:
        for k, line in enumerate(f):
            r = handle(loads(line), None)
            r["_item_id"] = first + k
            yield (first + k, 1, 1, dumps(r))

db.execute("BEGIN")
db.executemany("INSERT INTO items VALUES (?,?,?,?)", rows())
db.execute("COMMIT")
db.close()
seconds = time.perf_counter() - t0
h, canon = hashlib.sha256(), hashlib.sha256()
with __import__("contextlib").closing(sqlite3.connect(out)) as db:
    n = 0
    for (text,) in db.execute("SELECT rows FROM items ORDER BY item_id"):
        text = text.encode() if isinstance(text, str) else text  # the worker's encoder may give bytes
        h.update(text + b"\n")
        canon.update(json.dumps(json.loads(text), sort_keys=True).encode() + b"\n")
        n += 1
print(json.dumps({"seconds": seconds, "items": n, "rows_sha256": h.hexdigest(),
                  "canonical_sha256": canon.hexdigest()}))
"""

_WORKER = r"""
import cProfile, hashlib, json, pstats, resource, sys, time
from slurmctl.storage import keys
from slurmctl.storage.open import open_backend
from slurmctl.worker.runtime import Worker
root, job_id, task = sys.argv[1], sys.argv[2], sys.argv[3]
profile, observe = sys.argv[4] == "1", sys.argv[5] == "1"
backend = open_backend({"kind": "local", "root": root})
if observe:  # as python -m slurmctl.worker does
    import logging
    from slurmctl.obs.logs import configure
    configure(logging.INFO)
w = Worker(backend, job_id, observe=observe)
w.handler()  # import the handler outside the timed region
parts = {"process_s": 0.0, "publish_s": 0.0, "obs_s": 0.0}

def timed(name, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            parts[name] += time.perf_counter() - t
    return wrapper

w._process = timed("process_s", w._process)
w._publish = timed("publish_s", w._publish)
# The time spent in the task's log and metrics themselves (nothing of them runs per item).
from slurmctl.worker import runtime
from slurmctl.obs.metrics import TaskMetrics
for cls, name in ((runtime._TaskObs, "__init__"), (runtime._TaskObs, "publish"), (runtime._TaskObs, "end"),
                  (TaskMetrics, "summary"), (runtime.Worker, "queue_wait_s")):
    setattr(cls, name, timed("obs_s", getattr(cls, name)))
prof = cProfile.Profile() if profile else None
ru0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
if prof:
    prof.enable()
code = w.run_task(task)
if prof:
    prof.disable()
seconds = time.perf_counter() - t0
ru1 = resource.getrusage(resource.RUSAGE_SELF)
cpu_s = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the checks below read the rows
if prof:
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
done = json.loads(backend.objects.get(keys.done_marker(job_id, task)))
manifest = json.loads(backend.objects.get(done["manifest_key"]))
canon = hashlib.sha256()  # the rows as values, independent of the codec's spacing
for line in backend.objects.get(manifest["data_key"]).splitlines():
    canon.update(json.dumps(json.loads(line), sort_keys=True).encode() + b"\n")
assert (manifest["log_key"] is not None) == observe and (manifest["metrics_key"] is not None) == observe
print(json.dumps({"code": code, "seconds": seconds, "cpu_s": cpu_s, **parts, "items": manifest["items_ok"],
                  "rows": manifest["rows"], "rows_sha256": manifest["data_sha256"],
                  "canonical_sha256": canon.hexdigest(), "handler_s": manifest["handler_seconds"],
                  "peak_rss_kib": peak_rss_kib}))
"""


def generate(path: Path, n: int) -> None:
    """Write ``n`` JSONL records of about 80 bytes, deterministically."""
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 10_000):
            f.write(
                "".join(
                    f'{{"id": {i}, "name": "user_{i % 99991:06d}", "score": {(i * 7919) % 1000 / 7:.4f}, '
                    f'"ok": true}}\n'
                    for i in range(start, min(start + 10_000, n))
                )
            )


def prepare(work: Path, n: int) -> tuple[Path, str]:
    """Partition the input into one task with the real CLI (``submit --dry-run``); return (root, job id)."""
    (work / "noop.py").write_text(HANDLER)
    generate(work / "in.jsonl", n)
    (work / "job.yaml").write_text(
        "name: bench-overhead\ninput: {path: in.jsonl}\nhandler: {function: 'noop:handle'}\n"
        f"batch: {{items: {n}}}\noutput: {{format: jsonl}}\n"
    )
    root = work / "root0"
    job_id = dry_run_submit(work, root)
    return root, job_id


def fresh_root(root0: Path, dest: Path) -> Path:
    """A copy of the prepared job (each worker run needs an unclaimed task)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(root0, dest)
    return dest


def _run_worker(work: Path, root0: Path, job_id: str, env: dict[str, str], observe: str, n: int) -> dict:
    """One worker run on a fresh copy of the job, logs and metrics on ("1") or off ("0")."""
    root = fresh_root(root0, work / "root")
    run = run_child(
        [sys.executable, "-c", _WORKER, str(root), job_id, TASK, "0", observe],
        env=env,
        label="worker" if observe == "1" else "worker (logs and metrics off)",
    )
    w = run.last_json()
    if w["code"] != 0 or w["items"] != n:
        raise BenchError(f"worker run: exit {w['code']}, {w['items']} of {n} items ok")
    return w


def _observability_report(
    n: int, repeat: int, on: dict[str, list[float]], off: dict[str, list[float]]
) -> None:
    """The RESULT and RATIO lines of logs and metrics on vs off: wall time and CPU time (best and
    median), and the time spent inside the task's log and metrics code in the "on" runs."""
    med = statistics.median

    def pct(key: str, pick: Any) -> float:
        return round(100 * (pick(on[key]) / pick(off[key]) - 1), 2)

    share = med([o / s for o, s in zip(on["obs_s"], on["seconds"], strict=True)])
    result(
        BENCH,
        contender="worker_observability_off",
        items=n,
        seconds=summary(off["seconds"]),
        cpu_s=summary(off["cpu_s"]),
        items_per_s=round(n / min(off["seconds"])),
    )
    result(
        BENCH,
        contender="worker_observability_on",
        items=n,
        seconds=summary(on["seconds"]),
        cpu_s=summary(on["cpu_s"]),
        obs_s=summary(on["obs_s"]),
        obs_share_pct=round(100 * share, 3),
        wall_overhead_pct_best=pct("seconds", min),
        wall_overhead_pct_median=pct("seconds", med),
        cpu_overhead_pct_best=pct("cpu_s", min),
        cpu_overhead_pct_median=pct("cpu_s", med),
    )
    ratio("worker_observability_on_vs_off", min(on["seconds"]), min(off["seconds"]), target="<= 1.02x")
    ratio("worker_observability_on_vs_off_cpu", min(on["cpu_s"]), min(off["cpu_s"]), target="<= 1.02x")
    print(
        f"logs and metrics, {n:,} items, {repeat} runs each: wall {pct('seconds', min):+.2f} % (best), "
        f"{pct('seconds', med):+.2f} % (median); CPU {pct('cpu_s', min):+.2f} % (best), "
        f"{pct('cpu_s', med):+.2f} % (median); inside the log and metrics code: "
        f"{1000 * med(on['obs_s']):.1f} ms per task = {100 * share:.3f} % of the task (median)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1_000_000, help="items (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender (default 3)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--profile", action="store_true", help="also profile one worker run (cProfile)")
    ap.add_argument(
        "--observability-only",
        action="store_true",
        help="only the worker with logs and metrics on vs off (no bare loops, no end-to-end run)",
    )
    args = ap.parse_args()
    if args.n < 1 or args.repeat < 1:
        print("error: N and --repeat must be positive", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="worker-bench-", dir=args.dir))
    machine(BENCH, "start")
    try:
        root0, job_id = prepare(work, args.n)
        batch = root0 / "jobs" / job_id / "batches" / "b0000000.jsonl"
        if not batch.exists():  # a reference batch (input.staging: auto): the input's own bytes
            batch = work / "in.jsonl"
        env = child_env(SLURMCTL_SCRATCH=str(work / "scratch"))
        worker_s: list[float] = []
        on: dict[str, list[float]] = {"seconds": [], "cpu_s": [], "obs_s": []}
        off: dict[str, list[float]] = {"seconds": [], "cpu_s": [], "obs_s": []}
        process_s: list[float] = []
        publish_s: list[float] = []
        bare_s: list[float] = []
        fast_s: list[float] = []
        rss_worker = rss_bare = 0
        canon: set[str] = set()  # rows as values: every contender
        raw: dict[str, set[str]] = {"plain": set(), "fast": set(), "worker": set()}  # rows as text
        if args.observability_only:
            for k in range(args.repeat):
                for observe in ("1", "0") if k % 2 == 0 else ("0", "1"):  # who goes first alternates
                    w = _run_worker(work, root0, job_id, env, observe, args.n)
                    raw["worker"].add(w["rows_sha256"])
                    for key, values in (on if observe == "1" else off).items():
                        values.append(w[key])
            if len(raw["worker"]) != 1:
                raise BenchError(f"the worker's rows differ with logs and metrics on and off: {raw}")
            _observability_report(args.n, args.repeat, on, off)
            machine(BENCH, "end")
            return 0
        for k in range(args.repeat):
            for codec, times in (("plain", bare_s), ("fast", fast_s)):
                out = work / f"bare{k}{codec}.sqlite"
                bare = run_child(
                    [sys.executable, "-c", _BARE, str(batch), str(out), str(work), codec],
                    env=env,
                    label=f"bare loop ({codec})",
                )
                b = bare.last_json()
                out.unlink()
                times.append(b["seconds"])
                rss_bare = max(rss_bare, bare.peak_rss_kib)
                canon.add(b["canonical_sha256"])
                raw[codec].add(b["rows_sha256"])
            # Logs and metrics on, then off (alternating with the bare loops, in the same run).
            for observe in ("1", "0"):
                w = _run_worker(work, root0, job_id, env, observe, args.n)
                canon.add(w["canonical_sha256"])
                raw["worker"].add(w["rows_sha256"])
                for key, values in (on if observe == "1" else off).items():
                    values.append(w[key])
                if observe == "0":
                    continue
                worker_s.append(w["seconds"])
                process_s.append(w["process_s"])
                publish_s.append(w["publish_s"])
                rss_worker = max(rss_worker, w["peak_rss_kib"])
        if len(canon) != 1:
            raise BenchError(
                f"the worker's published rows differ (as JSON values) from the bare loop's: {canon}"
            )
        if raw["worker"] != raw["fast"] or len(raw["worker"]) != 1:
            raise BenchError(f"the worker's row text differs from the bare loop with its codec: {raw}")
        same_text_as_json_dumps = raw["worker"] == raw["plain"]

        # End to end, start-up included: the CLI worker and the bare script.
        root = fresh_root(root0, work / "root")
        cli = run_child(
            [
                sys.executable,
                "-m",
                "slurmctl",
                "worker",
                "--backend",
                json.dumps({"kind": "local", "root": str(root)}),
                "--job",
                job_id,
                "--task",
                TASK,
            ],
            env=env,
            label="slurmctl worker --task",
        )
        bare_e2e = run_child(
            [sys.executable, "-c", _BARE, str(batch), str(work / "bare-e2e.sqlite"), str(work), "plain"],
            env=env,
            label="bare loop (end to end)",
        )
        if args.profile:
            root = fresh_root(root0, work / "root")
            prof = run_child(
                [sys.executable, "-c", _WORKER, str(root), job_id, TASK, "1", "1"],
                env=env,
                label="worker profile",
            )
            print(prof.stderr, file=sys.stderr)

        n = args.n
        w_best, b_best, f_best = min(worker_s), min(bare_s), min(fast_s)
        result(
            BENCH,
            contender="worker",
            items=n,
            seconds=summary(worker_s),
            process_s=summary(process_s),
            publish_s=summary(publish_s),
            items_per_s=round(n / w_best),
            peak_rss_mib=mib(rss_worker),
            rows_text_identical_to_json_dumps=same_text_as_json_dumps,
        )
        result(
            BENCH,
            contender="bare",
            items=n,
            seconds=summary(bare_s),
            items_per_s=round(n / b_best),
            peak_rss_mib=mib(rss_bare),
        )
        result(
            BENCH,
            contender="bare_same_codec",
            items=n,
            seconds=summary(fast_s),
            items_per_s=round(n / f_best),
        )
        result(
            BENCH,
            contender="cli_end_to_end",
            items=n,
            worker_cli_s=round(cli.wall_s, 4),
            bare_script_s=round(bare_e2e.wall_s, 4),
            worker_cli_peak_rss_mib=mib(cli.peak_rss_kib),
        )
        print(
            f"{n:,} items, best of {args.repeat}: worker {w_best:.3f}s ({n / w_best:,.0f} items/s; item loop "
            f"{min(process_s):.3f}s, publish {min(publish_s):.3f}s), bare loop {b_best:.3f}s "
            f"({n / b_best:,.0f} items/s), bare loop with the worker's codec {f_best:.3f}s "
            f"({n / f_best:,.0f} items/s); end to end: `slurmctl worker --task` {cli.wall_s:.3f}s, "
            f"bare script {bare_e2e.wall_s:.3f}s"
        )
        ratio("worker_items_per_s_vs_200k", n / w_best, 200_000, unit="items/s", target=">= 1.00x")
        _observability_report(n, args.repeat, on, off)
        ratio("worker_vs_bare", w_best, b_best, target="<= 1.30x")
        ratio("worker_vs_bare_same_codec", w_best, f_best, target="<= 1.30x")
        ratio("worker_cli_vs_bare_script_end_to_end", cli.wall_s, bare_e2e.wall_s)
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
