"""Retries with capped exponential back-off for S3 / DynamoDB / SQS calls.

botocore retries a couple of times on its own; this loop keeps going until a deadline so that an
endpoint outage of minutes (a network partition, an S3 brown-out, a throttled table) delays a job
instead of failing it. Only errors that can succeed on a retry are retried: throttling, 5xx, and
network errors. A network error after the request was sent is *ambiguous* — the write may have
been applied — so callers of conditional writes pass an :class:`Attempt` and, when a retried
conditional write then fails its condition, check whether their own earlier attempt won.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from slurmctl.errors import StorageError

log = logging.getLogger("slurmctl.storage.aws")

T = TypeVar("T")

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "LimitExceededException",
        "TransactionInProgressException",
    }
)
SERVER_CODES = frozenset({"InternalError", "InternalServerError", "ServiceUnavailable", "503", "500"})


@dataclass
class Attempt:
    """Filled in by :func:`call`: whether an earlier try may have reached the server."""

    ambiguous: bool = False
    tries: int = 0


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "")) or None
    return None


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _classify(exc: BaseException) -> str | None:
    """'throttle', 'server', 'network' (retriable) or None (not retriable)."""
    import botocore.exceptions as bce

    if isinstance(exc, bce.ClientError):
        code = error_code(exc) or ""
        if code in THROTTLE_CODES:
            return "throttle"
        status = http_status(exc) or 0
        if code in SERVER_CODES or status >= 500:
            return "server"
        return None
    if isinstance(
        exc,
        bce.EndpointConnectionError
        | bce.ConnectionClosedError
        | bce.ReadTimeoutError
        | bce.ConnectTimeoutError
        | bce.ResponseStreamingError
        | bce.IncompleteReadError,
    ):
        return "network"
    if isinstance(exc, bce.HTTPClientError | ConnectionError | TimeoutError):
        return "network"
    return None


def call(
    fn: Callable[[], T],
    *,
    what: str,
    deadline_s: float,
    attempt: Attempt | None = None,
    base_s: float = 0.05,
    cap_s: float = 5.0,
) -> T:
    """Run ``fn`` until it succeeds, a non-retriable error is raised, or ``deadline_s`` passes.

    Returns ``fn``'s result. Raises the non-retriable exception unchanged (callers translate
    it), or StorageError naming ``what`` once the deadline is spent. Idempotent exactly when
    ``fn`` is; see the module docstring for conditional writes.
    """
    attempt = attempt if attempt is not None else Attempt()
    give_up = time.monotonic() + deadline_s
    delay = base_s
    while True:
        attempt.tries += 1
        try:
            return fn()
        except Exception as exc:
            kind = _classify(exc)
            if kind is None:
                raise
            if kind == "network":
                # A connect error never reached the server; anything later might have.
                import botocore.exceptions as bce

                if not isinstance(exc, bce.EndpointConnectionError | bce.ConnectTimeoutError):
                    attempt.ambiguous = True
            now = time.monotonic()
            if now >= give_up:
                raise StorageError(
                    f"{what}: still failing after {deadline_s:.0f}s of retries ({kind}): {exc}",
                    hint="check the endpoint / network and AWS service health; the work is safe to re-run",
                ) from exc
            sleep = min(cap_s, delay) * (0.5 + random.random() / 2)
            if attempt.tries in (1, 5) or attempt.tries % 20 == 0:
                log.warning("%s: %s error (%s); retrying in %.2fs", what, kind, exc, sleep)
            time.sleep(min(sleep, max(0.0, give_up - now)))
            delay = min(cap_s, delay * 2)
