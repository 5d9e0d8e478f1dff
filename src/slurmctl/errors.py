"""Every error slurmctl raises on purpose, grouped by what a caller can do about it.

    SlurmctlError                       root; ``exit_code`` is what the CLI exits with
    ├── ConfigError                     bad job file / profile: fix the file (exit 2)
    │   └── ConfigValidationError       one or more field errors with file, line and field path
    ├── InputError                      the input data cannot be read at all (exit 3)
    ├── HandlerError                    the user's handler cannot be imported / has the wrong shape (exit 4)
    ├── StateError                      an illegal state transition or an inconsistent job (exit 5)
    │   ├── JobNotFoundError            no such job id in the backend
    │   └── NotFoundError               no such project / tracked job in the control plane's database
    ├── StorageError                    the storage backend failed (exit 6)
    │   ├── ObjectNotFoundError         key absent
    │   ├── ChecksumMismatchError       bytes on disk do not match their recorded sha256
    │   └── ConflictError               compare-and-set lost, put-if-absent found the key, stale version
    ├── SchedulerError                  Slurm (or the local executor) failed (exit 7)
    │   ├── SubmissionError             sbatch failed; carries command, stdout, stderr, returncode
    │   └── SchedulerQueryError         squeue/sacct/scontrol failed after retries
    ├── ResultsError                    results do not verify (missing tasks, rows, checksums) (exit 8)
    ├── AuthError                       the control plane refused a caller (exit 14)
    │   ├── AuthenticationError         unknown, malformed, expired or revoked token; bad MUNGE credential
    │   └── ForbiddenError              the caller's roles or token scope do not allow the action
    └── ItemError                       raised *by handlers* to classify an item failure
        ├── TransientItemError          retry may succeed (timeouts, 5xx, throttling)
        └── PermanentItemError          retrying is pointless (bad record)

Foreign exceptions (sqlite3, OSError, subprocess, boto3) are converted at the edge of the module
that calls them, with ``raise ... from exc`` so the cause stays in the traceback.

Exit codes — the one table; every program (``slurmctl``, ``python -m slurmctl.worker``, the local
runner) exits with one of these, each with one meaning, and turns an exception that stops it into its
code and message with :func:`exit_code` and :func:`failure_message`:

    ==  ==================  ===========================================================
     0  EXIT_OK             done (a worker: its task is published, or already was)
     1  EXIT_FAILED         the command failed (a worker: its task failed; see the task record)
     2  ConfigError         bad job file, profile, flag or job id: fix it
     3  InputError          the input data cannot be read
     4  HandlerError        the handler cannot be imported or has the wrong shape
     5  StateError          unknown job/task, or a state that forbids the command
     6  StorageError        the storage backend failed (disk full, outage, unreadable record)
     7  SchedulerError      Slurm (or the local runner) failed or refused
     8  ResultsError        results do not verify (missing tasks, rows, checksums)
     9  EXIT_ITEMS_FAILED   the job finished but some items failed (``results`` lists them)
    10  RateLimitTimeout    a rate-limit wait gave up (bucket paused, blocked or booked out)
    11  EXIT_LEASE_LOST     a worker lost its task to another worker; it published nothing
    12  EXIT_ALERTS_FIRING  ``alerts check``: an alert condition is firing (all notified)
    13  EXIT_UNDELIVERED    ``alerts check``: a notification could not be delivered
    14  AuthError           the control plane refused the caller (credential or permission)
    70  EXIT_INTERNAL       internal error: a bug in slurmctl (please report it)
    75  EXIT_RESUME         a worker was interrupted after a clean checkpoint: run it again
   130  EXIT_INTERRUPTED    stopped by Ctrl-C
    ==  ==================  ===========================================================
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ITEMS_FAILED = 9
EXIT_RATE_LIMIT = 10
EXIT_LEASE_LOST = 11
EXIT_ALERTS_FIRING = 12
EXIT_UNDELIVERED = 13
EXIT_INTERNAL = 70
EXIT_RESUME = 75  # EX_TEMPFAIL: interrupted after a clean checkpoint; run again to resume
EXIT_INTERRUPTED = 130


class SlurmctlError(Exception):
    """Root of every error slurmctl raises deliberately."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(SlurmctlError):
    exit_code = 2


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field: where it is, what was found, what is expected."""

    path: str  # dotted field path, e.g. "resources.mem_gb"
    message: str  # what is expected
    found: str | None = None  # repr of what was found, shortened
    line: int | None = None  # 1-based line in the file, when known
    file: str | None = None  # the file that set the field (may be an `extends:` parent)

    def render(self, file: str | None) -> str:
        where = self.file or file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: {self.path or '<root>'}: {self.message}"
        if self.found is not None:
            text += f" (found {self.found})"
        return text


class ConfigValidationError(ConfigError):
    def __init__(self, file: str | None, problems: list[FieldProblem]) -> None:
        self.file = file
        self.problems = problems
        lines = [p.render(file) for p in problems]
        super().__init__(
            "invalid job config:\n  " + "\n  ".join(lines),
            hint="fix the fields above; `slurmctl schema` prints every field with its type",
        )


class InputError(SlurmctlError):
    exit_code = 3


class HandlerError(SlurmctlError):
    exit_code = 4


class StateError(SlurmctlError):
    exit_code = 5


class JobNotFoundError(StateError):
    @classmethod
    def in_backend(cls, job_id: str, where: str) -> JobNotFoundError:
        """The error for a job id that ``where`` (a backend's description) does not hold."""
        return cls(
            f"no job {job_id!r} in {where}",
            hint="`slurmctl jobs` lists the jobs; --root / SLURMCTL_ROOT selects the backend",
        )


class NotFoundError(StateError):
    """No such entity (project, tracked job) in the control plane's database."""


class StorageError(SlurmctlError):
    exit_code = 6


class ObjectNotFoundError(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key}")
        self.key = key


class ChecksumMismatchError(StorageError):
    def __init__(self, key: str, expected: str, actual: str) -> None:
        super().__init__(
            f"checksum mismatch for {key}: expected sha256 {expected}, found {actual}",
            hint="the file was modified or truncated after it was published; re-run the task",
        )
        self.key = key
        self.expected = expected
        self.actual = actual


class ConflictError(StorageError):
    """A compare-and-set or put-if-absent lost against another writer."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"conflicting write on {key}" + (f": {detail}" if detail else ""))
        self.key = key


class SchedulerError(SlurmctlError):
    exit_code = 7


class SubmissionError(SchedulerError):
    def __init__(
        self,
        message: str,
        *,
        command: list[str] | None = None,
        stdout: str = "",
        stderr: str = "",
        returncode: int | None = None,
        hint: str | None = None,
    ) -> None:
        detail = message
        if command:
            detail += f"\n  command: {' '.join(command)}"
        if returncode is not None:
            detail += f"\n  exit code: {returncode}"
        if stderr.strip():
            detail += f"\n  stderr: {stderr.strip()}"
        super().__init__(detail, hint=hint)
        self.command = command
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode


class SchedulerQueryError(SchedulerError):
    pass


class AuthError(SlurmctlError):
    exit_code = 14


class AuthenticationError(AuthError):
    """The credential is unknown, malformed, expired or revoked (HTTP 401). Never quotes a secret."""


class ForbiddenError(AuthError):
    """The authenticated caller may not do this (HTTP 403)."""


class ResultsError(SlurmctlError):
    exit_code = 8


class ItemError(SlurmctlError):
    """Raised by a handler to say how an item failed. Anything else is classified by type."""

    category = "unknown"


class TransientItemError(ItemError):
    category = "transient"


class PermanentItemError(ItemError):
    category = "permanent"


def exit_code(exc: BaseException) -> int:
    """The exit code (the table above) of a program that ``exc`` stopped: a SlurmctlError's own
    code, EXIT_INTERRUPTED for Ctrl-C, EXIT_INTERNAL for anything else (a bug in slurmctl)."""
    if isinstance(exc, SlurmctlError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INTERNAL


def failure_message(exc: BaseException, *, traceback_file: bool = True) -> str:
    """What a program that ``exc`` stopped prints on stderr: ``error: ...`` (with the hint),
    ``interrupted``, or for a bug ``internal error: ...`` and where its traceback is: a file in the
    temp directory (``traceback_file``), else the traceback itself follows the message (a worker's
    stderr is its log)."""
    if isinstance(exc, SlurmctlError):
        return f"error: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    import traceback

    head = f"internal error: {type(exc).__name__}: {exc}"
    text = "".join(traceback.format_exception(exc))
    if traceback_file:
        import tempfile

        try:
            fd, path = tempfile.mkstemp(prefix="slurmctl-traceback-", suffix=".txt")
            with os.fdopen(fd, "w") as f:
                f.write(f"{' '.join(sys.argv)}\n{text}")
        except OSError:
            pass
        else:
            return f"{head}\n  traceback: {path} (please report it with the file)"
    return f"{head}\n{text.rstrip()}\nplease report it with the traceback above"
