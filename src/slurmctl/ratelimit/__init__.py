"""Cluster-wide rate limits: named token buckets shared by every worker of a job (or of every job
that names a shared bucket). See docs/rate-limits.md and :mod:`slurmctl.ratelimit.gcra`."""

from slurmctl.ratelimit.config import LimitConfig
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
