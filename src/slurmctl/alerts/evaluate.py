"""One look at a job: read a snapshot, apply the rules, write the alert record, send what is due.

Who evaluates: the local runner and the watch loop of Slurm jobs (``status --watch``, ``submit
--wait``), each in a thread of its own every ``interval_s`` (:class:`AlertLoop`), and ``slurmctl
alerts check`` (cron). Any number may look at once: the alert record's compare-and-set makes each
notification go out once (slurmctl.alerts.state).

What a snapshot reads: the job record and its progress records (as ``status``), the task records
of at most ``FAILURE_READS`` tasks that have failed attempts and are not running (their latest
failure's cause), the job's rate-limit buckets, and the fill of the backend root (local backend)
and, for the local executor, of the scratch file system. A backend that cannot be read — or that
no longer holds a job this evaluator has seen (a root unmounted or moved away reads as empty) —
raises ``infrastructure/backend``, remembered by the evaluating process only (the record cannot be
written then).
"""

from __future__ import annotations

import logging
import secrets as _secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from slurmctl.alerts import rules as R
from slurmctl.alerts import state as S
from slurmctl.alerts.channels import host, send
from slurmctl.alerts.config import AlertsConfig
from slurmctl.errors import JobNotFoundError, SlurmctlError, StorageError
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

log = logging.getLogger("slurmctl.alerts")

FAILURE_READS = 200  # task records read per look for the causes of failed attempts


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def snapshot(backend: Backend, job_id: str, job_config: dict[str, Any], now: float) -> R.Snapshot:
    """What the rules look at (see the module docstring). Raises JobNotFoundError, StorageError."""
    from slurmctl.failures.classify import task_fact
    from slurmctl.status import progress

    p = progress(backend, job_id, now=now)
    job = backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id))
    created = float(job.value.get("created_at") or now) if job else now
    succeeded = attempts = 0
    last: float | None = None
    durations: list[float] = []
    suspects: list[tuple[float, str]] = []
    for rec in backend.state.scan(keys.PROGRESS_TABLE, keys.progress_prefix(job_id)):
        for tid, entry in (rec.value.get("entries") or {}).items():
            _, state, _, _, _, _, start, end, _, failures = entry
            attempts += failures or 0
            for t in (start, end):
                if t and (last is None or t > last):
                    last = t
            if state == "succeeded":
                succeeded += 1
                if start and end:
                    durations.append(end - start)
            elif failures and state != "running":
                suspects.append((end or 0.0, tid))
    failures: list[R.TaskFailure] = []
    for _, tid in sorted(suspects, reverse=True)[:FAILURE_READS]:
        rec = backend.state.get(keys.TASKS_TABLE, keys.task_state(job_id, tid))
        if rec is None:
            continue
        v = rec.value
        label, verdict = task_fact(v.get("error"), v.get("exit_code"), v.get("cause"), v.get("slurm_state"))
        failures.append(R.TaskFailure(tid, label, verdict.label))
    buckets: list[R.Bucket] = []
    shared = set()
    for name, lc in (job_config.get("limits") or {}).items():
        from slurmctl.ratelimit.limiter import bucket_key

        if lc.get("shared"):
            shared.add(name)
        rec = backend.state.get("limits", bucket_key(name, job_id, bool(lc.get("shared"))))
        if rec is not None:
            issued = rec.value.get("issued")
            buckets.append(R.Bucket(name, float(rec.value.get("rate") or lc.get("rate") or 1.0), issued))
    disks = []
    root = backend.spec.get("root") if backend.spec.get("kind", "local") == "local" else None
    places: list[tuple[str, Any]] = [("backend", root)] if root else []
    if (job_config.get("executor") or {}).get("kind", "local") == "local":
        from slurmctl.worker.runtime import scratch_root

        places.append(("scratch", scratch_root()))
    for label, path in places:
        try:
            u = shutil.disk_usage(path)
        except OSError:
            continue
        disks.append(R.Disk(label, str(path), u.used / u.total if u.total else 0.0))
    return R.Snapshot(
        job_id=job_id,
        state=p.state,
        paused=p.paused,
        now=now,
        created_at=created,
        items_done=p.items_done,
        items_failed=p.items_failed,
        tasks_succeeded=succeeded,
        failed_attempts=attempts,
        last_activity=last,
        durations=tuple(durations),
        failures=tuple(failures),
        buckets=tuple(buckets),
        disks=tuple(disks),
        shared=frozenset(shared),
    )


