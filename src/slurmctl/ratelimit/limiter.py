"""The worker side: a :class:`Limiter` per bucket, holding one lease of slots at a time.

``acquire()`` takes the next slot of the lease and sleeps until its time; when the lease is empty
it books a new batch with one atomic store update. Handlers use it through ``ctx.rate_limits``::

    api = ctx.rate_limits["geocoder"]
    api.acquire()                      # one token
    with api:                          # one token; a Throttled raised inside backs the bucket off
        r = session.get(url)
        if r.status_code == 429:
            raise Throttled(retry_after_s=float(r.headers.get("Retry-After", 1)))
    fetch = api.limited(fetch)         # decorator: token per call, retries on Throttled

Clocks: slot times are wall-clock epochs shared by all nodes, so nodes must be NTP-synced (an
offset of d seconds lets one node run up to R*d tokens ahead of the others).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from slurmctl.errors import ConfigError
from slurmctl.ratelimit import gcra
from slurmctl.ratelimit.errors import LimitNotFoundError, RateLimitTimeout, Throttled
from slurmctl.ratelimit.stores import BucketStore

if TYPE_CHECKING:
    from slurmctl.ratelimit.config import LimitConfig  # pydantic: imported only by jobs with limits

log = logging.getLogger("slurmctl.ratelimit")

F = TypeVar("F", bound=Callable[..., Any])

PAUSE_CHECK_S = 1.0  # how stale a worker's view of `slurmctl pause` may be (besides its lease)


def bucket_key(name: str, job_id: str, shared: bool) -> str:
    """Store key of a bucket: ``_shared/<name>`` for shared limits, ``<job>/<name>`` otherwise."""
    return f"_shared/{name}" if shared else f"{job_id}/{name}"


def pause_key(job_id: str) -> str:
    return f"{job_id}/_pause"


_live: weakref.WeakSet[Limiter] = weakref.WeakSet()


@atexit.register
def _release_all() -> None:
    # "Unused tokens are returned on exit": a worker ending normally (or on SIGTERM, via its
    # clean exit path) hands back its future slots. SIGKILL skips this; the slots then lapse.
    for limiter in list(_live):
        with contextlib.suppress(Exception):
            limiter.close()


class Limiter:
    """One named bucket as seen by one worker process. Thread-safe."""

    def __init__(
        self,
        store: BucketStore,
        name: str,
        config: LimitConfig,
        *,
        job_id: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.name = name
        self.config = config
        self.job_id = job_id
        self.key = bucket_key(name, job_id, config.shared)
        self.clock = clock
        self.sleep = sleep
        self._slots: deque[float] = deque()
        self._grant: gcra.Grant | None = None
        self._lock = threading.Lock()
        self._paused_checked = -1e18
        self._paused = False
        self._rtt = 0.0  # moving average of a reservation's store round trip, seconds
        # Statistics, for logs and benchmarks.
        self.tokens = 0
        self.reservations = 0
        self.dropped_late = 0
        self.waited_s = 0.0
        _live.add(self)

    # -- booking ---------------------------------------------------------------------------
    def _job_paused(self, now: float) -> bool:
        if now - self._paused_checked >= PAUSE_CHECK_S:
            t0 = self.clock()
            doc = self.store.get(pause_key(self.job_id))
            if self._rtt == 0.0:  # the first reservation's lead: a read costs about a write
                self._rtt = min(0.5, max(0.0, self.clock() - t0))
            self._paused = bool(doc and doc.get("paused"))
            self._paused_checked = now
        return self._paused

    def _reserve(self) -> float:
        """Book a batch. Returns 0.0 on success, else the epoch time to try again."""
        now = self.clock()
        if self._job_paused(now):
            return now + min(PAUSE_CHECK_S, 0.5)
        cfg = self.config

        # Book slots from "now + one store round trip": the grant reaches us that much later,
        # and slots already past on arrival would count as late and be dropped.
        lead = min(self._rtt, 0.5)

        def change(doc: dict[str, Any]) -> tuple[gcra.Grant | None, float, bool]:
            if doc.get("paused"):
                return None, 0.0, True
            grant, retry_at = gcra.reserve(doc, cfg.batch_size, self.clock() + lead, cfg.lease_s)
            return grant, retry_at, False

        t0 = self.clock()  # the limiter's clock (a wall clock; clamped against jumps)
        grant, retry_at, paused = self.store.modify(self.key, change, gcra.new_bucket(cfg.rate, cfg.burst))
        rtt = min(0.5, max(0.0, self.clock() - t0))
        self._rtt = rtt if self._rtt == 0.0 else 0.7 * self._rtt + 0.3 * rtt
        if paused:
            return now + 0.5
        if grant is None:
            return retry_at
        self.reservations += 1
        self._grant = grant
        self._slots.extend(grant.slots)
        return 0.0

    def acquire(self, n: int = 1, *, timeout: float | None = None) -> float:
        """Take ``n`` tokens, sleeping as long as the shared rate requires. Returns the seconds
        waited. Raises RateLimitTimeout if ``timeout`` passes first (tokens already taken for
        this call are spent). Not idempotent: each call spends tokens."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        with self._lock:
            for _ in range(n):
                while True:
                    now = self.clock()
                    late = self._grant.late_s if self._grant is not None else gcra.MIN_LATE_S
                    while self._slots and self._slots[0] < now - late:
                        # Spending a stale slot now could bunch requests beyond rate + burst.
                        self._slots.popleft()
                        self.dropped_late += 1
                    if self._slots:
                        slot = self._slots.popleft()
                        if slot > now:
                            if deadline is not None and time.monotonic() + (slot - now) > deadline:
                                self._slots.appendleft(slot)
                                raise RateLimitTimeout(
                                    f"rate limit {self.name!r}: no token within {timeout}s"
                                )
                            self.sleep(slot - now)
                        self.tokens += 1
                        break
                    retry_at = self._reserve()
                    if retry_at:
                        wait = max(0.01, retry_at - self.clock())
                        if deadline is not None and time.monotonic() + wait > deadline:
                            raise RateLimitTimeout(
                                f"rate limit {self.name!r}: no token within {timeout}s "
                                "(paused, throttled or fully booked)"
                            )
                        self.sleep(min(wait, 1.0))
        waited = time.monotonic() - start
        self.waited_s += waited
        return waited

    # -- 429 --------------------------------------------------------------------------------
    def throttled(self, retry_after_s: float) -> None:
        """Tell every worker of the bucket to back off: nothing is issued for ``retry_after_s``.
        Our own remaining slots are dropped (they were booked before the API pushed back)."""
        with self._lock:
            self._slots.clear()
            self._grant = None
        self.store.modify(
            self.key,
            lambda doc: gcra.throttle(doc, retry_after_s, self.clock()),
            gcra.new_bucket(self.config.rate, self.config.burst),
        )
        log.warning("rate limit %s: remote API throttled; backing off %.1fs", self.name, retry_after_s)

    def __enter__(self) -> Limiter:
        self.acquire()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, Throttled):
            self.throttled(exc.retry_after_s)

    def limited(self, fn: F, *, retries: int = 5) -> F:
        """Wrap ``fn``: one token per call; on Throttled, back off and call again (up to
        ``retries`` times, then the Throttled propagates)."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(retries + 1):
                self.acquire()
                try:
                    return fn(*args, **kwargs)
                except Throttled as exc:
                    self.throttled(exc.retry_after_s)
                    if attempt == retries:
                        raise
            raise AssertionError("unreachable")

        return wrapper  # type: ignore[return-value]

    # -- end --------------------------------------------------------------------------------
    def close(self) -> int:
        """Hand back the unused future slots of the current lease. Returns how many went back.
        Idempotent."""
        with self._lock:
            grant, unused = self._grant, list(self._slots)
            self._slots.clear()
            self._grant = None
        if grant is None or not unused:
            return 0
        try:
            return self.store.modify(self.key, lambda doc: gcra.release(doc, grant, unused, self.clock()))
        except KeyError:
            return 0


def set_limit(
    store: BucketStore, name: str, *, rate: float | None, burst: int | None, job_id: str | None
) -> dict[str, Any]:
    """Change a bucket's rate/burst while jobs run (``slurmctl limits set``). ``job_id`` None
    means the shared bucket. Creates the bucket if no worker has yet. Returns the new document."""
    key = bucket_key(name, job_id or "", job_id is None)
    if (rate is not None and rate <= 0) or (burst is not None and burst < 1):
        raise ConfigError(f"limit {name!r}: --rate must be > 0 and --burst >= 1")

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        gcra.set_limit(doc, rate, burst)
        return dict(doc)

    if rate is None and store.get(key) is None:
        raise LimitNotFoundError(
            f"no rate limit {name!r} {'shared' if job_id is None else 'of job ' + job_id} yet",
            hint="give --rate to create it, or check the name / --job",
        )
    return store.modify(key, change, gcra.new_bucket(rate or 1.0, burst or 1))


def set_paused(store: BucketStore, job_id: str, paused: bool) -> None:
    """Stop (or restart) issuing tokens to the workers of ``job_id``, for every bucket it uses.
    Takes effect within PAUSE_CHECK_S plus one lease. Idempotent."""

    def change(doc: dict[str, Any]) -> None:
        doc["paused"] = paused
        doc["changed_at"] = time.time()

    store.modify(pause_key(job_id), change, {"paused": paused})
