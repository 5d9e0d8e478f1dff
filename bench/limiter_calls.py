"""Rate-limiter cost: state-store calls per 1,000 tokens, and the token rate one bucket sustains.

For each backend (local: the state store's compare-and-set on JSON record files under the root;
dynamodb: moto server on 127.0.0.1), W worker processes share one bucket and take TOKENS tokens
in total, three ways:

* baseline   — batch=1: one reservation (store round trip) per token, i.e. no leases;
* leases     — the default batch (a quarter second of tokens, at most 100);
* leases-50  — batch=50.

Run 1 uses a realistic rate (calls per 1,000 tokens, target <= 50 with leases); run 2 an
effectively unlimited rate, so the store is the bottleneck (tokens/s one bucket sustains).

With ``local``, every configuration also runs on ``local-sqlite``: the same buckets in one SQLite
file (``BEGIN IMMEDIATE`` transactions; :class:`SqliteBucketStore` below, a benchmark baseline,
not part of slurmctl — SQLite's locks are unsafe across NFS clients). The two alternate, and
``RATIO local.tokens_per_s.<run>.cas_vs_sqlite`` says whether a local-disk-only SQLite store would
earn its keep.

    python bench/limiter_calls.py [--tokens 4000] [--workers 4] [--backends local,dynamodb]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import multiprocessing as mp
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

from common import REPO, machine, ratio, result

sys.path.insert(0, str(REPO / "src"))

from slurmctl.ratelimit.stores import BucketStore, Change  # (imported once the path is set)

T = TypeVar("T")


class SqliteBucketStore(BucketStore):
    """Baseline: bucket documents in one SQLite file, each change one ``BEGIN IMMEDIATE``
    transaction (SQLite's POSIX locks; rollback journal, as WAL needs one host). Same interface
    and call counting as the real store."""

    def __init__(self, path: Path) -> None:  # no super().__init__: no state store behind it
        self.path, self.calls, self._db = path, 0, sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        self.calls += 1
        row = self._db.execute("SELECT doc FROM buckets WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def modify(self, key: str, change: Change[T], initial: dict[str, Any] | None = None) -> T:
        self.calls += 1
        self._db.execute("BEGIN IMMEDIATE")  # the write lock at once: no read-then-upgrade deadlock
        try:
            row = self._db.execute("SELECT doc FROM buckets WHERE key = ?", (key,)).fetchone()
            if row is None and initial is None:
                raise KeyError(key)
            doc = json.loads(row[0]) if row is not None else copy.deepcopy(initial)
            got = change(doc)
            self._db.execute("INSERT OR REPLACE INTO buckets VALUES (?, ?)", (key, json.dumps(doc)))
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        return got


def _worker(spec: dict[str, Any], job: str, cfg: dict[str, Any], tokens: int, start: Any, out: Any) -> None:
    from slurmctl.ratelimit import LimitConfig, Limiter
    from slurmctl.ratelimit.runtime import bucket_store
    from slurmctl.storage.open import open_backend

    spec = dict(spec)
    sqlite_baseline = spec.pop("sqlite_baseline", False)
    backend = open_backend(spec)
    store = (
        SqliteBucketStore(Path(spec["root"]) / "ratelimit.sqlite")
        if sqlite_baseline
        else bucket_store(backend)
    )
    lim = Limiter(store, "api", LimitConfig(**cfg), job_id=job)
    start.wait()
    t0 = time.perf_counter()
    lim.acquire(tokens)
    elapsed = time.perf_counter() - t0
    lim.close()
    http = getattr(backend.state, "counter", None)
    out.put(
        {
            "calls": store.calls,
            "http": http.total("dynamodb") if http is not None else None,
            "elapsed": elapsed,
            "reservations": lim.reservations,
            "dropped": lim.dropped_late,
        }
    )


def run(spec: dict[str, Any], cfg: dict[str, Any], tokens: int, workers: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    job = f"bench{uuid.uuid4().hex[:8]}"
    per = tokens // workers
    procs = [ctx.Process(target=_worker, args=(spec, job, cfg, per, start, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    time.sleep(1.0 if spec["kind"] == "local" else 3.0)  # let every child import and connect first
    start.set()
    parts = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    calls = sum(p["calls"] for p in parts)
    http = sum(p["http"] for p in parts) if parts[0]["http"] is not None else None
    wall = max(p["elapsed"] for p in parts)
    return {
        "tokens": per * workers,
        "calls": calls,
        "calls_per_1000": round(1000 * calls / (per * workers), 2),
        "http_per_1000": None if http is None else round(1000 * http / (per * workers), 2),
        "tokens_per_s": round(per * workers / wall, 1),
        "reservations": sum(p["reservations"] for p in parts),
        "dropped_late": sum(p["dropped"] for p in parts),
    }


def start_moto(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(tmp / "moto.log", "wb") as log:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=4000, help="tokens per contender (size knob for CI)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rate", type=float, default=2000.0, help="the realistic rate of run 1 (tokens/s)")
    ap.add_argument("--backends", default="local,dynamodb")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="limiter-bench-"))
    moto = None
    specs: dict[str, dict[str, Any]] = {}
    machine("limiter_calls", "start")
    try:
        if "local" in args.backends.split(","):
            specs["local"] = {"kind": "local", "root": str(tmp / "root")}
            specs["local-sqlite"] = {
                "kind": "local",
                "root": str(tmp / "root-sqlite"),
                "sqlite_baseline": True,
            }
        if "dynamodb" in args.backends.split(","):
            os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            moto, url = start_moto(tmp)
            from slurmctl.storage.aws.bootstrap import ensure_tables
            from slurmctl.storage.aws.settings import AwsSettings

            spec = {"kind": "aws", "bucket": "limiter-bench", "table_prefix": "lb-", "region": "us-east-1"}
            spec["endpoint_url"] = url
            ensure_tables(AwsSettings.from_spec(spec), wait_s=30)
            specs["dynamodb"] = spec
        # Run 1: a realistic rate; run 2: unlimited, the store's round trips bound the tokens/s.
        # Backends alternate within each configuration, so a load change hits them alike.
        runs = [
            ("rate", label, {"rate": args.rate, "burst": 10, "batch": batch})
            for label, batch in (("baseline", 1), ("leases", None), ("leases-50", 50))
        ]
        runs += [
            ("unlimited", label, {"rate": 1e7, "burst": 1000, "batch": batch})
            for label, batch in (("baseline", 1), ("leases", 100))
        ]
        figures: dict[tuple[str, str, str], dict[str, Any]] = {}
        for run_name, label, cfg in runs:
            for name, spec in specs.items():
                got = run(spec, cfg, args.tokens, args.workers)
                figures[name, run_name, label] = got
                extra = {"rate": args.rate} if run_name == "rate" else {}
                result("limiter_calls", backend=name, run=run_name, contender=label, **extra, **got)
        for name in specs:
            for label in ("leases", "leases-50"):
                ratio(
                    f"{name}.calls_per_1000.{label.replace('-', '')}_vs_no_leases",
                    figures[name, "rate", label]["calls_per_1000"],
                    figures[name, "rate", "baseline"]["calls_per_1000"],
                    unit="calls/1000 tokens",
                    target="<= 50 calls per 1000 tokens",
                )
            ratio(
                f"{name}.tokens_per_s.leases_vs_no_leases",
                figures[name, "unlimited", "leases"]["tokens_per_s"],
                figures[name, "unlimited", "baseline"]["tokens_per_s"],
                unit="tokens/s",
            )
        if "local" in specs:
            for run_name, label, _cfg in runs:
                ratio(
                    f"local.tokens_per_s.{run_name}-{label}.cas_vs_sqlite",
                    figures["local", run_name, label]["tokens_per_s"],
                    figures["local-sqlite", run_name, label]["tokens_per_s"],
                    unit="tokens/s",
                )
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        machine("limiter_calls", "end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
