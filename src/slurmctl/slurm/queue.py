"""squeue output: the fixed format we ask for and its parser.

We use ``squeue -h -o FORMAT`` and not ``--json``: on Slurm 22.05 ``squeue --json`` ignores ``-j``
and returns every job in the controller (tested on the dev cluster), so it costs O(all jobs) per
poll. Fields are separated by ASCII 0x1f (unit separator), which no job name realistically holds
("|" does: a job named "a|b" is legal), and the free-text name comes last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slurmctl.errors import SchedulerQueryError
from slurmctl.slurm.jobids import JobRef, parse_job_id
from slurmctl.slurm.states import JobState, parse_state
from slurmctl.slurm.values import parse_duration, parse_time

SEP = "\x1f"

# (squeue % code, field name) in output order. %i prints 123, 123_4, 123_[5-9%2] or 123+1.
SQUEUE_FIELDS: tuple[tuple[str, str], ...] = (
    ("%i", "job_id"),
    ("%A", "raw_id"),
    ("%F", "array_job_id"),
    ("%K", "array_task"),
    ("%T", "state"),
    ("%r", "reason"),
    ("%V", "submit"),
    ("%S", "start"),
    ("%M", "elapsed"),
    ("%l", "time_limit"),
    ("%N", "nodes"),
    ("%j", "name"),
)
SQUEUE_FORMAT = SEP.join(code for code, _ in SQUEUE_FIELDS)


@dataclass(frozen=True)
class QueueRow:
    """One line of squeue: a job, an array task, a het component, or a range of pending array tasks."""

    ref: JobRef
    raw_id: int
    state: JobState
    state_text: str
    reason: str
    submit: datetime | None
    start: datetime | None
    elapsed_seconds: float | None
    time_limit_seconds: float | None
    nodes: str
    name: str

    @property
    def job_id(self) -> str:
        return self.ref.raw


def parse_squeue(stdout: str, *, source: str = "squeue") -> list[QueueRow]:
    """Parse output of ``squeue -h -o SQUEUE_FORMAT``.

    Returns one QueueRow per line, in squeue's order. Raises SchedulerQueryError naming the line
    when a line does not have the expected fields. Pure.
    """
    rows: list[QueueRow] = []
    n = len(SQUEUE_FIELDS)
    for lineno, line in enumerate(stdout.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(SEP, n - 1)
        if len(parts) != n:
            raise SchedulerQueryError(
                f"{source}:{lineno}: expected {n} fields separated by 0x1f, "
                f"found {len(parts)}: {line[:200]!r}"
            )
        f = dict(zip((name for _, name in SQUEUE_FIELDS), parts, strict=True))
        try:
            rows.append(
                QueueRow(
                    ref=parse_job_id(f["job_id"]),
                    raw_id=int(f["raw_id"]),
                    state=parse_state(f["state"]),
                    state_text=f["state"],
                    reason=f["reason"],
                    submit=parse_time(f["submit"]),
                    start=parse_time(f["start"]),
                    elapsed_seconds=parse_duration(f["elapsed"]),
                    time_limit_seconds=parse_duration(f["time_limit"]),
                    nodes=f["nodes"],
                    name=f["name"],
                )
            )
        except (ValueError, SchedulerQueryError) as exc:
            raise SchedulerQueryError(
                f"{source}:{lineno}: cannot parse squeue line {line[:200]!r}: {exc}"
            ) from exc
    return rows


__all__ = ["SQUEUE_FORMAT", "QueueRow", "parse_squeue"]
