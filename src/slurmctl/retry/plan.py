"""The retry planner: which failed items run again, in which retry tasks, and not before when.

Pure: facts in (the current failures, how often each item ran), a plan out; no I/O, no clock,
the jitter's random source is a parameter. ``slurmctl.retry.store`` reads the facts and writes
the plan.

The rules:

* an item is retried for the category of its latest failure (failures/classify.py): transient,
  infrastructure and resources while it has had fewer attempts than ``retry.attempts.<category>``
  (the first run included); permanent and unknown never automatically;
* by hand (``slurmctl retry``) the caps do not apply, ``categories`` selects, and ``force`` adds
  permanent and unknown failures;
* the items go, in item order, into retry tasks of at most ``batch.items`` items each;
* an automatic plan waits ``delay_s`` (by hand: none): round r (the highest attempt the plan
  starts, 2 for a first retry) waits up to ``min(cap_s, base_s * 2^(r-2))``, uniformly drawn in
  [0, that] with full jitter.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

RETRYABLE = ("transient", "infrastructure", "resources")
CATEGORIES = ("transient", "permanent", "infrastructure", "resources", "unknown")


class Failure(NamedTuple):
    """The latest failure of an item, as its task's errors file records it."""

    item_id: int
    category: str
    type: str
    task_id: str  # the task whose batch holds the item's record


@dataclass(frozen=True)
class Policy:
    attempts: Mapping[str, int]  # category -> attempts of an item, the first run included
    base_s: float = 10.0
    cap_s: float = 600.0
    jitter: bool = True
    items_per_task: int = 1000

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        """The policy of a job's resolved config (its ``retry`` and ``batch`` blocks)."""
        r = config.get("retry") or {}
        backoff = r.get("backoff") or {}
        attempts = {"transient": 3, "infrastructure": 3, "resources": 2, **(r.get("attempts") or {})}
        return cls(
            attempts=attempts,
            base_s=float(backoff.get("base_s", 10.0)),
            cap_s=float(backoff.get("cap_s", 600.0)),
            jitter=backoff.get("jitter", "full") == "full",
            items_per_task=int((config.get("batch") or {}).get("items") or 1000),
        )

    def delay(self, round_: int, rng: Callable[[], float] = random.random) -> float:
        bound = min(self.cap_s, self.base_s * 2 ** max(round_ - 2, 0))
        return rng() * bound if self.jitter else bound


@dataclass
class Plan:
    tasks: list[list[int]] = field(default_factory=list)  # item ids of each retry task, item order
    origin: dict[str, list[int]] = field(default_factory=dict)  # source task -> items retried
    categories: dict[str, int] = field(default_factory=dict)
    causes: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    round: int = 0
    delay_s: float = 0.0

    @property
    def items(self) -> int:
        return sum(len(t) for t in self.tasks)


def plan(
    failures: Iterable[Failure],
    tries: Mapping[int, int],
    policy: Policy,
    *,
    by_hand: bool = False,
    categories: Iterable[str] | None = None,
    force: bool = False,
    rng: Callable[[], float] = random.random,
) -> Plan:
    """Plan the retry of ``failures``; ``tries[item]`` is how many times the item ran (1 if absent).
    Automatic (``by_hand`` False): the per-category caps; by hand: no caps, ``categories`` (None:
    every retryable one) and ``force`` (permanent and unknown too)."""
    chosen = set(categories) if categories is not None else set(RETRYABLE)
    if by_hand and force and categories is None:
        chosen = set(CATEGORIES)
    elif not force:
        chosen &= set(RETRYABLE)
    out = Plan()
    picked: dict[int, Failure] = {}
    top = 1
    for f in failures:
        if f.item_id in picked:
            continue
        n = tries.get(f.item_id, 1)
        if f.category not in chosen:
            reason = f.category if f.category in ("permanent", "unknown") else f"{f.category} not selected"
        elif not by_hand and n >= policy.attempts.get(f.category, 1):
            reason = f"{f.category}: attempts used up"
        else:
            picked[f.item_id] = f
            top = max(top, n)
            continue
        out.skipped[reason] = out.skipped.get(reason, 0) + 1
    if not picked:
        return out
    ids = sorted(picked)
    size = max(1, policy.items_per_task)
    out.tasks = [ids[i : i + size] for i in range(0, len(ids), size)]
    for i in ids:
        f = picked[i]
        out.origin.setdefault(f.task_id, []).append(i)
        out.categories[f.category] = out.categories.get(f.category, 0) + 1
        cause = f"{f.category}: {f.type}"
        out.causes[cause] = out.causes.get(cause, 0) + 1
    out.round = top + 1
    out.delay_s = 0.0 if by_hand else policy.delay(out.round, rng)  # by hand: at once
    return out
