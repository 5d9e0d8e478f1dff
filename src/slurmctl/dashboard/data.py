"""What the dashboard shows, gathered in one pass over a job and aggregated up front.

Read (nothing is written): the job record and manifest, every task record (one scan) and one
listing of ``results/`` (both shared with :func:`slurmctl.failures.analyze.analyze`; the listing
says which attempts left a metrics file and a log), each task's metrics file of its latest attempt
when present (``a<N>.metrics.json``), the retry manifests, and for the few tasks shown in full (the
drill-down set, at most ``DETAILS``) their manifests, first errors and log tail
(``a<N>.log.jsonl.gz``). Jobs run before metrics and logs existed simply have none: every figure
that needs them says so.

Size: the per-task table is columnar integers (task ids delta-encoded, states and hosts as codes,
errors sparse), about 35 bytes a task, so a 100k-task job's page stays under 5 MB; everything else
is bounded (``BINS`` time bins, ``SIGNATURES`` groups, ``DETAILS`` tasks, ``LOG_LINES`` lines of
``LINE_CHARS``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import time
from collections import Counter, deque
from typing import Any

from slurmctl.errors import JobNotFoundError, ObjectNotFoundError, SlurmctlError, StorageError
from slurmctl.storage import keys
from slurmctl.storage.base import Backend, Record

FORMAT = 1
BINS = 60  # time bins of the series (at least a second each)
SIGNATURES = 50  # failure groups shipped in full
DETAILS = 150  # tasks whose drill-down (manifest, errors, log tail) is in a written file
LOG_LINES = 30  # log tail per task
ERRORS = 5  # failed items per task in a drill-down
LINE_CHARS = 400  # a log line or error message is cut to this
TRACE_LINES = 12  # traceback lines kept (the last ones)
SLOWEST = 20
STATES = ("pending", "queued", "running", "succeeded", "failed", "cancelled")
_STATE_CODE = {s: i for i, s in enumerate(STATES)}


def _cut(text: Any, n: int = LINE_CHARS) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _trace(text: str) -> str:
    lines = (text or "").rstrip("\n").splitlines()
    if len(lines) > TRACE_LINES:
        lines = ["…", *lines[-TRACE_LINES:]]
    return "\n".join(_cut(line) for line in lines)


def _json(backend: Backend, key: str) -> dict[str, Any] | None:
    """The JSON object at ``key``; None if absent or not a JSON object (an unreadable file is left
    out of the figures, not a reason to show nothing)."""
    try:
        value = json.loads(backend.objects.get(key))
    except ObjectNotFoundError:
        return None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _when(v: Any) -> float | None:
    """A metrics summary's time (ISO-8601 UTC, docs/observability.md) as a Unix time."""
    if not isinstance(v, str):
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _results_prefix(job_id: str) -> str:
    return keys.result_prefix(job_id, "").rstrip("/") + "/"


def _attempt_files(job_id: str, result_keys: list[str]) -> dict[str, dict[str, set[int]]]:
    """task -> {"metrics": attempts, "log": attempts, "done": {0} if published}, from the keys
    under the job's ``results/``."""
    prefix = _results_prefix(job_id)
    out: dict[str, dict[str, set[int]]] = {}
    for key in result_keys:
        task, _, name = key[len(prefix) :].partition("/")
        kind = None
        if name == ".done":
            out.setdefault(task, {}).setdefault("done", set()).add(0)
            continue
        if name.endswith(".metrics.json"):
            kind, stem = "metrics", name[: -len(".metrics.json")]
        elif name.endswith(".log.jsonl.gz"):
            kind, stem = "log", name[: -len(".log.jsonl.gz")]
        else:
            continue
        if stem[:1] == "a" and stem[1:].isdigit():
            out.setdefault(task, {}).setdefault(kind, set()).add(int(stem[1:]))
    return out


def _pick(attempts: set[int] | None, attempt: int) -> int | None:
    """The attempt whose file to read: the record's latest attempt if it left one, else the
    highest that did."""
    if not attempts:
        return None
    return attempt if attempt in attempts else max(attempts)


def metrics_key(job_id: str, task_id: str, attempt: int) -> str:
    return f"{keys.result_prefix(job_id, task_id)}a{attempt}.metrics.json"


def log_key(job_id: str, task_id: str, attempt: int) -> str:
    return f"{keys.result_prefix(job_id, task_id)}a{attempt}.log.jsonl.gz"


