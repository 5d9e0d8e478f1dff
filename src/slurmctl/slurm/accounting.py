"""sacct output: the fields we ask for and their parser.

We call ``sacct -P -n --noconvert --delimiter=<0x1f> -o FIELDS``: parsable, no header, sizes as
plain numbers (MaxRSS in bytes), and a separator that job names do not contain ("|", sacct's
default, does: a job named "a|b" shifts every later field). Rows keep sacct's raw strings in
``fields`` so callers can read any field they requested; the common ones are typed properties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from slurmctl.errors import SchedulerQueryError
from slurmctl.slurm.jobids import JobRef, parse_job_id
from slurmctl.slurm.states import JobState, parse_state
from slurmctl.slurm.values import parse_duration, parse_exit_code, parse_size, parse_time, parse_tres

SEP = "\x1f"

DEFAULT_SACCT_FIELDS: tuple[str, ...] = (
    "JobID",
    "JobIDRaw",
    "JobName",
    "State",
    "ExitCode",
    "Submit",
    "Start",
    "End",
    "Elapsed",
    "TotalCPU",
    "ReqMem",
    "MaxRSS",
    "AllocTRES",
    "NodeList",
    "Partition",
    "Account",
    "User",
    "Reason",
)


@dataclass(frozen=True)
class AcctRow:
    """One sacct record: an allocation (job / array task / het component) or one of its steps."""

    ref: JobRef
    fields: dict[str, str]

    @property
    def job_id(self) -> str:
        return self.ref.raw

    @property
    def is_step(self) -> bool:
        return self.ref.is_step

    @property
    def state(self) -> JobState:
        return parse_state(self.fields.get("State", ""))

    @property
    def state_text(self) -> str:
        return self.fields.get("State", "")

    @property
    def exit_code(self) -> tuple[int, int] | None:
        """(exit status, signal), e.g. (0, 9) for a job killed by OverMemoryKill."""
        return parse_exit_code(self.fields.get("ExitCode"))

    @property
    def submit(self) -> datetime | None:
        return parse_time(self.fields.get("Submit"))

    @property
    def start(self) -> datetime | None:
        return parse_time(self.fields.get("Start"))

    @property
    def end(self) -> datetime | None:
        return parse_time(self.fields.get("End"))

    @property
    def elapsed_seconds(self) -> float | None:
        return parse_duration(self.fields.get("Elapsed"))

    @property
    def max_rss_bytes(self) -> int | None:
        return parse_size(self.fields.get("MaxRSS"))

    @property
    def alloc_tres(self) -> dict[str, str]:
        return parse_tres(self.fields.get("AllocTRES"))


def parse_sacct(stdout: str, fields: Sequence[str], *, source: str = "sacct") -> list[AcctRow]:
    """Parse ``sacct -P -n --delimiter=0x1f -o <fields>`` output; ``fields`` must be what was requested.

    Returns rows in sacct's order. Typed values are parsed lazily by AcctRow's properties, and every
    field is validated here so a malformed value fails now, naming its line and field. Raises
    SchedulerQueryError. Pure.
    """
    names = [f.split("%", 1)[0] for f in fields]
    if "JobID" not in names:
        raise ValueError("sacct fields must include JobID")
    rows: list[AcctRow] = []
    for lineno, line in enumerate(stdout.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(SEP)
        if len(parts) != len(names):
            raise SchedulerQueryError(
                f"{source}:{lineno}: expected {len(names)} fields separated by 0x1f, "
                f"found {len(parts)}: {line[:200]!r}"
            )
        values = dict(zip(names, parts, strict=True))
        try:
            row = AcctRow(ref=parse_job_id(values["JobID"]), fields=values)
            _validate(row)
        except (ValueError, SchedulerQueryError) as exc:
            raise SchedulerQueryError(
                f"{source}:{lineno}: cannot parse sacct line {line[:200]!r}: {exc}"
            ) from exc
        rows.append(row)
    return rows


def _validate(row: AcctRow) -> None:
    """Touch every typed property whose field is present so bad values raise ValueError here."""
    checks = {
        "ExitCode": lambda: row.exit_code,
        "Submit": lambda: row.submit,
        "Start": lambda: row.start,
        "End": lambda: row.end,
        "Elapsed": lambda: row.elapsed_seconds,
        "MaxRSS": lambda: row.max_rss_bytes,
    }
    for name, check in checks.items():
        if name in row.fields:
            try:
                check()
            except ValueError as exc:
                raise ValueError(f"field {name}: {exc}") from exc
