"""Errors the scoreboard raises on purpose; each carries the exit code the CLI uses.

    ScoreboardError        root (exit 1)
    ├── UsageError         bad flag or config value: fix the command or file (exit 2)
    ├── FormatError        a file under the root cannot be read as its format (exit 3)
    ├── LockHeldError      another poller holds the cluster lock (exit 75, EX_TEMPFAIL: cron retries)
    ├── StorageError       the root cannot be written (exit 6)
    └── SacctError         sacct failed after retries, timed out, or is missing (exit 7)

This tree is separate from ``slurmctl.errors`` on purpose: the scoreboard imports nothing from the
core (only ``slurmctl.portable``), so it runs from a bare checkout on Python 3.6.
"""

from typing import Optional


class ScoreboardError(Exception):
    """Root of every error the scoreboard raises deliberately."""

    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(ScoreboardError):
    exit_code = 2


class FormatError(ScoreboardError):
    """A file does not match its documented format; the message names file and field."""

    exit_code = 3


class LockHeldError(ScoreboardError):
    exit_code = 75


class StorageError(ScoreboardError):
    exit_code = 6


class SacctError(ScoreboardError):
    exit_code = 7
