"""Errors of the rate limiter."""

from __future__ import annotations

from slurmctl.errors import EXIT_RATE_LIMIT, SlurmctlError, StateError, TransientItemError


class Throttled(TransientItemError):
    """Raise this from a handler when the remote API answers 429 / "slow down".

    Inside ``with ctx.rate_limits[name]:`` or a ``.limited`` function, the limiter turns it into a
    bucket-wide back-off (every worker of the bucket stops for ``retry_after_s``, then resumes at
    the plain rate); ``.limited`` also retries the call. Escaping the handler, it fails the item
    as *transient*, so ``slurmctl retry`` reruns it.
    """

    def __init__(
        self, message: str = "remote API throttled the request", *, retry_after_s: float = 1.0
    ) -> None:
        super().__init__(f"{message} (retry after {retry_after_s:g}s)")
        self.retry_after_s = retry_after_s


class LimitNotFoundError(StateError):
    """``slurmctl limits set`` / ``ctx.rate_limits`` named a bucket that does not exist."""


class RateLimitTimeout(SlurmctlError):
    """``acquire(timeout=...)`` gave up (the bucket is paused, blocked or booked out)."""

    exit_code = EXIT_RATE_LIMIT
