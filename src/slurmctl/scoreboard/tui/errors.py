"""Errors the TUI raises on purpose; ``cli.main`` turns them into a message and an exit code.

The TUI imports nothing from slurmctl outside ``slurmctl.scoreboard`` (login nodes get only this
subpackage), so it keeps its own small tree instead of ``slurmctl.errors``.
"""


class TuiError(Exception):
    """Root of the TUI's deliberate errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(TuiError):
    """A bad flag, environment variable or config file value: fix the invocation (exit 2)."""

    exit_code = 2


class BackendUnavailable(TuiError):
    """The requested backend cannot run here (no textual, no terminal): pick another (exit 4)."""

    exit_code = 4
