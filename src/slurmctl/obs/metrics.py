"""Metrics: a per-task summary written by the worker beside the task's results, handlers' own
metrics (``ctx.metrics``), the job's rollup from those summaries (no server), and its OpenMetrics
text (``slurmctl metrics JOB``). The summary's fields are the contract in docs/observability.md.

Nothing here runs per item: the worker reads clocks, rusage and /proc once per task, and counts
store calls and rate-limit tokens where they happen (per chunk or rarer).

Stdlib only, imported by the worker.
"""

from __future__ import annotations

import math
import re
import resource
import threading
import time
from collections.abc import Iterable
from typing import Any

FORMAT = 1
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Default histogram buckets (seconds-like values): Prometheus client's defaults.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Buckets of the rollup's per-task time histograms (task wall time, queue wait), seconds.
TASK_SECONDS_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


class Custom:
    """``ctx.metrics``: a handler's own counters, gauges and histograms, summed over the task.

    ``counter(name, n=1)`` adds; ``gauge(name, v)`` sets; ``histogram(name, v, buckets=None)``
    observes. Names are metric names (``[a-zA-Z_][a-zA-Z0-9_]*``); a bad name or a negative counter
    increment raises ValueError. Thread-safe."""

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.histograms: dict[str, _Hist] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _check(name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{name!r} is not a metric name ([a-zA-Z_][a-zA-Z0-9_]*)")

    def counter(self, name: str, n: float = 1) -> None:
        if n < 0:
            raise ValueError(f"counter {name!r}: increments are >= 0, not {n}")
        if name not in self.counters:
            self._check(name)
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def gauge(self, name: str, value: float) -> None:
        if name not in self.gauges:
            self._check(name)
        self.gauges[name] = float(value)

    def histogram(self, name: str, value: float, buckets: Iterable[float] | None = None) -> None:
        with self._lock:
            h = self.histograms.get(name)
            if h is None:
                self._check(name)
                h = self.histograms[name] = _Hist(buckets or DEFAULT_BUCKETS)
            h.observe(value)

    def to_dict(self) -> dict[str, Any]:
        hist = {name: h.to_dict() for name, h in self.histograms.items()}
        return {"counters": dict(self.counters), "gauges": dict(self.gauges), "histograms": hist}


class StoreStats:
    """Calls to the backend and the seconds they took, from every thread of the worker."""

    __slots__ = ("_lock", "calls", "seconds")

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.calls += 1
            self.seconds += seconds


class _Timed:
    """A proxy of a store that counts each method call and its time into ``stats``."""

    def __init__(self, inner: Any, stats: StoreStats) -> None:
        self._inner = inner
        self._stats = stats

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr) or name in ("batch_durability", "local_path", "list"):
            return attr
        stats, perf = self._stats, time.perf_counter

        def timed(*a: Any, **k: Any) -> Any:
            t = perf()
            try:
                return attr(*a, **k)
            finally:
                stats.add(perf() - t)

        return timed


def timed_store(inner: Any, stats: StoreStats) -> Any:
    """``inner`` with every public method call counted into ``stats``."""
    return _Timed(inner, stats)


