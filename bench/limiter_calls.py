"""Rate-limiter cost: state-store calls per 1,000 tokens, and the token rate one bucket sustains.

For each backend (local: SQLite file; dynamodb: moto server on 127.0.0.1), W worker processes
share one bucket and take TOKENS tokens in total, three ways:

* baseline   — batch=1: one reservation (store round trip) per token, i.e. no leases;
* leases     — the default batch (a quarter second of tokens, at most 100);
* leases-50  — batch=50.

Run 1 uses a realistic rate (calls per 1,000 tokens, target <= 50 with leases); run 2 an
effectively unlimited rate, so the store is the bottleneck (tokens/s one bucket sustains).

    python bench/limiter_calls.py [--tokens 4000] [--workers 4] [--backends local,dynamodb]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import REPO, ratio, result

sys.path.insert(0, str(REPO / "src"))


def _worker(spec: dict[str, Any], job: str, cfg: dict[str, Any], tokens: int, start: Any, out: Any) -> None:
    from slurmctl.ratelimit import LimitConfig, Limiter
    from slurmctl.ratelimit.runtime import bucket_store
    from slurmctl.storage.open import open_backend

    backend = open_backend(spec)
    store = bucket_store(backend)
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
    try:
        if "local" in args.backends:
            specs["local"] = {"kind": "local", "root": str(tmp / "root")}
        if "dynamodb" in args.backends:
            os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            moto, url = start_moto(tmp)
            from slurmctl.storage.aws.bootstrap import ensure_tables
            from slurmctl.storage.aws.settings import AwsSettings

            spec = {"kind": "aws", "bucket": "limiter-bench", "table_prefix": "lb-", "region": "us-east-1"}
            spec["endpoint_url"] = url
            ensure_tables(AwsSettings.from_spec(spec), wait_s=30)
            specs["dynamodb"] = spec
        for name, spec in specs.items():
            figures: dict[str, dict[str, Any]] = {}
            for label, batch in (("baseline", 1), ("leases", None), ("leases-50", 50)):
                cfg = {"rate": args.rate, "burst": 10, "batch": batch}
                figures[label] = run(spec, cfg, args.tokens, args.workers)
                result(
                    "limiter_calls",
                    backend=name,
                    run="rate",
                    contender=label,
                    rate=args.rate,
                    **figures[label],
                )
            ratio(
                f"{name}.calls_per_1000.leases_vs_no_leases",
                figures["leases"]["calls_per_1000"],
                figures["baseline"]["calls_per_1000"],
                unit="calls/1000 tokens",
                target="<= 50 calls per 1000 tokens",
            )
            ratio(
                f"{name}.calls_per_1000.leases50_vs_no_leases",
                figures["leases-50"]["calls_per_1000"],
                figures["baseline"]["calls_per_1000"],
                unit="calls/1000 tokens",
                target="<= 50 calls per 1000 tokens",
            )
            # Run 2: unlimited rate; the store's round trips bound the tokens/s.
            sustained: dict[str, dict[str, Any]] = {}
            for label, batch in (("baseline", 1), ("leases", 100)):
                cfg = {"rate": 1e7, "burst": 1000, "batch": batch}
                sustained[label] = run(spec, cfg, args.tokens, args.workers)
                result("limiter_calls", backend=name, run="unlimited", contender=label, **sustained[label])
            ratio(
                f"{name}.tokens_per_s.leases_vs_no_leases",
                sustained["leases"]["tokens_per_s"],
                sustained["baseline"]["tokens_per_s"],
                unit="tokens/s",
            )
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