@dataclass
class Report:
    """What one look found and did."""

    job_id: str
    firing: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # key, channel, event
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # key, channel, error: not sent yet


class Evaluator:
    """Evaluates one job's alerts; one per process and job (it keeps the backend-outage condition)."""

    def __init__(
        self,
        backend: Backend,
        job_id: str,
        config: AlertsConfig,
        job_config: dict[str, Any],
        *,
        clock: Any = time.time,
        sleep: Any = time.sleep,
    ) -> None:
        self.backend = backend
        self.job_id = job_id
        self.config = config
        self.job_config = job_config
        self.clock = clock
        self.sleep = sleep
        self.channels = {ch.name: ch for ch in config.channels}
        self.token = _secrets.token_hex(8)
        self.local: dict[str, Any] | None = None  # the infrastructure/backend condition's record
        self.seen = False  # a snapshot of the job was read

    def _step(
        self, rec: dict[str, Any] | None, active: list[R.Condition], memory: Any, now: float, ended: bool
    ) -> dict[str, Any]:
        c = self.config
        return S.step(
            rec,
            active,
            memory,
            list(self.channels),
            now=now,
            token=self.token,
            repeat_s=c.repeat_s,
            resolve_after_s=c.resolve_after_s,
            ended=ended,
        )

    def run_once(self) -> Report:
        """One look (see the module docstring). Raises JobNotFoundError; a storage failure becomes
        the infrastructure/backend condition (and is raised after it is notified)."""
        now = self.clock()
        report = Report(self.job_id)
        try:
            try:
                snap = snapshot(self.backend, self.job_id, self.job_config, now)
            except JobNotFoundError as exc:
                if not self.seen:
                    raise
                # It was there at an earlier look: a root unmounted or moved away reads as empty.
                raise StorageError(f"job {self.job_id} vanished from {self.backend.description}") from exc
            self.seen = True
        except StorageError as exc:
            self.local = self._step(
                self.local, [R.backend_failure(self.job_id, exc.message, now)], None, now, False
            )
            self._deliver_local(report, now)
            raise
        if self.local is not None:  # the backend reads again: resolve the outage
            self.local = self._step(self.local, [], None, now, True)
            self._deliver_local(report, now)
        table = self.backend.state
        rec = table.get(S.TABLE, keys.alerts_state(self.job_id))
        active, memory = R.evaluate(snap, (rec.value.get("memory") if rec else None) or {}, self.config)
        ended = snap.state in R.TERMINAL

        def change(value: dict[str, Any] | None) -> dict[str, Any]:
            # The rules ran on the record read above; a record changed meanwhile keeps its own memory.
            same = (value or {}).get("updated_at") == (rec.value.get("updated_at") if rec else None)
            return self._step(value, active, memory if same else None, now, ended)

        new = table.update(S.TABLE, keys.alerts_state(self.job_id), change)
        value = new.value if new else {}
        claims = S.claimed(value, self.token)
        if claims:
            outcomes = self._send(claims, report, now)
            marked = table.update(
                S.TABLE,
                keys.alerts_state(self.job_id),
                lambda v: S.mark(
                    v, outcomes, token=self.token, now=self.clock(), backoff_s=self.config.backoff_s
                ),
            )
            value = marked.value if marked else value
        report.firing = S.firing(value) + S.firing(self.local)
        report.failed = S.failed_deliveries(value) + S.failed_deliveries(self.local)
        return report

    def _deliver_local(self, report: Report, now: float) -> None:
        assert self.local is not None
        claims = S.claimed(self.local, self.token)
        outcomes = self._send(claims, report, now, top=False)
        self.local = (
            S.mark(self.local, outcomes, token=self.token, now=now, backoff_s=self.config.backoff_s)
            or self.local
        )

    def _send(
        self, claims: list[S.Claimed], report: Report, now: float, top: bool = True
    ) -> dict[tuple[str, str], str | None]:
        top_error = self._top_error() if top and any(c.event == "trigger" for c in claims) else None
        outcomes: dict[tuple[str, str], str | None] = {}
        for c in claims:
            alert = payload(self.job_id, c, top_error, now)
            error = send(
                self.channels[c.channel],
                alert,
                retries=self.config.retries,
                backoff_s=self.config.backoff_s,
                sleep=self.sleep,
            )
            outcomes[(c.key, c.channel)] = error
            if error is None:
                report.sent.append((c.key, c.channel, c.event))
                log.info("alert %s/%s (%s) sent on %s", self.job_id, c.key, c.event, c.channel)
            else:
                log.error(
                    "alert %s/%s (%s) not delivered on %s: %s", self.job_id, c.key, c.event, c.channel, error
                )
        return outcomes

    def _top_error(self) -> str | None:
        """The job's most frequent failure signature (failures/analyze), or None."""
        from slurmctl.failures.analyze import analyze, summary_line

        try:
            groups = analyze(self.backend, self.job_id).groups
        except SlurmctlError as exc:
            log.warning("alerts: no error signature for %s: %s", self.job_id, exc)
            return None
        return summary_line(groups[0].to_dict()) if groups else None


