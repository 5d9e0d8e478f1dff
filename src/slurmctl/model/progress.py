"""Progress records: what ``status`` reads instead of every task record.

A job's tasks are grouped by index (``t0000000`` .. ``t0000255`` are group 0); each group has one
record in the state table ``progress`` (key ``<job>/g<group>``) whose value is
``{"entries": {task_id: entry}}``, an entry being the task record's version followed by the
fields of :data:`FIELDS`. Only :mod:`slurmctl.lifecycle` writes them, after each task-record
write; :func:`merge` applies an entry only if it is newer than the stored one, so writes are
idempotent, order-independent and never move an entry back. A group can only lag behind the
task records (a crash between the two writes): the lifecycle repairs it whenever it reads every
task record (``settle``, ``refresh_job``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Tasks per group. A group of 256 entries is ~22 KB of JSON, at most ~85 KB when every task failed
# (DynamoDB items may hold 400 KB: an entry's error text is cut to ERROR_CHARS bytes of JSON), so
# `status` of 10k tasks reads 40 records.
GROUP_SIZE = 256
ERROR_CHARS = 200

# The task-record fields progress needs (model.core.TaskStatus), in entry order after the version.
FIELDS = (
    "state",
    "attempt",
    "items_done",
    "items_failed",
    "items_total",
    "started_at",
    "finished_at",
    "error",
    "failures",
)
_ERROR = 1 + FIELDS.index("error")


def group_of(task_id: str) -> int:
    """The group of task ``t%07d``."""
    return int(task_id[1:]) // GROUP_SIZE


def entry(version: int, value: Mapping[str, Any]) -> list[Any]:
    """The entry of a task record at ``version`` with ``value``: the version, then FIELDS (None
    where absent); the error text only for a failed task, cut to ERROR_CHARS."""
    out = [version, *(value.get(f) for f in FIELDS)]
    error = out[_ERROR]
    out[_ERROR] = _cut(error) if isinstance(error, str) and value.get("state") == "failed" else None
    return out


def _cut(text: str) -> str:
    """``text`` cut to what JSON encodes in ERROR_CHARS bytes (a non-ASCII character takes 6 or 12)."""
    text = text[:ERROR_CHARS]
    while len(json.dumps(text)) > ERROR_CHARS + 2:
        text = text[: -max(1, (len(json.dumps(text)) - ERROR_CHARS) // 12)]
    return text


def merge(value: Mapping[str, Any] | None, entries: Mapping[str, list[Any]]) -> dict[str, Any] | None:
    """The group record ``value`` (None: absent) with each of ``entries`` applied where it is newer
    (a higher version) than the stored one; None if nothing is newer. Pure."""
    stored: dict[str, list[Any]] = dict((value or {}).get("entries") or {})
    changed = False
    for task_id, new in entries.items():
        old = stored.get(task_id)
        if old is None or old[0] < new[0]:
            stored[task_id] = new
            changed = True
    return {"entries": stored} if changed else None