class _Bins:
    """Fixed time bins over [t0, t1]; spreads amounts over intervals with difference arrays."""

    def __init__(self, t0: float, t1: float, n: int = BINS, min_step: float = 1.0) -> None:
        span = max(t1 - t0, min_step)
        self.t0 = t0
        self.step = max(span / n, min_step)
        self.n = max(1, math.ceil(span / self.step - 1e-9))

    def at(self, t: float) -> int:
        return min(max(int((t - self.t0) / self.step), 0), self.n - 1)

    def spread(self, diff: list[float], start: float, end: float, amount: float) -> None:
        """Add ``amount`` evenly over the bins [start, end] touch (``diff`` has n + 1 cells)."""
        b0, b1 = self.at(start), self.at(max(end, start))
        share = amount / (b1 - b0 + 1)
        diff[b0] += share
        diff[b1 + 1] -= share

    def occupy(self, diff: list[float], direct: list[float], start: float, end: float) -> None:
        """Add to each bin the fraction of it [start, end] covers (``direct`` holds the partial
        first and last bins, ``diff`` the whole ones between): summed over tasks, the mean number
        of tasks running in each bin."""
        end = min(max(end, start), self.t0 + self.n * self.step)
        b0, b1 = self.at(start), self.at(end)
        if b0 == b1:
            direct[b0] += (end - start) / self.step
            return
        direct[b0] += (self.t0 + (b0 + 1) * self.step - start) / self.step
        direct[b1] += (end - (self.t0 + b1 * self.step)) / self.step
        if b1 > b0 + 1:
            diff[b0 + 1] += 1
            diff[b1] -= 1

    @staticmethod
    def total(diff: list[float]) -> list[float]:
        out, run = [], 0.0
        for d in diff[:-1]:
            run += d
            out.append(run)
        return out


def _hist(values: list[float], edges: list[float]) -> list[int]:
    """Counts of ``values`` per bin [edges[i], edges[i+1]); the last bin is open above."""
    import bisect

    counts = [0] * (len(edges) - 1)
    for v in values:
        counts[min(max(bisect.bisect_right(edges, v) - 1, 0), len(counts) - 1)] += 1
    return counts


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(int(p * (len(s) - 1) + 0.5), len(s) - 1)]

    return {"n": len(s), "p50": q(0.5), "p95": q(0.95), "max": s[-1], "mean": sum(s) / len(s)}


