"""Task bookkeeping on DynamoDB: requests per task over its life (target <= 6).

Runs a real map job (local executor, ``slurmctl submit --wait``) on the aws backend with S3 and
DynamoDB on a moto server; DynamoDB traffic goes through a counting HTTP proxy (boto3's
``AWS_ENDPOINT_URL_DYNAMODB``), which records the operation and table of every request from
every process (coordinator, runner, workers, the --wait poller). Prints requests per task on the
tasks table by operation, and all DynamoDB requests per task. The baseline, measured in the same
run, is the same job with a single task (fixed per-job costs are then visible as the difference).

    python bench/dynamo_requests.py [--tasks 40] [--items 20]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import REPO, ratio, result

sys.path.insert(0, str(REPO / "src"))

HANDLER = "def handle(record, ctx):\n    return {'id': record['id']}\n"


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: collections.Counter[tuple[str, str]] = collections.Counter()

    def add(self, op: str, table: str) -> None:
        with self.lock:
            self.ops[(op, table)] += 1

    def snapshot(self) -> collections.Counter[tuple[str, str]]:
        with self.lock:
            return collections.Counter(self.ops)


def counting_proxy(target_port: int, counter: Counter) -> ThreadingHTTPServer:
    local = threading.local()

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            op = (self.headers.get("X-Amz-Target") or "?").rsplit(".", 1)[-1]
            try:
                table = json.loads(body or b"{}").get("TableName", "?")
            except ValueError:
                table = "?"
            counter.add(op, table)
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                local.conn = None
                self.send_error(502)
                return
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_moto(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
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
    return proc, port


def run_job(tmp: Path, block: dict[str, Any], tasks: int, items: int, counter: Counter) -> dict[str, Any]:
    import yaml

    work = tmp / f"job-{tasks}"
    work.mkdir()
    with open(work / "in.jsonl", "w") as f:
        for i in range(tasks * items):
            f.write(json.dumps({"id": i}) + "\n")
    (work / "h.py").write_text(HANDLER)
    job = {
        "name": "ddbreq",
        "input": {"path": "in.jsonl"},
        "handler": {"function": "h:handle"},
        "batch": {"items": items},
        "executor": {"kind": "local", "max_parallel": 2},
        "backend": block,
    }
    (work / "job.yaml").write_text(yaml.safe_dump(job))
    before = counter.snapshot()
    env = {**os.environ, "SLURMCTL_ROOT": str(tmp / "root"), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "slurmctl", "submit", "job.yaml", "--wait"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise SystemExit(f"job failed: {proc.stderr[-2000:]}")
    time.sleep(0.5)
    delta = counter.snapshot() - before
    tasks_table = f"{block['table_prefix']}tasks"
    per_op = {op: n / tasks for (op, table), n in sorted(delta.items()) if table == tasks_table}
    total = sum(delta.values())
    return {
        "tasks": tasks,
        "tasks_table_per_task": round(sum(per_op.values()), 2),
        "tasks_table_by_op": {k: round(v, 2) for k, v in per_op.items()},
        "all_dynamodb_per_task": round(total / tasks, 2),
        "by_table": dict(collections.Counter({t: 0 for (_, t) in delta}) + _by_table(delta)),
    }


def _by_table(delta: collections.Counter[tuple[str, str]]) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for (_, table), n in delta.items():
        out[table] += n
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=40, help="tasks in the measured job (size knob for CI)")
    ap.add_argument("--items", type=int, default=20, help="items per task")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ddb-bench-"))
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    moto, port = start_moto(tmp)
    counter = Counter()
    proxy = counting_proxy(port, counter)
    try:
        os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{port}"
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{proxy.server_address[1]}"
        from slurmctl.storage.aws.bootstrap import ensure_bucket, ensure_tables
        from slurmctl.storage.aws.settings import AwsSettings

        block = {
            "kind": "aws",
            "bucket": f"ddb-{uuid.uuid4().hex[:8]}",
            "table_prefix": "dr-",
            "region": "us-east-1",
        }
        settings = AwsSettings.from_spec(block)
        ensure_bucket(settings)
        ensure_tables(settings, wait_s=30)
        baseline = run_job(tmp, block, 1, args.items, counter)
        result("dynamo_requests", contender="one-task job", **baseline)
        measured = run_job(tmp, block, args.tasks, args.items, counter)
        result("dynamo_requests", contender=f"{args.tasks}-task job", **measured)
        print(f"tasks table, per task: {measured['tasks_table_by_op']}")
        ratio(
            "dynamo.tasks_table_requests_per_task",
            measured["tasks_table_per_task"],
            baseline["tasks_table_per_task"],
            unit="requests/task",
            target="<= 6 requests per task",
        )
        ratio(
            "dynamo.all_requests_per_task",
            measured["all_dynamodb_per_task"],
            baseline["all_dynamodb_per_task"],
            unit="requests/task",
        )
    finally:
        proxy.shutdown()
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
