"""Errors the TUI raises on purpose; ``cli.main`` turns them into a message and an exit code.

The TUI imports nothing from slurmctl outside ``slurmctl.scoreboard`` (login nodes get only this
subpackage), so it builds on the scoreboard's tree instead of ``slurmctl.errors``.
"""

from ..errors import ScoreboardError


class TuiError(ScoreboardError):
    """Root of the TUI's deliberate errors; ``exit_code`` is what the CLI exits with. Message and
    hint handling come from the scoreboard's own root error."""

    exit_code = 1


class UsageError(TuiError):
    """A bad flag, environment variable or config file value: fix the invocation (exit 2)."""

    exit_code = 2


class BackendUnavailable(TuiError):
    """The requested backend cannot run here (no textual, no terminal): pick another (exit 4)."""

    exit_code = 4