def _r(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def collect(
    backend: Backend, job_id: str, *, details: int = DETAILS, now: float | None = None
) -> dict[str, Any]:
    """The dashboard's data of ``job_id`` (a JSON-able dict; see the module docstring). Reads
    only. Raises JobNotFoundError, StorageError."""
    from slurmctl.failures.analyze import analyze
    from slurmctl.retry.tasks import manifests
    from slurmctl.status import progress

    now = now or time.time()
    keys.check_job_id(job_id)
    job_rec = backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id))
    if job_rec is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    summary = progress(backend, job_id, now=now)
    config: dict[str, Any] = {}
    manifest = _json(backend, keys.job_manifest(job_id))
    if manifest and isinstance(manifest.get("config"), dict):
        config = manifest["config"]
    resources_cfg = config.get("resources") or {}
    cpus = resources_cfg.get("cpus") or 1
    mem_gb = resources_cfg.get("mem_gb")
    limits_cfg = config.get("limits") or {}

    records = backend.state.scan(keys.TASKS_TABLE, keys.task_states_prefix(job_id))
    result_keys = list(backend.objects.list(_results_prefix(job_id)))  # one listing for both
    files = _attempt_files(job_id, result_keys)
    analysis = analyze(backend, job_id, records, result_keys)
    del result_keys
    retries = manifests(backend.objects, job_id)

    # (task, record, the attempt whose metrics to read): metrics files are read one at a time in the
    # loop below and only their figures kept (a 100k-task job's files would be ~0.5 GB as dicts).
    rows: list[tuple[str, dict[str, Any], int | None]] = []
    for rec in records:
        tid = rec.key.rpartition("/")[2]
        if not (tid[:1] == "t" and tid[1:].isdigit()):
            continue
        v = rec.value
        rows.append((tid, v, _pick(files.get(tid, {}).get("metrics"), v.get("attempt") or 0)))

    starts = [t for _, v, _ in rows if (t := _num(v.get("started_at")))]
    ends = [t for _, v, _ in rows if (t := _num(v.get("finished_at")))]
    t0 = min(starts) if starts else (job_rec.value.get("created_at") or now)
    terminal = summary.state in ("succeeded", "failed", "cancelled", "purging")
    t1 = max([*ends, *starts]) if terminal and (ends or starts) else now
    bins = _Bins(t0, t1)
    n1 = bins.n + 1
    ok_d, fail_d, handled_d, run_d, run_x = ([0.0] * n1 for _ in range(5))
    originals = job_rec.value.get("tasks") or len(rows)  # tasks after these are item retry tasks
    limit_d: dict[str, list[float]] = {}
    limit_tot: dict[str, dict[str, float]] = {}

    hosts: list[str] = []
    host_code: dict[str, int] = {}
    errors: list[str] = []
    error_code: dict[str, int] = {}
    cols: dict[str, list[int]] = {
        k: [] for k in ("id", "st", "att", "items", "ok", "fail", "start", "dur", "qw", "cpu", "rss", "host")
    }
    prev = 0
    # Times in the table in tenths of a second for a job shorter than an hour, else whole seconds.
    unit = 0.1 if bins.step * bins.n < 3600 else 1.0
    err_at: list[int] = []  # rows of failed tasks (the table is sparse here) ...
    err_code: list[int] = []  # ... and their error texts' codes in ``errors``
    cpu_eff: list[float] = []
    rss_mb: list[float] = []
    rss_over = 0
    queue_waits: list[float] = []
    durations: list[tuple[float, str]] = []
    slurm_states: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    have_metrics = 0
    store_calls = store_s = 0.0
    custom: dict[str, Counter[str]] = {"counters": Counter()}
    for tid, v, m_attempt in rows:
        m = _json(backend, metrics_key(job_id, tid, m_attempt)) if m_attempt is not None else None
        idx = int(tid[1:])
        state = v.get("state") or "pending"
        started, finished = _num(v.get("started_at")), _num(v.get("finished_at"))
        total, done, failed = (
            (v.get("items_total") or 0),
            (v.get("items_done") or 0),
            (v.get("items_failed") or 0),
        )
        if state == "succeeded":
            done = max(done, total)
        owner = v.get("owner") or ""
        host = owner.split(":", 1)[0] if owner else ""
        if m and isinstance(m.get("host"), str):
            host = m["host"]
        cols["id"].append(idx - prev)
        prev = idx
        cols["st"].append(_STATE_CODE.get(state, 0))
        cols["att"].append(v.get("attempt") or 0)
        cols["items"].append(total)
        cols["ok"].append(done - failed)
        cols["fail"].append(failed)
        cols["start"].append(round((started - t0) / unit) if started else -1)
        dur = finished - started if started and finished and finished >= started else None
        if dur is None and started and state == "running":
            dur = max(now - started, 0.0)
        cols["dur"].append(round(dur / unit) if dur is not None else -1)
        if host not in host_code:
            host_code[host] = len(hosts)
            hosts.append(host)
        cols["host"].append(host_code[host])
        err_text = v.get("error") if state == "failed" else None
        if v.get("cause"):
            causes[v["cause"]] += 1
        if v.get("slurm_state"):
            slurm_states[v["slurm_state"]] += 1
        if err_text:
            err_text = _cut(err_text, 200)
            if err_text not in error_code:
                error_code[err_text] = len(errors)
                errors.append(err_text)
            err_at.append(len(cols["st"]) - 1)
            err_code.append(error_code[err_text])
        if started and finished:
            durations.append((finished - started, tid))
            bins.occupy(run_d, run_x, started, finished)
            b = bins.at(finished)
            if state == "succeeded":
                ok_d[b] += done - failed
                ok_d[b + 1] -= done - failed
                fail_d[b] += failed
                fail_d[b + 1] -= failed
                if idx < originals:  # as status counts: a retry task's items were counted already
                    handled_d[b] += done
                    handled_d[b + 1] -= done
        elif started and state == "running":
            bins.occupy(run_d, run_x, started, now)
        # Metrics of the latest attempt that left some.
        qw = cpu = rss = -1
        if m:
            have_metrics += 1
            wall, cpu_s = _num(m.get("wall_s")), _num(m.get("cpu_s"))
            if wall and cpu_s is not None and wall > 0:
                eff = 100.0 * cpu_s / wall / cpus
                cpu_eff.append(eff)
                cpu = round(eff)
            peak = _num(m.get("peak_rss_bytes"))
            if peak is not None:
                mb = peak / 2**20
                rss_mb.append(mb)
                rss = round(mb)
                req = (v.get("resources") or {}).get("mem_mb") or (mem_gb * 1024 if mem_gb else None)
                if req and mb > req:
                    rss_over += 1
            wait = _num(m.get("queue_wait_s"))
            if wait is not None:
                queue_waits.append(wait)
                qw = round(wait / unit)
            m_start = _when(m.get("started")) or started
            m_end = _when(m.get("ended")) or finished or now
            for name, use in (m.get("ratelimit") or {}).items():
                if not isinstance(use, dict):
                    continue
                tokens, waited = _num(use.get("tokens")) or 0.0, _num(use.get("wait_s")) or 0.0
                tot = limit_tot.setdefault(str(name), {"tokens": 0.0, "wait_s": 0.0, "tasks": 0})
                tot["tokens"] += tokens
                tot["wait_s"] += waited
                tot["tasks"] += 1
                if m_start and tokens:
                    bins.spread(limit_d.setdefault(str(name), [0.0] * n1), m_start, m_end, tokens)
            store = m.get("store") or {}
            store_calls += _num(store.get("calls")) or 0
            store_s += _num(store.get("seconds")) or 0
            for name, value in ((m.get("custom") or {}).get("counters") or {}).items():
                if _num(value) is not None:
                    custom["counters"][str(name)] += value
        cols["qw"].append(qw)
        cols["cpu"].append(cpu)
        cols["rss"].append(rss)

    # Columns nobody has (no metrics in this job): left out rather than shipped as -1s.
    for name in ("qw", "cpu", "rss"):
        if all(x == -1 for x in cols[name]):
            cols[name] = []

    durations.sort(reverse=True)
    by_tid = {tid: v for tid, v, _ in rows}
    slowest = []
    for d, tid in durations[:SLOWEST]:
        v = by_tid[tid]
        slowest.append(
            {
                "task": tid,
                "seconds": round(d, 2),
                "items": v.get("items_total") or 0,
                "state": v.get("state"),
                "host": (v.get("owner") or "").split(":", 1)[0],
                "items_per_s": _r((v.get("items_total") or 0) / d if d > 0 else None),
            }
        )

    ok_series = _Bins.total(ok_d)
    cumulative, run = [], 0.0  # items done (ok or failed) by the end of each bin, as status counts them
    for x in _Bins.total(handled_d):
        run += x
        cumulative.append(round(run))
    series = {
        "t0": t0,
        "step": bins.step,
        "ok": [round(x) for x in ok_series],
        "failed": [round(x) for x in _Bins.total(fail_d)],
        "running": [round(a + b, 2) for a, b in zip(_Bins.total(run_d), run_x, strict=False)],
        "cumulative": cumulative,
    }
    ratelimit = {}
    for name, tot in sorted(limit_tot.items()):
        per_bin = _Bins.total(limit_d.get(name, [0.0] * n1))
        rate = _num((limits_cfg.get(name) or {}).get("rate"))
        ratelimit[name] = {
            "tokens": round(tot["tokens"]),
            "wait_s": round(tot["wait_s"], 2),
            "tasks": tot["tasks"],
            "rate": rate,
            "per_s": [round(x / bins.step, 3) for x in per_bin],
            "peak_use": _r(max(per_bin) / bins.step / rate, 3) if rate and per_bin else None,
        }
    for name, lim in sorted(limits_cfg.items()):
        if name not in ratelimit and isinstance(lim, dict):
            ratelimit[name] = {"tokens": None, "wait_s": None, "tasks": 0, "rate": _num(lim.get("rate"))}

    categories: Counter[str] = Counter()
    for g in analysis.groups:
        categories[g.category] += g.items
    signatures = []
    for g in analysis.groups[:SIGNATURES]:
        d = g.to_dict()
        d["message"] = _cut(d["message"])
        d["sample_traceback"] = _trace(d["sample_traceback"])
        signatures.append(d)

    cpu_edges = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    rss_top = max(rss_mb, default=0.0)
    req_mb = mem_gb * 1024 if mem_gb else None
    top = max(rss_top, req_mb or 0.0) or 1.0
    rss_edges = [top * i / 20 for i in range(21)]
    resources = {
        "tasks_with_metrics": have_metrics,
        "cpus": cpus,
        "cpu_eff": _quantiles(cpu_eff),
        "cpu_edges": cpu_edges,
        "cpu_hist": _hist(cpu_eff, cpu_edges) if cpu_eff else [],
        "rss_mb": _quantiles(rss_mb),
        "rss_edges": [round(e, 1) for e in rss_edges],
        "rss_hist": _hist(rss_mb, rss_edges) if rss_mb else [],
        "mem_requested_mb": req_mb,
        "over_request": rss_over,
        "slurm_states": dict(slurm_states.most_common()),
        "causes": dict(causes.most_common()),
        "store_calls": round(store_calls),
        "store_s": round(store_s, 2),
        "custom_counters": dict(custom["counters"].most_common(20)),
    }
    qw_edges = _wait_edges(queue_waits)
    queue = {
        "stats": _quantiles(queue_waits),
        "edges": qw_edges,
        "hist": _hist(queue_waits, qw_edges) if queue_waits else [],
    }

    # The drill-down set of a written file: failed tasks, the tasks the signatures name, the slowest.
    wanted: list[str] = []
    for g in signatures:
        wanted += [s["task"] for s in g["samples"]]
    wanted += [tid for tid, v, _ in rows if v.get("state") == "failed"][:50]
    wanted += [s["task"] for s in slowest]
    chosen = list(dict.fromkeys(wanted))[:details]
    detail = {}
    for tid in chosen:
        with contextlib.suppress(SlurmctlError):
            detail[tid] = task_detail(backend, job_id, tid, record=by_tid[tid])

    job = job_rec.value
    return {
        "format": FORMAT,
        "generated_at": now,
        "backend": backend.description,
        "job": {
            "id": job_id,
            "name": summary.name,
            "state": summary.state,
            "executor": summary.executor,
            "paused": summary.paused,
            "message": summary.message,
            "created_at": job.get("created_at"),
            "tasks": summary.tasks,
            "retry_tasks": summary.retry_tasks,
            "items_total": summary.items_total,
            "items_done": summary.items_done,
            "items_failed": summary.items_failed,
            "started_at": summary.started_at,
            "elapsed_s": summary.elapsed_s,
            "items_per_s": summary.items_per_s,
            "eta_s": summary.eta_s,
            "max_attempts": job.get("max_attempts"),
            "events": (job.get("events") or [])[-20:],
        },
        "states": summary.task_states,
        "series": series,
        "failed_items": analysis.failed_items,
        "failed_tasks": analysis.failed_tasks,
        "signatures_total": len(analysis.groups),
        "categories": dict(categories.most_common()),
        "signatures": signatures,
        "retries": [
            {
                "number": r.number,
                "created_at": r.created_at,
                "reason": _cut(r.reason, 200),
                "tasks": len(r.task_ids),
                "items": sum(len(x) for x in r.items.values()),
                "categories": r.categories,
                "skipped": r.skipped,
                "round": r.round,
            }
            for r in retries[-50:]
        ],
        "resources": resources,
        "ratelimit": ratelimit,
        "queue_wait": queue,
        "slowest": slowest,
        "table": {
            "t0": t0,
            "unit_s": unit,
            "states": list(STATES),
            "hosts": hosts,
            "errors": errors,
            "err_at": err_at,
            "err_code": err_code,
            "cols": cols,
        },
        "details": detail,
    }


