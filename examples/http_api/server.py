"""A tiny HTTP API for the example, served on 127.0.0.1. It records the arrival time of every
request (one JSON line each) so tests and the rate-limiter benchmark can check request rates.

    python server.py --port 0 --log arrivals.jsonl     # prints the URL it listens on
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Api(BaseHTTPRequestHandler):
    log_lock = threading.Lock()
    log_file = None

    def do_GET(self) -> None:
        arrived = time.time()
        url = urlparse(self.path)
        q = parse_qs(url.query)
        word = q.get("word", [""])[0]
        if Api.log_file is not None:
            with Api.log_lock:
                Api.log_file.write(json.dumps({"t": arrived, "path": url.path, "word": word}) + "\n")
                Api.log_file.flush()
        if url.path != "/score":
            return self._send(404, {"error": "not found"})
        if not word or not word.isalpha():
            return self._send(400, {"error": f"word must be letters only, got {word!r}"})
        digest = hashlib.sha256(word.lower().encode()).digest()
        self._send(200, {"word": word, "score": digest[0] / 255, "length": len(word)})

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # quiet
        pass


def serve(port: int = 0, log_path: str | None = None) -> ThreadingHTTPServer:
    """Start the API in a background thread; returns the server (``server.server_address``)."""
    if log_path:
        Api.log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 (lives with the server)
    server = ThreadingHTTPServer(("127.0.0.1", port), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    args = ap.parse_args()
    server = serve(args.port, args.log)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
