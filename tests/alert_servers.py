"""Real receivers for alert tests, on 127.0.0.1: an SMTP server (aiosmtpd), an HTTP server that
records JSON posts (http.server in a thread), and a command hook that appends its stdin to a file."""

from __future__ import annotations

import contextlib
import email
import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """What the SMTP server received: ``email.message.Message`` objects."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def alerts(self) -> list[dict[str, Any]]:
        """The alert JSON each mail carries after its text."""
        with self.lock:
            bodies = [m.get_payload(decode=True).decode() for m in self.messages]
        return [json.loads(b[b.index("\n{") + 1 :]) for b in bodies]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl)."""
    import subprocess

    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class Auth:
    """Accepts one user and password (aiosmtpd's auth_callback protocol is (mechanism, login, password))."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, mechanism: str, login: bytes, password: bytes) -> bool:
        return login == self.user and password == self.password


@contextlib.contextmanager
def smtp_server(
    tls: tuple[Path, Path] | None = None, auth: Auth | None = None
) -> Iterator[tuple[int, Mailbox]]:
    """An SMTP server; with ``tls`` (cert, key) it requires STARTTLS, with ``auth`` a login."""
    import ssl

    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = free_port()
    extra: dict[str, Any] = {}
    if tls is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        extra.update(tls_context=ctx, require_starttls=True)
    if auth is not None:
        extra.update(auth_callback=auth, auth_required=True, auth_require_tls=tls is not None)
    controller = Controller(box, hostname="127.0.0.1", port=port, ready_timeout=10, **extra)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


class Posts:
    """JSON bodies posted to the HTTP server, by path; ``fail[path]`` answers that many 500s first."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[dict[str, Any]]] = {}
        self.fail: dict[str, int] = {}
        self.lock = threading.Lock()

    def get(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.by_path.get(path, []))


@contextlib.contextmanager
def http_server() -> Iterator[tuple[str, Posts]]:
    posts = Posts()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with posts.lock:
                if posts.fail.get(self.path, 0) > 0:
                    posts.fail[self.path] -= 1
                    code = 500
                else:
                    posts.by_path.setdefault(self.path, []).append(json.loads(body))
                    code = 202
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def hook_argv(out: Path) -> list[str]:
    """A command hook that appends the alert (stdin, JSON) as one line to ``out``."""
    code = "import sys; d = sys.stdin.read(); open(sys.argv[1], 'a').write(d.strip() + '\\n')"
    return [sys.executable, "-c", code, str(out)]


def hook_lines(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
