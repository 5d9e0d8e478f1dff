"""The ``limits:`` block of a job file: named token buckets the handler reaches as
``ctx.rate_limits[name]``.

.. code-block:: yaml

    limits:
      geocoder: {rate: 40, burst: 20}            # 40 requests/s, bursts of 20, this job only
      openai:   {rate: 5, burst: 5, shared: true} # one bucket for every job that names it
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# A limit name as a dict key of the job file's ``limits:`` block.
LimitName = Annotated[str, StringConstraints(pattern=NAME_RE.pattern)]


class LimitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float = Field(gt=0, description="tokens per second, shared by every worker")
    burst: int = Field(1, ge=1, description="tokens that may be spent at once after a quiet spell")
    shared: bool = Field(
        False, description="one bucket for every job that declares this name (else one per job)"
    )
    lease_s: float = Field(
        5.0, gt=0, description="a worker books slots at most this far ahead; a dead worker's expire by then"
    )
    batch: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="slots per reservation (default: a quarter second of tokens, 1..100); larger "
        "saves store calls, smaller loses less when a worker stalls",
    )

    @property
    def batch_size(self) -> int:
        """Slots per reservation. A lease covers a contiguous stretch of the shared schedule, so
        a worker that stalls (CPU contention, GC, a slow publish) wastes its lease's remaining
        slots for everyone; a quarter second of tokens keeps that loss small."""
        if self.batch is not None:
            return self.batch
        return max(1, min(100, round(self.rate * 0.25)))


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid limit name; raise ValueError otherwise."""
    if not NAME_RE.match(name):
        raise ValueError(f"limit name {name!r}: expected a letter, then up to 63 of A-Z a-z 0-9 _ . -")
    return name
