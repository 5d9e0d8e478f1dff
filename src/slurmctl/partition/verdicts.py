"""Validating JSONL blocks in worker processes (``partition(workers=N)``), for uncompressed input.

Each worker is ``python -m slurmctl.partition.verdicts``: it reads requests
``<off> <length> <hex of the path>\\n`` on stdin, reads those bytes of the input file itself (the
parser never ships data to it) and answers ``1\\n`` (every line takes the fast path) or ``0\\n``, in
order. Requests go round-robin and the parser consumes verdicts in the order it asked for them, so
reading worker ``k % N``'s next answer is always the right one; no threads are involved. A verdict
only picks between two paths that give the same events (see jsonl.py), so the output does not depend
on the workers. The input must not change while it is partitioned (as for resuming).

Why processes started with ``subprocess`` and not ``multiprocessing``: forkserver/spawn re-run the
caller's ``__main__`` in each worker (a user's script would run twice without an ``if __name__``
guard), fork copies a caller's threads' locks mid-use, and ``ProcessPoolExecutor``'s feeder threads
compete for the parser's GIL.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from slurmctl.errors import InputError


class Verdict:
    """The pending answer to one request; ``result()`` waits for it."""

    __slots__ = ("_value", "_worker")

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._value: bool | None = None

    def result(self) -> bool:
        """Returns True if the block is clean. Raises: InputError when the worker failed."""
        if self._value is None:
            self._value = self._worker.answer()
        return self._value


class _Worker:
    def __init__(self, max_record: int) -> None:
        import slurmctl

        env = dict(os.environ)
        root = str(Path(slurmctl.__file__).resolve().parent.parent)  # the same slurmctl as ours
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.path: Path | None = None  # of the last request, for error messages
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slurmctl.partition.verdicts", str(max_record)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def ask(self, path: Path, off: int, length: int) -> None:
        self.path = path
        try:
            self.stdin.write(b"%d %d %s\n" % (off, length, os.fsencode(path).hex().encode()))
            self.stdin.flush()
        except OSError as exc:  # the worker died; its answer() reports why
            self._failed(exc)

    def answer(self) -> bool:
        line = self.stdout.readline()
        if line == b"1\n":
            return True
        if line == b"0\n":
            return False
        self._failed(None)
        raise AssertionError("unreachable")

    def _failed(self, exc: OSError | None) -> None:
        self.close()
        stderr = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        raise InputError(
            f"cannot validate {self.path} in a worker process (exit code {self.proc.returncode}): "
            f"{stderr[-1000:] or exc}",
            hint="retry with workers=0 (validation in the main process); the partition resumes",
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class VerdictPool:
    """``workers`` validation processes for uncompressed JSONL files; a context manager."""

    def __init__(self, workers: int, max_record: int) -> None:
        """Start the workers. Raises: OSError when a process cannot be started."""
        self._workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self._workers.append(_Worker(max_record))
        except BaseException:
            self.close()
            raise
        self._next = 0

    def ask(self, path: Path, off: int, length: int) -> Verdict:
        """Ask whether the ``length`` bytes at ``off`` in ``path`` are clean. Returns the pending verdict."""
        worker = self._workers[self._next]
        self._next = (self._next + 1) % len(self._workers)
        worker.ask(path, off, length)
        return Verdict(worker)

    def close(self) -> None:
        """Stop the workers (they exit at the end of their input). Idempotent."""
        workers, self._workers = self._workers, []
        for w in workers:
            w.close()
            if w.proc.stdout:
                w.proc.stdout.close()
            if w.proc.stderr:
                w.proc.stderr.close()

    def __enter__(self) -> VerdictPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(max_record: int) -> int:
    from .jsonl import block_is_clean

    out = sys.stdout.buffer
    for request in sys.stdin.buffer:
        off, length, path = request.split()
        clean = block_is_clean(os.fsdecode(bytes.fromhex(path.decode())), int(off), int(length), max_record)
        out.write(b"1\n" if clean else b"0\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(int(sys.argv[1])))