def _wait_edges(waits: list[float]) -> list[float]:
    top = max(waits, default=0.0)
    step = next((s for s in (1, 5, 10, 30, 60, 300, 600, 1800, 3600) if top / s <= 12), 7200)
    return [float(step * i) for i in range(int(top // step) + 2)]


def task_detail(
    backend: Backend,
    job_id: str,
    task_id: str,
    *,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything about one task for its drill-down: its record, manifest, published result
    manifest, metrics, first failed items (published attempt, else latest) and log tail.
    Raises StateError for an id that is not a task of the job."""
    from slurmctl.errors import StateError

    if not (task_id[:1] == "t" and task_id[1:].isdigit() and len(task_id) >= 8):
        raise StateError(f"{task_id!r} is not a task id (tasks are t0000000..)")
    if record is None:
        rec: Record | None = backend.state.get(keys.TASKS_TABLE, keys.task_state(job_id, task_id))
        if rec is None:
            raise StateError(f"job {job_id} has no task {task_id}")
        record = rec.value
    manifest = _json(backend, keys.task_manifest(job_id, task_id)) or {}
    batch = manifest.get("batch") or {}
    done = _json(backend, keys.done_marker(job_id, task_id))
    result = (
        _json(backend, done["manifest_key"]) if done and isinstance(done.get("manifest_key"), str) else None
    )
    attempt = (done or {}).get("attempt") or record.get("attempt") or 0
    metrics = None
    for a in range(attempt, 0, -1):  # the latest attempt that left metrics
        metrics = _json(backend, metrics_key(job_id, task_id, a))
        if metrics is not None:
            break
    errors = _errors(backend, keys.result_errors(job_id, task_id, attempt)) if attempt else []
    log, log_attempt = [], None
    for a in range(attempt, 0, -1):  # the latest attempt that left a log
        log = _log_tail(backend, log_key(job_id, task_id, a))
        if log:
            log_attempt = a
            break
    return {
        "task": task_id,
        "record": {k: (_cut(x, 2000) if isinstance(x, str) else x) for k, x in record.items()},
        "batch": {
            k: batch.get(k)
            for k in ("batch_id", "key", "first_item", "items", "bytes", "sha256", "source", "first_line")
            if k in batch
        },
        "published_attempt": (done or {}).get("attempt"),
        "result": result,
        "metrics": metrics,
        "errors": errors,
        "log": log,
        "log_attempt": log_attempt,
    }


def _errors(backend: Backend, key: str) -> list[dict[str, Any]]:
    """The first ERRORS failed items of an error file (absent: none)."""
    path = backend.objects.local_path(key)
    out: list[dict[str, Any]] = []
    try:
        if path is not None:
            with open(path, "rb") as f:
                lines = [line for _, line in zip(range(ERRORS), f, strict=False)]
        else:
            lines = backend.objects.get(key).splitlines()[:ERRORS]
    except (FileNotFoundError, ObjectNotFoundError):
        return []
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict):
            out.append(
                {
                    "item": e.get("item_id"),
                    "category": e.get("category"),
                    "type": e.get("type"),
                    "message": _cut(e.get("message")),
                    "traceback": _trace(e.get("traceback") or ""),
                    "attempt": e.get("attempt"),
                    "host": e.get("host"),
                    "at": e.get("at"),
                }
            )
    return out


_CONTEXT = frozenset(("job", "task", "attempt", "worker", "host", "slurm_job_id"))


def _log_tail(backend: Backend, key: str, lines: int = LOG_LINES) -> list[dict[str, Any]]:
    """The last ``lines`` records of a gzip JSON-lines log (absent or unreadable: none; a
    truncated gzip stream yields what it decoded)."""
    path = backend.objects.local_path(key)
    try:
        if path is not None:
            f = gzip.open(path, "rb")  # noqa: SIM115 (closed below)
        else:
            import io

            f = gzip.GzipFile(fileobj=io.BytesIO(backend.objects.get(key)))
    except (FileNotFoundError, ObjectNotFoundError):
        return []
    tail: deque[bytes] = deque(maxlen=lines)
    try:
        with f:
            for line in f:
                tail.append(line)
    except (OSError, EOFError):  # not gzip, or cut short: keep what was read
        pass
    out = []
    for line in tail:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):  # the task's context (job, task, host...) is the same on each line
            r = {k: (_cut(x) if isinstance(x, str) else x) for k, x in r.items() if k not in _CONTEXT}
            if "exc" in r:
                r["exc"] = _trace(str(r["exc"]))
            out.append(r)
    return out


def list_jobs(backend: Backend) -> list[dict[str, Any]]:
    """Every job of the backend, newest first, with what the job list shows (from the job records
    and progress records: no task record is read); runs of the same job name form its history."""
    from slurmctl.status import progress

    out = []
    for rec in backend.state.scan(keys.JOBS_TABLE):
        v = rec.value
        job_id = v.get("job_id") or rec.key
        try:
            p = progress(backend, job_id)
        except SlurmctlError as exc:
            out.append({"id": job_id, "name": v.get("name", ""), "state": "unreadable", "error": str(exc)})
            continue
        out.append(
            {
                "id": job_id,
                "name": p.name,
                "state": p.state,
                "executor": p.executor,
                "created_at": v.get("created_at"),
                "tasks": p.tasks,
                "items_total": p.items_total,
                "items_done": p.items_done,
                "items_failed": p.items_failed,
                "elapsed_s": p.elapsed_s,
                "items_per_s": p.items_per_s,
                "paused": p.paused,
            }
        )
    out.sort(key=lambda j: j.get("created_at") or 0, reverse=True)
    return out
