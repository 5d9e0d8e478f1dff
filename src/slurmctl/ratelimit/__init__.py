"""Cluster-wide rate limits: named token buckets shared by every worker of a job (or of every job
that names a shared bucket). See docs/rate-limits.md and :mod:`slurmctl.ratelimit.gcra`."""

from slurmctl.ratelimit.errors import LimitNotFoundError, RateLimitTimeout, Throttled
from slurmctl.ratelimit.limiter import Limiter, set_limit, set_paused
from slurmctl.ratelimit.runtime import bucket_store, limits_for

__all__ = [
    "LimitConfig",
    "LimitNotFoundError",
    "Limiter",
    "RateLimitTimeout",
    "Throttled",
    "bucket_store",
    "limits_for",
    "set_limit",
    "set_paused",
]


def __getattr__(name: str) -> object:
    # LimitConfig is a pydantic model: imported on first use, so that a worker of a job without
    # limits never pays for pydantic (~0.1-0.2 s of start-up).
    if name == "LimitConfig":
        from slurmctl.ratelimit.config import LimitConfig

        return LimitConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
