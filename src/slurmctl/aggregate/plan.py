"""The merge tree, decided before any node runs and stored as ``jobs/<job>/aggregate/plan.json``.

Level 0 merges the task results (in the order discovery returns them) ``fan_in`` at a time; each
level above merges ``fan_in`` nodes of the level below, until one node, the root, is left: it
writes the output. Node ``i`` of a level reads inputs ``i*fan_in .. (i+1)*fan_in - 1`` of the level
below, so the plan only stores the sources and the number of nodes per level. Its fingerprint (the
sha256 of everything that decides the nodes' content: format, fan-in, reduction, every source with
its checksum) tells a re-run whether the nodes on disk belong to the same plan.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec

from slurmctl.aggregate.discover import Source
from slurmctl.errors import ObjectNotFoundError
from slurmctl.storage import keys
from slurmctl.storage.base import Backend


class Plan(msgspec.Struct, kw_only=True):
    job_id: str
    format: str
    fan_in: int
    reduce: dict[str, Any] | None
    fingerprint: str
    levels: list[int]  # nodes per level; the last level has one node, the root
    sources: list[Source]
    unpublished: list[str]
    created_at: float

    @property
    def root_level(self) -> int:
        return len(self.levels) - 1

    def inputs(self, level: int, index: int) -> range:
        """Indices of node ``index``'s inputs: sources (level 0) or nodes of ``level - 1``."""
        below = len(self.sources) if level == 0 else self.levels[level - 1]
        return range(index * self.fan_in, min((index + 1) * self.fan_in, below))


def levels_for(n: int, fan_in: int) -> list[int]:
    levels = [max(1, -(-n // fan_in))]
    while levels[-1] > 1:
        levels.append(-(-levels[-1] // fan_in))
    return levels


def make(
    job_id: str,
    fmt: str,
    fan_in: int,
    reduce: dict[str, Any] | None,
    sources: list[Source],
    unpublished: list[str],
) -> Plan:
    digest = hashlib.sha256(msgspec.json.encode([fmt, fan_in, reduce, sources])).hexdigest()
    return Plan(
        job_id=job_id,
        format=fmt,
        fan_in=fan_in,
        reduce=reduce,
        fingerprint=digest,
        levels=levels_for(len(sources), fan_in),
        sources=sources,
        unpublished=unpublished,
        created_at=time.time(),
    )


def load(backend: Backend, job_id: str) -> Plan | None:
    try:
        return msgspec.json.decode(backend.objects.get(keys.aggregate_plan(job_id)), type=Plan)
    except ObjectNotFoundError:
        return None
    except msgspec.DecodeError:
        return None  # a plan of another version or a damaged one: planned again


def store(backend: Backend, plan: Plan) -> Plan:
    """Write ``plan`` unless the stored plan has the same fingerprint (then that one is kept, with
    its nodes). A stored plan of other content is removed with every node under it first."""
    old = load(backend, plan.job_id)
    if old is not None and old.fingerprint == plan.fingerprint:
        return old
    objects = backend.objects
    for key in objects.list(keys.aggregate_prefix(plan.job_id)):
        if key != keys.aggregate_plan(plan.job_id):
            objects.delete(key)
    objects.put(keys.aggregate_plan(plan.job_id), msgspec.json.encode(plan))
    return plan
