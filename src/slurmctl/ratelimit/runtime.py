"""Glue between a job and its limiters: which store a backend uses, and ``ctx.rate_limits``."""

from __future__ import annotations

import logging
from typing import Any

from slurmctl.ratelimit.limiter import Limiter
from slurmctl.ratelimit.stores import BucketStore
from slurmctl.storage.base import Backend

log = logging.getLogger("slurmctl.ratelimit")

# One limiter per (backend, job, name) per process: a pilot running many tasks keeps its lease.
_cache: dict[tuple[str, str, str], Limiter] = {}
_stores: dict[str, BucketStore] = {}


def bucket_store(backend: Backend) -> BucketStore:
    """The bucket store of a backend: the ``limits`` table of its state store (compare-and-set on
    versioned records; on the local backend files under ``<root>/state/limits/``, safe on NFS and
    every other shared file system). Cached per process: the same object for the same backend."""
    ident = backend.description
    if ident not in _stores:
        _stores[ident] = BucketStore(backend.state, "limits")
    return _stores[ident]


class TaskLimits(dict[str, Limiter]):
    """``ctx.rate_limits``: name -> Limiter. When the task's context is dropped (the worker has
    handled the last item and moves on to publishing), the leases go back at once: a worker
    publishing for half a second must not sit on slots the other workers could use. CPython frees
    the context when ``Worker._process`` returns, so this runs then; atexit is the backstop."""

    def release(self) -> int:
        """Hand back every lease's unused slots. Returns how many. Idempotent."""
        returned = 0
        for limiter in self.values():
            try:
                returned += limiter.close()
            except Exception as exc:  # never fail a task over returning tokens
                log.warning("could not return tokens of %s: %s", limiter.name, exc)
        return returned

    def __del__(self) -> None:
        self.release()


def limits_for(backend: Backend, job_id: str, job_config: dict[str, Any]) -> TaskLimits:
    """The ``ctx.rate_limits`` mapping for a task of ``job_id``: one Limiter per entry of the
    job's ``limits:`` block (empty if it has none). Idempotent per process."""
    declared = job_config.get("limits") or {}
    out = TaskLimits()
    for name, raw in declared.items():
        key = (backend.description, job_id, name)
        if key not in _cache:
            # pydantic only for jobs that declare limits: it is ~0.1 s of every worker's start-up.
            from slurmctl.ratelimit.config import LimitConfig

            _cache[key] = Limiter(bucket_store(backend), name, LimitConfig.model_validate(raw), job_id=job_id)
        out[name] = _cache[key]
    return out