def _proc_io() -> tuple[int, int]:
    """Bytes this process read and wrote through system calls (/proc/self/io rchar, wchar); 0, 0
    where there is no /proc."""
    try:
        with open("/proc/self/io", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        return int(fields[b"rchar"]), int(fields[b"wchar"])
    except (OSError, KeyError, ValueError):
        return 0, 0


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class TaskMetrics:
    """One task attempt's summary: made when the attempt starts, ``summary()`` when it ends."""

    def __init__(
        self, job: str, task: str, attempt: int, host: str, slurm_job_id: str | None, store: StoreStats
    ) -> None:
        self.job, self.task, self.attempt, self.host, self.slurm_job_id = (
            job,
            task,
            attempt,
            host,
            slurm_job_id,
        )
        self.custom = Custom()
        self.store = store
        self.started = time.time()
        self._t0 = time.perf_counter()
        self._cpu0 = _cpu_s()
        self._io0 = _proc_io()
        self._store0 = (store.calls, store.seconds)
        self._limits0: dict[str, tuple[int, float]] = {}
        self._limits: dict[str, Any] = {}

    def watch_limits(self, limits: dict[str, Any]) -> None:
        """Count the tokens the task takes from these limiters (``ctx.rate_limits``) and the time
        it waits for them: their counters now, against their counters at ``summary()``."""
        self._limits = dict(limits)
        self._limits0 = {n: (lim.tokens, lim.waited_s) for n, lim in self._limits.items()}

    def summary(
        self,
        *,
        items_ok: int,
        items_failed: int,
        items_handled: int,
        failed_by_category: dict[str, int],
        queue_wait_s: float | None,
    ) -> dict[str, Any]:
        """The summary (the contract's fields). ``items_handled``: items this attempt ran (not
        resumed from a checkpoint), for items/s."""
        wall = time.perf_counter() - self._t0
        r, w = _proc_io()
        limits = {}
        for name, lim in self._limits.items():
            t0, w0 = self._limits0.get(name, (0, 0.0))
            limits[name] = {"tokens": lim.tokens - t0, "wait_s": round(lim.waited_s - w0, 6)}
        return {
            "format": FORMAT,
            "job": self.job,
            "task": self.task,
            "attempt": self.attempt,
            "host": self.host,
            "slurm_job_id": self.slurm_job_id,
            "started": _iso(self.started),
            "ended": _iso(time.time()),
            "wall_s": round(wall, 6),
            "cpu_s": round(_cpu_s() - self._cpu0, 6),
            "items_ok": items_ok,
            "items_failed": items_failed,
            "failed_by_category": dict(failed_by_category),
            "items_per_s": round(items_handled / wall, 3) if wall > 0 else 0.0,
            # ru_maxrss is KiB on Linux; the process's peak (a pilot's: over its tasks so far).
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "read_bytes": max(0, r - self._io0[0]),
            "written_bytes": max(0, w - self._io0[1]),
            "queue_wait_s": None if queue_wait_s is None else round(queue_wait_s, 3),
            "ratelimit": limits,
            "store": {
                "calls": self.store.calls - self._store0[0],
                "seconds": round(self.store.seconds - self._store0[1], 6),
            },
            "custom": self.custom.to_dict(),
        }


def _iso(t: float) -> str:
    from slurmctl.obs.logs import iso_ms

    return iso_ms(t)


# -- the job's rollup and its OpenMetrics text --------------------------------------------------


class _Hist:
    """A histogram: counts per bucket (upper bounds, +Inf last), count and sum."""

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = sorted({float(b) for b in bounds} | {math.inf})
        self.counts = [0] * len(self.bounds)
        self.count = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.count += 1
        self.sum += v
        for i, b in enumerate(self.bounds):
            if v <= b:
                self.counts[i] += 1
                break

    def to_dict(self) -> dict[str, Any]:
        """``{"count", "sum", "buckets": {le: cumulative count}}`` (the summary's form)."""
        acc, buckets = 0, {}
        for b, c in zip(self.bounds, self.counts, strict=True):
            acc += c
            buckets[_le(b)] = acc
        return {"count": self.count, "sum": self.sum, "buckets": buckets}

    def merge_cumulative(self, count: int, total: float, buckets: dict[str, int]) -> bool:
        """Add a summary's histogram (cumulative buckets by ``le``); False if its bounds differ."""
        by_bound = {math.inf if k == "+Inf" else float(k): int(c) for k, c in buckets.items()}
        if sorted(by_bound) != self.bounds:
            return False
        prev = 0
        for i, b in enumerate(self.bounds):
            self.counts[i] += by_bound[b] - prev
            prev = by_bound[b]
        self.count += int(count)
        self.sum += float(total)
        return True


def rollup(summaries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The job's metrics from its tasks' summaries (one per published attempt): totals, maxima and
    histograms. Pure."""
    r: dict[str, Any] = {
        "tasks": 0,
        "items_ok": 0,
        "items_failed": 0,
        "failed_by_category": {},
        "wall_s": _Hist(TASK_SECONDS_BUCKETS),
        "cpu_s": 0.0,
        "peak_rss_bytes": 0,
        "read_bytes": 0,
        "written_bytes": 0,
        "queue_wait_s": _Hist(TASK_SECONDS_BUCKETS),
        "ratelimit": {},
        "store_calls": 0,
        "store_seconds": 0.0,
        "first_start": None,
        "last_end": None,
        "counters": {},
        "gauges": {},
        "histograms": {},
    }
    for s in summaries:
        r["tasks"] += 1
        r["items_ok"] += int(s.get("items_ok") or 0)
        r["items_failed"] += int(s.get("items_failed") or 0)
        for cat, n in (s.get("failed_by_category") or {}).items():
            r["failed_by_category"][cat] = r["failed_by_category"].get(cat, 0) + int(n)
        r["wall_s"].observe(float(s.get("wall_s") or 0.0))
        r["cpu_s"] += float(s.get("cpu_s") or 0.0)
        r["peak_rss_bytes"] = max(r["peak_rss_bytes"], int(s.get("peak_rss_bytes") or 0))
        r["read_bytes"] += int(s.get("read_bytes") or 0)
        r["written_bytes"] += int(s.get("written_bytes") or 0)
        if s.get("queue_wait_s") is not None:
            r["queue_wait_s"].observe(float(s["queue_wait_s"]))
        for name, v in (s.get("ratelimit") or {}).items():
            acc = r["ratelimit"].setdefault(name, {"tokens": 0, "wait_s": 0.0})
            acc["tokens"] += int(v.get("tokens") or 0)
            acc["wait_s"] += float(v.get("wait_s") or 0.0)
        st = s.get("store") or {}
        r["store_calls"] += int(st.get("calls") or 0)
        r["store_seconds"] += float(st.get("seconds") or 0.0)
        for key, op in (("first_start", min), ("last_end", max)):
            t = s.get("started" if key == "first_start" else "ended")
            if t:
                r[key] = t if r[key] is None else op(r[key], t)
        custom = s.get("custom") or {}
        for name, v in (custom.get("counters") or {}).items():
            r["counters"][name] = r["counters"].get(name, 0) + v
        for name, v in (custom.get("gauges") or {}).items():
            r["gauges"][name] = max(r["gauges"].get(name, -math.inf), v)
        for name, h in (custom.get("histograms") or {}).items():
            buckets = h.get("buckets") or {}
            acc = r["histograms"].get(name)
            if acc is None:
                acc = r["histograms"][name] = _Hist(
                    [math.inf if k == "+Inf" else float(k) for k in buckets] or DEFAULT_BUCKETS
                )
            acc.merge_cumulative(h.get("count", 0), h.get("sum", 0.0), buckets)
    return r


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


# Every metric family `slurmctl metrics` emits (name -> (type, unit, help)): the Grafana dashboard's
# test checks its queries against this table.
FAMILIES: dict[str, tuple[str, str, str]] = {
    "slurmctl_tasks_published": ("gauge", "", "tasks with a published metrics summary"),
    "slurmctl_tasks": ("gauge", "", "tasks by state (from the progress records)"),
    "slurmctl_items_ok": ("counter", "", "items handled without error, over published tasks"),
    "slurmctl_items_failed": ("counter", "", "failed items by category, over published tasks"),
    "slurmctl_items_per_second": ("gauge", "", "items per second from the first task start to the last end"),
    "slurmctl_task_wall_seconds": ("histogram", "seconds", "wall time per task attempt"),
    "slurmctl_task_cpu_seconds": ("counter", "seconds", "CPU time of the workers over published tasks"),
    "slurmctl_task_peak_rss_bytes": ("gauge", "bytes", "largest peak RSS of a worker"),
    "slurmctl_read_bytes": ("counter", "bytes", "bytes read by workers (rchar)"),
    "slurmctl_written_bytes": ("counter", "bytes", "bytes written by workers (wchar)"),
    "slurmctl_queue_wait_seconds": (
        "histogram",
        "seconds",
        "Slurm submit to start of the element running a task",
    ),
    "slurmctl_ratelimit_tokens": ("counter", "", "rate-limit tokens taken, per limit"),
    "slurmctl_ratelimit_wait_seconds": ("counter", "seconds", "time waited for rate-limit tokens, per limit"),
    "slurmctl_store_calls": ("counter", "", "calls to the storage backend by workers"),
    "slurmctl_store_seconds": ("counter", "seconds", "time in storage backend calls by workers"),
}


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.seen: set[str] = set()

    def family(self, name: str, kind: str, unit: str, help_: str) -> bool:
        """Declare a family; False (declare nothing) if one of that name was declared already."""
        if name in self.seen:
            return False
        self.seen.add(name)
        self.lines.append(f"# TYPE {name} {kind}")
        if unit:
            self.lines.append(f"# UNIT {name} {unit}")
        self.lines.append(f"# HELP {name} {_esc(help_)}")
        return True

    def sample(self, name: str, labels: dict[str, str], value: float) -> None:
        lab = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")

    def hist(self, name: str, labels: dict[str, str], h: _Hist) -> None:
        acc = 0
        for b, c in zip(h.bounds, h.counts, strict=True):
            acc += c
            self.sample(f"{name}_bucket", {**labels, "le": _le(b)}, acc)
        self.sample(f"{name}_count", labels, h.count)
        self.sample(f"{name}_sum", labels, h.sum)


def _seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    from datetime import datetime

    try:
        return (
            datetime.fromisoformat(b.replace("Z", "+00:00"))
            - datetime.fromisoformat(a.replace("Z", "+00:00"))
        ).total_seconds()
    except ValueError:
        return None


def openmetrics(job: str, r: dict[str, Any], tasks_by_state: dict[str, int] | None = None) -> str:
    """The OpenMetrics text of a job's rollup (``rollup``), every sample labelled ``job``; custom
    metrics are ``slurmctl_custom_<name>``. Ends with ``# EOF``."""
    out = _Out()
    j = {"job": job}

    def fam(name: str) -> None:
        out.family(name, *FAMILIES[name])

    fam("slurmctl_tasks_published")
    out.sample("slurmctl_tasks_published", j, r["tasks"])
    if tasks_by_state is not None:
        fam("slurmctl_tasks")
        for state, n in sorted(tasks_by_state.items()):
            out.sample("slurmctl_tasks", {**j, "state": state}, n)
    fam("slurmctl_items_ok")
    out.sample("slurmctl_items_ok_total", j, r["items_ok"])
    fam("slurmctl_items_failed")
    for cat, n in sorted(r["failed_by_category"].items()):
        out.sample("slurmctl_items_failed_total", {**j, "category": cat}, n)
    span = _seconds_between(r["first_start"], r["last_end"])
    fam("slurmctl_items_per_second")
    done = r["items_ok"] + r["items_failed"]
    out.sample("slurmctl_items_per_second", j, round(done / span, 3) if span else 0.0)
    fam("slurmctl_task_wall_seconds")
    out.hist("slurmctl_task_wall_seconds", j, r["wall_s"])
    fam("slurmctl_task_cpu_seconds")
    out.sample("slurmctl_task_cpu_seconds_total", j, round(r["cpu_s"], 6))
    fam("slurmctl_task_peak_rss_bytes")
    out.sample("slurmctl_task_peak_rss_bytes", j, r["peak_rss_bytes"])
    fam("slurmctl_read_bytes")
    out.sample("slurmctl_read_bytes_total", j, r["read_bytes"])
    fam("slurmctl_written_bytes")
    out.sample("slurmctl_written_bytes_total", j, r["written_bytes"])
    fam("slurmctl_queue_wait_seconds")
    out.hist("slurmctl_queue_wait_seconds", j, r["queue_wait_s"])
    fam("slurmctl_ratelimit_tokens")
    for name, v in sorted(r["ratelimit"].items()):
        out.sample("slurmctl_ratelimit_tokens_total", {**j, "limit": name}, v["tokens"])
    fam("slurmctl_ratelimit_wait_seconds")
    for name, v in sorted(r["ratelimit"].items()):
        out.sample("slurmctl_ratelimit_wait_seconds_total", {**j, "limit": name}, round(v["wait_s"], 6))
    fam("slurmctl_store_calls")
    out.sample("slurmctl_store_calls_total", j, r["store_calls"])
    fam("slurmctl_store_seconds")
    out.sample("slurmctl_store_seconds_total", j, round(r["store_seconds"], 6))
    # A name used for two kinds (by different tasks) is emitted as the first kind only.
    for name, v in sorted(r["counters"].items()):
        if out.family(f"slurmctl_custom_{name}", "counter", "", f"handler counter {name}"):
            out.sample(f"slurmctl_custom_{name}_total", j, v)
    for name, v in sorted(r["gauges"].items()):
        if out.family(f"slurmctl_custom_{name}", "gauge", "", f"handler gauge {name} (largest over tasks)"):
            out.sample(f"slurmctl_custom_{name}", j, v)
    for name, h in sorted(r["histograms"].items()):
        if out.family(f"slurmctl_custom_{name}", "histogram", "", f"handler histogram {name}"):
            out.hist(f"slurmctl_custom_{name}", j, h)
    out.lines.append("# EOF")
    return "\n".join(out.lines) + "\n"
