"""One poller per cluster: moves every tracked job of the database through its states.

A poll reads the cluster's non-final jobs (submitted, running) from the database and asks Slurm
about all of them with ONE ``squeue -t all -j <every id>`` call. Jobs squeue no longer lists (they
ended more than MinJobAge ago) are asked of ONE ``sacct -X -j <those ids> -S <their oldest
submission>``. A job found in neither keeps its state (slurmdbd can record a job later than
slurmctld forgets it). Each change is saved through the repository (audited; a version conflict
is left for the next poll). The interval between polls starts at ``schedule.initial`` and grows
while nothing changes, as the StatusWatcher's does (docs/slurm.md).

Before each poll :meth:`Poller.run` lets the :class:`~slurmctl.controlplane.submit.Submitter`, if
given, recover jobs a crash left accepted: the poller is the one recoverer of its cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from slurmctl.controlplane.domain import Job, JobState, utcnow
from slurmctl.controlplane.repo import Actor, Repository, Versioned
from slurmctl.controlplane.submit import Submitter
from slurmctl.errors import ConflictError, SchedulerQueryError, StateError, StorageError
from slurmctl.slurm.states import JobState as SlurmState
from slurmctl.slurm.watcher import BackoffSchedule

log = logging.getLogger(__name__)

TRACKED = (JobState.SUBMITTED, JobState.RUNNING)
SACCT_LOOKBACK = timedelta(days=7)
"""The oldest a poll's sacct window starts: slurmdbd scans the whole window on every poll."""
_STARTED = {SlurmState.RUNNING, SlurmState.COMPLETING, SlurmState.SUSPENDED}
_QUEUED = {SlurmState.PENDING, SlurmState.REQUEUED}


class SlurmQuery(Protocol):
    """What the poller needs of :class:`slurmctl.slurm.client.SlurmClient`."""

    def squeue(self, job_ids: Iterable[str]) -> Sequence[Any]: ...

    def sacct(
        self, job_ids: Iterable[str], *, start: datetime, allocations_only: bool, fields: Sequence[str]
    ) -> Sequence[Any]: ...


@dataclass(frozen=True)
class PollReport:
    tracked: int
    """non-final jobs asked about"""
    changed: int
    """jobs whose state was saved"""
    unseen: int
    """jobs neither squeue nor sacct listed (state kept)"""


def job_state(states: Sequence[SlurmState]) -> JobState | None:
    """The control plane's state of a job whose Slurm records (one, or one per array task) are in
    ``states``; None when they say nothing (no record, or only states slurmctl does not know). Pure."""
    known = [s for s in states if s is not SlurmState.UNKNOWN]
    if not known:
        return None
    if all(s.is_terminal for s in known):
        if all(s.is_success for s in known):
            return JobState.COMPLETED
        if all(s in (SlurmState.COMPLETED, SlurmState.CANCELLED) for s in known):
            return JobState.CANCELLED
        return JobState.FAILED
    if any(s in _STARTED or s.is_terminal for s in known):
        return JobState.RUNNING  # started, or an array partly done
    return JobState.SUBMITTED if all(s in _QUEUED for s in known) else None


class Poller:
    """Tracks the non-final jobs of ``cluster``."""

    def __init__(
        self,
        repo: Repository,
        slurm: SlurmQuery,
        *,
        cluster: str,
        actor: Actor,
        schedule: BackoffSchedule | None = None,
        submitter: Submitter | None = None,
    ) -> None:
        self.repo, self.slurm, self.cluster, self.actor = repo, slurm, cluster, actor
        self.schedule = schedule or BackoffSchedule(initial=5.0, factor=1.5, cap=60.0)
        self.submitter = submitter

    def tracked(self) -> list[Versioned[Job]]:
        out: list[Versioned[Job]] = []
        while True:
            after = out[-1].entity.id if out else ""
            page = self.repo.list_jobs(cluster=self.cluster, states=TRACKED, limit=1000, after=after)
            out += page
            if len(page) < 1000:
                return out

    def poll_once(self) -> PollReport:
        """One poll: one squeue for every tracked job, one sacct for those squeue lost (if any).
        Raises SchedulerQueryError (Slurm did not answer; nothing saved), StorageError."""
        jobs = [v for v in self.tracked() if v.entity.slurm_job_ids]
        if not jobs:
            return PollReport(0, 0, 0)
        ids = sorted({i for v in jobs for i in v.entity.slurm_job_ids})
        seen: dict[str, list[SlurmState]] = defaultdict(list)
        for row in self.slurm.squeue(ids):
            seen[str(row.ref.job)].append(row.state)
        lost = [i for i in ids if i not in seen]
        if lost:
            lost_set = set(lost)
            first = min(
                v.entity.submitted_at or v.entity.created_at
                for v in jobs
                if lost_set & set(v.entity.slurm_job_ids)
            )
            start = max(first - timedelta(minutes=1), utcnow() - SACCT_LOOKBACK)
            rows = self.slurm.sacct(lost, start=start, allocations_only=True, fields=("JobID", "State"))
            for row in rows:
                if not row.is_step:
                    seen[str(row.ref.job)].append(row.state)
        changed = unseen = 0
        for v in jobs:
            states = [s for i in v.entity.slurm_job_ids for s in seen.get(i, [])]
            if not states:
                unseen += 1
            new = job_state(states)
            if new is None or new == v.entity.state:
                continue
            try:
                self.repo.save_job(v.entity.advance(new, at=utcnow()), v.version, self.actor)
                changed += 1
            except (ConflictError, StateError):
                pass  # changed meanwhile (a cancel through the API): the next poll reads it again
        return PollReport(len(jobs), changed, unseen)

    def run(
        self,
        *,
        max_polls: int | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], Any] | None = None,
        on_poll: Callable[[PollReport], Any] | None = None,
    ) -> None:
        """Recover and poll until ``stop`` is set or ``max_polls`` polls ran, sleeping the schedule's
        interval between polls (longer while nothing changes); ``on_poll`` sees each report."""
        wait = sleep or (stop.wait if stop is not None else time.sleep)
        interval: float | None = None
        polls = 0
        while not (stop is not None and stop.is_set()) and (max_polls is None or polls < max_polls):
            recovered = 0
            try:
                if self.submitter is not None:
                    r = self.submitter.recover(self.actor)
                    recovered = r.found + r.submitted
                report = self.poll_once()
            except (SchedulerQueryError, StorageError) as exc:  # Slurm or the database a moment away
                log.warning("cluster %s: poll failed, trying again later: %s", self.cluster, exc)
                report = PollReport(0, 0, 0)
            polls += 1
            if on_poll is not None:
                on_poll(report)
            interval = self.schedule.next(interval, bool(report.changed or recovered))
            if max_polls is None or polls < max_polls:
                wait(interval)
