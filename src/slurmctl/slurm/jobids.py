"""Slurm job id strings as printed by squeue/sacct, parsed into one value type.

Forms seen on Slurm 22.05 (recorded in tests/golden/slurm/):

* ``123``                   a plain job
* ``123_4``                 task 4 of array job 123 (its own numeric id is different, e.g. 127)
* ``123_[5-100%10]``        the not-yet-started tasks of array 123, throttled to 10 at a time
* ``123_[1,3,7-9:2]``       ... an explicit list with a step
* ``123+0`` / ``123+1``     components of heterogeneous job 123
* ``123.batch``, ``123.extern``, ``123.0``, ``123_4.batch``, ``123+1.0``   job steps (sacct)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from slurmctl.errors import SchedulerQueryError

_JOB_ID = re.compile(
    r"""^(?P<job>\d+)
        (?:_(?P<task>\d+)|_\[(?P<range>[^\]]*)\])?
        (?:\+(?P<het>\d+))?
        (?:\.(?P<step>[A-Za-z0-9_+\-.]+))?$""",
    re.VERBOSE,
)
_RANGE_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


@dataclass(frozen=True)
class TaskRanges:
    """A compact set of array task ids: ((first, last, step), ...), plus the ``%N`` throttle if any."""

    spans: tuple[tuple[int, int, int], ...]
    throttle: int | None = None

    @classmethod
    def parse(cls, text: str) -> TaskRanges:
        """Parse "5-100%10", "1,3,7-9:2", "4" (with or without brackets). Raises ValueError. Pure."""
        text = text.strip().strip("[]")
        throttle: int | None = None
        if "%" in text:
            text, _, limit = text.partition("%")
            if not limit.isdigit():
                raise ValueError(f"bad array throttle in {text!r}")
            throttle = int(limit)
        spans: list[tuple[int, int, int]] = []
        for item in text.split(","):
            m = _RANGE_ITEM.match(item.strip())
            if not m:
                raise ValueError(f"bad array task range {item!r}")
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else first
            step = int(m.group(3)) if m.group(3) else 1
            if last < first or step < 1:
                raise ValueError(f"bad array task range {item!r}")
            spans.append((first, last, step))
        return cls(tuple(spans), throttle)

    def __iter__(self) -> Iterator[int]:
        for first, last, step in self.spans:
            yield from range(first, last + 1, step)

    def __len__(self) -> int:
        return sum((last - first) // step + 1 for first, last, step in self.spans)

    def __contains__(self, task: object) -> bool:
        if not isinstance(task, int):
            return False
        return any(first <= task <= last and (task - first) % step == 0 for first, last, step in self.spans)

    def __str__(self) -> str:
        parts = []
        for first, last, step in self.spans:
            if first == last:
                parts.append(str(first))
            else:
                parts.append(f"{first}-{last}" + (f":{step}" if step != 1 else ""))
        return ",".join(parts) + (f"%{self.throttle}" if self.throttle is not None else "")


@dataclass(frozen=True)
class JobRef:
    """One parsed job id string. ``job`` is the array parent / het leader / plain id."""

    job: int
    task: int | None = None
    pending_tasks: TaskRanges | None = None
    het_offset: int | None = None
    step: str | None = None
    raw: str = ""

    @property
    def is_step(self) -> bool:
        return self.step is not None

    @property
    def is_array_task(self) -> bool:
        return self.task is not None

    @property
    def is_pending_range(self) -> bool:
        return self.pending_tasks is not None

    @property
    def key(self) -> str:
        """The allocation this row belongs to, without the step: "123", "123_4", "123+1"."""
        text = str(self.job)
        if self.task is not None:
            text += f"_{self.task}"
        elif self.pending_tasks is not None:
            text += f"_[{self.pending_tasks}]"
        if self.het_offset is not None:
            text += f"+{self.het_offset}"
        return text


def parse_job_id(text: str) -> JobRef:
    """Parse one job id string as printed by squeue %i or sacct JobID.

    Returns a JobRef. Raises SchedulerQueryError naming the string when it has no known form. Pure.
    """
    raw = text.strip()
    m = _JOB_ID.match(raw)
    if not m:
        raise SchedulerQueryError(f"unrecognised Slurm job id {raw!r}")
    pending = None
    if m.group("range") is not None:
        try:
            pending = TaskRanges.parse(m.group("range"))
        except ValueError as exc:
            raise SchedulerQueryError(f"unrecognised array task range in job id {raw!r}: {exc}") from exc
    return JobRef(
        job=int(m.group("job")),
        task=int(m.group("task")) if m.group("task") else None,
        pending_tasks=pending,
        het_offset=int(m.group("het")) if m.group("het") else None,
        step=m.group("step"),
        raw=raw,
    )


def parse_submitted_id(stdout: str) -> str:
    """Return the job id from ``sbatch --parsable`` output ("123" or "123;cluster").

    Raises SchedulerQueryError when the output holds no job id. Pure.
    """
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if lines:
        job_id = lines[-1].split(";", 1)[0].strip()
        if job_id.isdigit():
            return job_id
    raise SchedulerQueryError(f"sbatch --parsable printed no job id: {stdout.strip()!r}")