def payload(job_id: str, c: S.Claimed, top_error: str | None, now: float) -> dict[str, Any]:
    """The alert every channel gets (docs/alerts.md has examples)."""
    cond = c.condition
    return {
        "event": c.event,
        "key": f"{job_id}/{c.key}",
        "dedup_key": f"slurmctl/{job_id}/{c.key}",
        "job": job_id,
        "condition": c.key,
        "rule": cond["rule"],
        "severity": cond.get("severity", "warning"),
        "summary": cond.get("summary", ""),
        "since": _iso(cond["since"]),
        "at": _iso(now),
        "resolved_at": _iso(cond.get("resolved_at")),
        "top_error": top_error if c.event == "trigger" else None,
        "command": cond.get("command", ""),
        "host": host(),
    }


class AlertLoop(threading.Thread):
    """Evaluates a job's alerts every ``interval_s`` in a daemon thread until :meth:`stop`, which
    makes one last look (the job ended: its conditions resolve). Never raises into its owner."""

    def __init__(self, evaluator: Evaluator) -> None:
        super().__init__(name=f"alerts-{evaluator.job_id}", daemon=True)
        self.evaluator = evaluator
        self._halt = threading.Event()

    def look(self) -> None:
        try:
            self.evaluator.run_once()
        except Exception as exc:  # alerts never stop the runner or the watcher
            log.warning("alerts of %s: %s", self.evaluator.job_id, exc)

    def run(self) -> None:
        while not self._halt.is_set():
            self.look()
            self._halt.wait(self.evaluator.config.interval_s)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()
        self.look()


def start(backend: Backend, job_id: str, job_config: dict[str, Any]) -> AlertLoop | None:
    """A running AlertLoop for the job, or None when it has no alert settings (or they are off or
    invalid: logged)."""
    from slurmctl.alerts.config import resolve

    try:
        cfg = resolve(job_config)
    except SlurmctlError as exc:
        log.error("alerts of %s are off: %s", job_id, exc)
        return None
    if cfg is None or not cfg.enabled:
        return None
    loop = AlertLoop(Evaluator(backend, job_id, cfg, job_config))
    loop.start()
    return loop
