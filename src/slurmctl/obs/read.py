"""Reading a job's logs and metrics back (``slurmctl logs``, ``slurmctl metrics``): the published
logs and metrics summaries beside the results, and, for ``logs --follow``, the live logs of running
attempts under ``jobs/<job>/logs/live/`` (local backend). Reads only."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from slurmctl.obs.logs import LEVELS, read_lines
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

_PUBLISHED = re.compile(r"/results/(t[0-9]+)/a([0-9]+)\.log\.jsonl\.gz$")
_LIVE = re.compile(r"/logs/live/(t[0-9]+)\.a([0-9]+)\.jsonl$")
_METRICS = re.compile(r"/results/(t[0-9]+)/a([0-9]+)\.metrics\.json$")

Emit = Callable[[dict[str, Any]], None]


def line_filter(level: str | None, grep: str | None) -> Callable[[dict[str, Any]], bool]:
    """``keep(record)``: at least ``level`` and, with ``grep`` (a regular expression), matching
    the message, the logger or the traceback. Raises ConfigError for a bad level or pattern."""
    from slurmctl.errors import ConfigError

    least = 0
    if level:
        if level.lower() not in LEVELS:
            raise ConfigError(f"--level {level!r} is not a level", hint=f"use one of {', '.join(LEVELS)}")
        least = LEVELS[level.lower()]
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise ConfigError(f"--grep {grep!r} is not a regular expression: {exc}") from None

    def keep(d: dict[str, Any]) -> bool:
        if least and LEVELS.get(str(d.get("level")), 0) < least:
            return False
        if pattern is not None:
            text = f"{d.get('msg', '')}\n{d.get('logger', '')}\n{d.get('exc', '')}"
            return pattern.search(text) is not None
        return True

    return keep


def published_logs(backend: Backend, job_id: str, task: str | None = None) -> list[tuple[str, int, str]]:
    """``(task, attempt, key)`` of every stored attempt log of the job (of ``task``), in order."""
    prefix = keys.result_prefix(job_id, task) if task else keys.results_prefix(job_id)
    found = []
    for key in backend.objects.list(prefix):
        m = _PUBLISHED.search(key)
        if m:
            found.append((m.group(1), int(m.group(2)), key))
    return sorted(found)


def _live_logs(backend: Backend, job_id: str, task: str | None) -> list[tuple[str, int, str]]:
    found = []
    for key in backend.objects.list(keys.live_logs_prefix(job_id)):
        m = _LIVE.search(key)
        if m and (task is None or m.group(1) == task):
            found.append((m.group(1), int(m.group(2)), key))
    return sorted(found)


def show(backend: Backend, job_id: str, task: str | None, emit: Emit) -> int:
    """Emit every line of the stored logs (by task, attempt, then time). Returns the lines read."""
    n = 0
    for _tid, _attempt, key in published_logs(backend, job_id, task):
        for d in read_lines(backend.objects.get(key)):
            emit(d)
            n += 1
    return n


class _Live:
    """Where a live log was read up to: a byte offset and the lines emitted."""

    __slots__ = ("lines", "offset", "tail")

    def __init__(self) -> None:
        self.offset = 0
        self.lines = 0
        self.tail = b""


def follow(
    backend: Backend,
    job_id: str,
    task: str | None,
    emit: Emit,
    *,
    poll_s: float = 0.5,
    finished: Callable[[], bool],
    relist_s: float = 5.0,
) -> None:
    """Emit the stored logs, then every new line of the running attempts' live logs as it comes,
    and the stored log of an attempt that ends (the lines its live log did not show), until
    ``finished()`` holds and no live log is left. Live logs exist on the local backend only (they
    are files under the job root); on other backends only stored logs appear, as attempts end."""
    done: set[tuple[str, int]] = set()
    live: dict[tuple[str, int], _Live] = {}
    next_list = 0.0
    last_round = False
    while True:
        ended = finished()
        now = time.monotonic()
        current = {(t, a): key for t, a, key in _live_logs(backend, job_id, task)}
        vanished = [k for k in live if k not in current]
        if now >= next_list or vanished or ended:  # attempts that ended (or ran between two looks)
            next_list = now + relist_s
            for t, a, key in published_logs(backend, job_id, task):
                if (t, a) in done:
                    continue
                seen = live.pop((t, a), None)
                records = read_lines(backend.objects.get(key))
                for d in records[seen.lines if seen else 0 :]:
                    emit(d)
                done.add((t, a))
        for k, key in current.items():
            if k in done:
                continue
            path = backend.objects.local_path(key)
            st = live.setdefault(k, _Live())
            if path is None:
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(st.offset)
                    chunk = f.read()
            except FileNotFoundError:  # stored meanwhile: the next listing shows its stored log
                continue
            st.offset += len(chunk)
            data = st.tail + chunk
            cut = data.rfind(b"\n") + 1
            st.tail = data[cut:]
            if cut:
                for d in read_lines(data[:cut]):
                    emit(d)
                    st.lines += 1
        if last_round:
            return
        if ended and not current:
            last_round = True  # one more pass: logs stored since this round's listing
            continue
        time.sleep(poll_s)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _nums(m: Any, *, nested: bool = False) -> bool:
    if m is None:
        return True
    if not isinstance(m, dict):
        return False
    return all((_nums(v) and v is not None) if nested else _num(v) for v in m.values())


def well_formed(d: Any) -> bool:
    """Whether ``d`` has the metrics summary's shape (format 1, docs/observability.md): numbers
    where numbers go, ISO strings for the times. A summary that is not is left out of the rollup
    rather than stopping ``slurmctl metrics`` or a dashboard."""
    if not isinstance(d, dict) or d.get("format") != 1:
        return False
    scalars = (
        "wall_s",
        "cpu_s",
        "items_ok",
        "items_failed",
        "peak_rss_bytes",
        "read_bytes",
        "written_bytes",
        "queue_wait_s",
        "items_per_s",
    )
    if not all(d.get(k) is None or _num(d[k]) for k in scalars):
        return False
    if not all(d.get(k) is None or isinstance(d[k], str) for k in ("started", "ended")):
        return False
    custom = {} if d.get("custom") is None else d["custom"]
    return (
        _nums(d.get("failed_by_category"))
        and _nums(d.get("ratelimit"), nested=True)
        and _nums(d.get("store"))
        and isinstance(custom, dict)
        and _nums(custom.get("counters"))
        and _nums(custom.get("gauges"))
        and _histograms(custom.get("histograms"))
    )


def _bound(k: Any) -> bool:
    if k == "+Inf":
        return True
    try:
        return math.isfinite(float(k))
    except (TypeError, ValueError):
        return False


def _histograms(h: Any) -> bool:
    """``{name: {"count", "sum", "buckets": {le: cumulative count}}}`` with numbers throughout."""
    if h is None:
        return True
    if not isinstance(h, dict):
        return False
    for v in h.values():
        if not isinstance(v, dict) or not all(v.get(k) is None or _num(v[k]) for k in ("count", "sum")):
            return False
        b = v.get("buckets") or {}
        if not isinstance(b, dict) or not all(_bound(k) and _num(c) for k, c in b.items()):
            return False
    return True


def metrics_summaries(backend: Backend, job_id: str) -> Iterator[dict[str, Any]]:
    """The metrics summary of every published attempt (workers store one only when they publish;
    an attempt discarded at ``.done`` deletes its own). Unreadable or malformed summaries are
    skipped."""
    import json

    from slurmctl.errors import ObjectNotFoundError

    for key in backend.objects.list(keys.results_prefix(job_id)):
        if _METRICS.search(key):
            try:
                d = json.loads(backend.objects.get(key))
            except (ValueError, ObjectNotFoundError):
                continue
            if well_formed(d):
                yield d


def job_openmetrics(backend: Backend, job_id: str) -> str:
    """The job's OpenMetrics text (``slurmctl metrics JOB`` and the server's
    ``/jobs/{job}/metrics``): the rollup of its tasks' summaries and its tasks by state. Raises
    JobNotFoundError (exit 5, HTTP 404) for an unknown job."""
    from slurmctl.obs.metrics import openmetrics, rollup
    from slurmctl.status import progress

    p = progress(backend, job_id)
    return openmetrics(job_id, rollup(metrics_summaries(backend, job_id)), p.task_states)
