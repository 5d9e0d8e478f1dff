"""The sacct adapter: builds queries, streams the output, rate-limits, retries with backoff, times out.

Its own small subprocess code (standard library, Python 3.6), not ``slurmctl.slurm``: the scoreboard
imports nothing from the core. Output is streamed line by line into a consumer (the
ingest), never held in memory; a call that fails (non-zero exit, timeout, killed) raises after the
consumer read its partial output, and the ingest commits nothing in that case.
"""

import contextlib
import io
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Iterator, List, Optional

from .errors import SacctError
from .parser import FORMAT
from .ratelimit import TokenBucket
from .schemas import TERMINAL_STATE_CODES


class _CountingReader(io.RawIOBase):
    """A raw reader over sacct's stdout pipe that counts the bytes it passes on (for the logs)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = self.pipe.readinto(buf)
        if n:
            self.count += n
        return n or 0


class CallFailed(Exception):
    """One sacct call failed (retryable)."""


def _kill_group(proc: "subprocess.Popen") -> None:
    """SIGKILL the process group ``proc`` leads (started with ``start_new_session``): a site's ``sacct``
    is often a shell wrapper, and killing only the shell would leave its child running and holding the
    output pipe open, so reading to its end would wait for that child."""
    with contextlib.suppress(OSError):  # the group is gone already
        os.killpg(proc.pid, signal.SIGKILL)


def check_output(cmd: List[str], timeout: float, stderr: Any = subprocess.DEVNULL) -> str:
    """Return the stdout of ``cmd`` (text) run in its own process group, killed whole after ``timeout``
    seconds. Raises OSError, subprocess.TimeoutExpired, subprocess.CalledProcessError."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        universal_newlines=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out)
    return out


def window_args(start: str, end: str, user: Optional[str] = None) -> List[str]:
    """Return sacct arguments for jobs that ENDED in ``[start, end]`` (both inclusive, UTC). Pure.

    With ``-s`` terminal states plus -S/-E, slurmdbd selects jobs by their end time, so consecutive
    windows never return a job twice; plain -S/-E would return every job overlapping the window.
    ``-D`` lists every run of a requeued job (the earlier ones with State REQUEUED), each in the window
    of its own End. ``--noconvert`` keeps memory values exact (MaxRSS/AveRSS in bytes).
    """
    args = ["-n", "-P", "-D", "--noconvert", "-s", TERMINAL_STATE_CODES, "-S", start, "-E", end, "-o", FORMAT]
    if user:
        args[0:0] = ["-u", user]
    else:
        args[0:0] = ["-a"]
    return args


def sacct_env() -> dict:
    """Return the environment for sacct: the caller's plus TZ=UTC (sacct prints and parses local time)."""
    env = dict(os.environ)
    env["TZ"] = "UTC"
    return env


class Sacct:
    """Runs sacct politely. ``consume(lines, finish)`` must iterate ``lines`` (bytes, one output line
    each, newline included) and call ``finish()`` before committing anything; ``finish`` raises when the
    call failed."""

    def __init__(
        self,
        sacct: str = "sacct",
        bucket: Optional[TokenBucket] = None,
        timeout_sec: float = 600.0,
        retries: int = 3,
        backoff_base_sec: float = 30.0,
        backoff_max_sec: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        log: Optional[Callable[..., None]] = None,
    ) -> None:
        self.sacct = sacct
        self.bucket = bucket
        self.timeout_sec = timeout_sec
        self.retries = retries
        self.backoff_base_sec = backoff_base_sec
        self.backoff_max_sec = backoff_max_sec
        self.sleep = sleep
        self.log = log or (lambda *a, **k: None)
        self.calls = 0
        self.bytes = 0
        self.rate_sleep_ms = 0

    def _once(self, args: List[str], consume: Callable[[Iterator[str], Callable[[], None]], Any]) -> Any:
        cmd = [self.sacct, *args]
        err = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in the finally below
        try:
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    env=sacct_env(),
                    bufsize=1 << 16,
                    start_new_session=True,  # on timeout, the whole group is killed
                )
            except FileNotFoundError as exc:
                raise SacctError(
                    f"sacct not found: {self.sacct!r}",
                    hint="run on a login node with Slurm, or set `sacct:` in the config to its full path",
                ) from exc
            except OSError as exc:
                raise CallFailed(f"cannot start {self.sacct}: {exc}") from exc
            timed_out = []
            # A watchdog, because the stream is consumed incrementally (communicate(timeout=) would buffer).
            timer = threading.Timer(self.timeout_sec, lambda: (timed_out.append(1), _kill_group(proc)))
            timer.daemon = True
            timer.start()
            # Bytes are counted per 64 KiB read, not per line: the stream is millions of lines. Lines go
            # to the consumer as bytes: the fold decodes only the rows it cannot take on its fast path
            # (UTF-8, invalid bytes replaced), which saves decoding and copying ~300 MB for a 1M-job month.
            raw = _CountingReader(proc.stdout)
            stream = io.BufferedReader(raw, 1 << 16)

            def finish() -> None:
                # Drain what the consumer did not read so sacct never blocks on a full pipe.
                while raw.readinto(bytearray(1 << 16)):
                    pass
                rc = proc.wait()
                timer.cancel()
                self.bytes += raw.count
                if timed_out:
                    raise CallFailed(
                        f"sacct timed out after {self.timeout_sec:g} s (its process group was killed):"
                        f" {' '.join(cmd)}"
                    )
                if rc != 0:
                    err.seek(0)
                    msg = err.read().decode("utf-8", "replace").strip()[-500:]
                    raise CallFailed(f"sacct exited with {rc}: {msg or '(no stderr)'}")

            try:
                return consume(stream, finish)
            finally:
                timer.cancel()
                if proc.poll() is None:
                    _kill_group(proc)
                    proc.wait()
                proc.stdout.close()
        finally:
            err.close()

    def run(self, args: List[str], consume: Callable[[Iterator[str], Callable[[], None]], Any]) -> Any:
        """Run sacct with ``args`` feeding ``consume``; retry with backoff; return what ``consume`` returns.

        Every attempt takes a token from the bucket. Raises SacctError after the last failed attempt.
        """
        last = ""
        for attempt in range(self.retries + 1):
            if self.bucket is not None:
                waited = self.bucket.acquire()
                self.rate_sleep_ms += int(waited * 1000)
            self.calls += 1
            try:
                return self._once(args, consume)
            except CallFailed as exc:
                last = str(exc)
                if attempt == self.retries:
                    break
                delay = min(self.backoff_max_sec, self.backoff_base_sec * (2**attempt))
                delay *= random.uniform(0.9, 1.1)  # jitter: pollers of several clusters must not sync up
                self.log(
                    "warning",
                    "sacct call failed; backing off",
                    attempt=attempt + 1,
                    delay_sec=round(delay, 1),
                    error=last,
                )
                self.sleep(delay)
        tries = self.retries + 1
        raise SacctError(
            f"sacct failed {'once' if tries == 1 else f'{tries} times'}; last error: {last}",
            hint="check `sacct --version` and slurmdbd; the poll resumes from the same cursor next time",
        )

    def version(self) -> str:
        """Return ``sacct --version`` ("" when missing or failing). Takes no token: no slurmdbd load."""
        try:
            out = check_output([self.sacct, "--version"], timeout=30, stderr=subprocess.STDOUT)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.strip()
