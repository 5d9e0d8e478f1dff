"""Resource escalation: the --mem/--time a task runs with after Slurm ended it for memory or time.

Pure arithmetic; the Slurm executor applies it when it submits a task again, and the lifecycle
stores the result on the task record (``TaskStatus.resources``). The rules:

* memory: ``ceil(mem_mb x retry.escalate.memory_factor)``, at most ``memory_max_gb`` (if set);
* time: ``ceil(time_min x retry.escalate.time_factor)``, at most the partition's MaxTime
  (None: UNLIMITED, only the factor applies);
* a task escalates at most ``retry.attempts.resources - 1`` times; a task whose job sets no
  ``resources.mem_gb`` (``time_min``) has no limit of its own to raise: it is not escalated;
* a step that would not raise anything (the cap is reached) is no escalation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def base_resources(config: Mapping[str, Any]) -> dict[str, int | None]:
    """The job file's memory (MB) and time (minutes) per task; None where it sets none."""
    r = config.get("resources") or {}
    mem = r.get("mem_gb")
    return {
        "mem_mb": max(1, math.ceil(mem * 1024)) if mem else None,
        "time_min": int(r["time_min"]) if r.get("time_min") else None,
    }


def max_steps(config: Mapping[str, Any]) -> int:
    """How many times a task may escalate: ``retry.attempts.resources - 1``."""
    attempts = ((config.get("retry") or {}).get("attempts") or {}).get("resources", 2)
    return max(0, int(attempts) - 1)


def escalate(
    current: Mapping[str, Any] | None,
    kind: str,
    config: Mapping[str, Any],
    max_time_min: int | None,
) -> dict[str, Any] | None:
    """The resources of a task's next run after a ``kind`` ("memory" or "time") failure, from its
    ``current`` overrides (None: the job file's), or None when it is not escalated (no base to
    raise, steps used up, cap reached). Pure."""
    now = {**base_resources(config), **(current or {})}
    steps = int(now.get("steps") or 0)
    if steps >= max_steps(config):
        return None
    esc = (config.get("retry") or {}).get("escalate") or {}
    if kind == "memory" and now.get("mem_mb"):
        new = math.ceil(now["mem_mb"] * float(esc.get("memory_factor", 2.0)))
        if esc.get("memory_max_gb"):
            new = min(new, math.floor(float(esc["memory_max_gb"]) * 1024))
        if new <= now["mem_mb"]:
            return None
        return {**now, "mem_mb": new, "steps": steps + 1}
    if kind == "time" and now.get("time_min"):
        new = math.ceil(now["time_min"] * float(esc.get("time_factor", 2.0)))
        if max_time_min is not None:
            new = min(new, max_time_min)
        if new <= now["time_min"]:
            return None
        return {**now, "time_min": new, "steps": steps + 1}
    return None
