"""A token bucket for sacct calls, persisted so successive cron runs share one budget.

slurmdbd is shared by everyone on the cluster; the default budget is 2 calls per minute with a burst of
2. The bucket's state lives in ``state/ratelimit.json`` (written under the poller lock).
"""

import json
import time
from typing import Callable, Optional

from . import fsutil


class TokenBucket:
    """``rate_per_min`` tokens per minute, at most ``burst`` banked. ``acquire`` blocks until one is free."""

    def __init__(
        self,
        rate_per_min: float,
        burst: Optional[float] = None,
        path: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_min <= 0:
            raise ValueError(f"rate_limit_per_min must be > 0, got {rate_per_min}")
        self.rate = float(rate_per_min) / 60.0
        self.burst = float(burst if burst is not None else max(1.0, rate_per_min))
        self.path = path
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.ts = clock()
        self.slept_ms = 0
        self.calls = 0
        if path:
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            self.tokens = min(self.burst, max(0.0, float(data["tokens"])))
            self.ts = float(data["ts"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            # A damaged file must not let a poller burst: start with an empty bucket.
            self.tokens = 0.0
            self.ts = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        if now > self.ts:
            self.tokens = min(self.burst, self.tokens + (now - self.ts) * self.rate)
        self.ts = now

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; return the seconds slept. Persists the state."""
        self._refill()
        waited = 0.0
        if self.tokens < 1.0:
            waited = (1.0 - self.tokens) / self.rate
            self.sleep(waited)
            self._refill()
            self.tokens = max(self.tokens, 1.0)
        self.tokens -= 1.0
        self.calls += 1
        self.slept_ms += int(waited * 1000)
        if self.path:
            fsutil.atomic_write_json(self.path, {"tokens": self.tokens, "ts": self.ts})
        return waited
