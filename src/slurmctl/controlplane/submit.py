"""Exactly-once submission of sbatch jobs for projects.

Two steps, each its own transaction, so that a crash anywhere leaves something recovery can finish:

1. ``accept``: the job is committed in state ``accepted`` with a random ``submit_token`` and its
   script, before anything reaches Slurm.
2. ``submit``: ``sbatch --account=<the project's account> --job-name=<token> --comment=<token>``,
   then the Slurm id is committed (state ``submitted``).

``recover`` finishes what a crash interrupted: it takes every ``accepted`` job of its cluster older
than ``grace``, looks all their tokens up with ONE ``squeue --name`` call (jobs slurmctld still
knows) and ONE ``sacct --name -S <oldest> -E now -s <every state>`` call for the tokens squeue did
not know (jobs that ended and left slurmctld's memory), records the ids it finds and submits the
rest. The token is the job name because slurmdbd stores job names always and comments only with
``AccountingStoreFlags=job_comment``; squeue is asked first because slurmdbd may record a job later
than slurmctld has it.

``grace`` must exceed the longest a live ``submit`` can take (sbatch's timeout and retries), and one
process per cluster recovers (the poller): two recoverers could both find a token absent and both
submit it. sbatch runs a job as the Unix user who calls it, so recovery submits only the jobs of the
user it runs as; another user's accepted job that never reached Slurm is left for that user's
``slurmctl cp recover`` (counted in ``others``). A job accepted earlier (an idempotency key replayed)
is looked up by its token before any sbatch: the first attempt's sbatch may have reached Slurm.

Raises: NotFoundError (unknown project), SubmissionError (sbatch failed), SchedulerQueryError,
StorageError, ConflictError.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from slurmctl.controlplane.domain import Job, JobKind, JobState, utcnow
from slurmctl.controlplane.repo import Actor, Repository, Versioned
from slurmctl.errors import ConflictError, SubmissionError
from slurmctl.slurm.runner import is_transient

TOKEN_PREFIX = "slurmctl-cp-"
LOOKUP_CHUNK = 500
"""Tokens per squeue/sacct lookup (about 45 bytes each on the command line)."""
DEFAULT_GRACE = timedelta(minutes=5)


class SlurmSubmit(Protocol):
    """What submission needs of :class:`slurmctl.slurm.client.SlurmClient`."""

    def sbatch(self, *, script_text: str, options: list[str], token: str) -> str: ...

    def find_names_in_queue(self, names: Sequence[str]) -> Mapping[str, str]: ...

    def find_names_in_accounting(self, names: Sequence[str], since: datetime) -> Mapping[str, str]: ...


@dataclass
class RecoveryReport:
    found: int = 0
    """accepted jobs that had reached Slurm: their ids recorded"""
    submitted: int = 0
    """accepted jobs Slurm did not have: submitted now"""
    failed: int = 0
    """submissions sbatch refused (the job is failed) or that failed transiently (left accepted)"""
    others: int = 0
    """accepted jobs of other users not in Slurm: left for their submitter's `cp recover`"""
    errors: list[str] = field(default_factory=list)


def _unix_user() -> str:
    import os
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_hex(16)


def _definitive(exc: SubmissionError) -> bool:
    return exc.returncode is not None and not is_transient(exc.returncode, exc.stderr, exc.stdout)


class Submitter:
    """Accepts, submits and recovers the sbatch jobs of one cluster."""

    def __init__(
        self,
        repo: Repository,
        slurm: SlurmSubmit,
        *,
        cluster: str,
        grace: timedelta = DEFAULT_GRACE,
        unix_user: str | None = None,
    ) -> None:
        self.repo, self.slurm, self.cluster, self.grace = repo, slurm, cluster, grace
        self.unix_user = unix_user or _unix_user()
        self._fresh: set[str] = set()  # tokens of jobs this Submitter accepted (nothing sbatched yet)

    def accept(
        self, *, project: str, script: str, actor: Actor, idempotency_key: str | None = None
    ) -> Versioned[Job]:
        """Commit a new job in state accepted (or return the submitter's job with the same key).
        Raises NotFoundError (no such project), ConfigError (bad script or key)."""
        v, _ = self.accept_new(project=project, script=script, actor=actor, idempotency_key=idempotency_key)
        return v

    def accept_new(
        self, *, project: str, script: str, actor: Actor, idempotency_key: str | None = None
    ) -> tuple[Versioned[Job], bool]:
        """:meth:`accept`, and whether the job is new (False: the key's earlier job, which only
        its first request may submit)."""
        token = new_token()
        job = Job.build(
            id=token.removeprefix(TOKEN_PREFIX),
            kind=JobKind.SBATCH,
            submitted_by=actor.user,
            project=project,
            cluster=self.cluster,
            submit_token=token,
            script=script,
            idempotency_key=idempotency_key,
        )
        v, created = self.repo.create_job(job, actor)
        if created and v.entity.submit_token:
            self._fresh.add(v.entity.submit_token)
        return v, created

    def submit(self, v: Versioned[Job], actor: Actor) -> Versioned[Job]:
        """sbatch an accepted job and record its Slurm id. A job past accepted is returned as is.
        sbatch refusing it for good fails the job; a transient failure leaves it accepted for
        :meth:`recover`. Both raise SubmissionError."""
        job = v.entity
        if job.state != JobState.ACCEPTED:
            return v
        if job.script is None or job.submit_token is None:
            raise ConflictError(
                f"job/{job.id}", "an accepted job without script or token cannot be submitted"
            )
        if job.submit_token not in self._fresh:  # accepted before (a replay, recovery): in Slurm?
            found = dict(self.slurm.find_names_in_queue([job.submit_token]))
            if job.submit_token not in found:
                since = job.created_at - timedelta(minutes=1)
                found.update(self.slurm.find_names_in_accounting([job.submit_token], since))
            if job.submit_token in found:
                return self._record(v, found[job.submit_token], actor)
        self._fresh.discard(job.submit_token)
        account = self.repo.get_project(job.project).entity.slurm_account
        options = [f"--account={account}", f"--job-name={job.submit_token}"]
        try:
            slurm_id = self.slurm.sbatch(script_text=job.script, options=options, token=job.submit_token)
        except SubmissionError as exc:
            if _definitive(exc):
                self.repo.save_job(job.advance(JobState.FAILED), v.version, actor)
            raise
        return self._record(v, slurm_id, actor)

    def _record(self, v: Versioned[Job], slurm_id: str, actor: Actor) -> Versioned[Job]:
        return self.repo.save_job(
            v.entity.advance(JobState.SUBMITTED, slurm_job_ids=(slurm_id,)), v.version, actor
        )

    def accepted(self, now: datetime | None = None) -> list[Versioned[Job]]:
        """Every accepted job of this cluster created at least ``grace`` before ``now``."""
        before = (now or utcnow()) - self.grace
        out: list[Versioned[Job]] = []
        while True:
            page = self.repo.list_jobs(
                cluster=self.cluster,
                states=[JobState.ACCEPTED],
                created_before=before,
                limit=1000,
                after=out[-1].entity.id if out else "",
            )
            out += page
            if len(page) < 1000:
                return out

    def recover(self, actor: Actor, now: datetime | None = None) -> RecoveryReport:
        """Finish the accepted jobs older than ``grace``: record the Slurm id of those that reached
        Slurm, submit the others. No Slurm call when there are none. Raises SchedulerQueryError
        (the lookup failed: nothing is submitted), StorageError."""
        report = RecoveryReport()
        pending = [v for v in self.accepted(now) if v.entity.submit_token and v.entity.script]
        for start in range(0, len(pending), LOOKUP_CHUNK):
            chunk = pending[start : start + LOOKUP_CHUNK]
            tokens = [v.entity.submit_token for v in chunk if v.entity.submit_token]
            found = dict(self.slurm.find_names_in_queue(tokens))
            missing = [t for t in tokens if t not in found]
            if missing:
                since = min(v.entity.created_at for v in chunk) - timedelta(minutes=1)
                found.update(self.slurm.find_names_in_accounting(missing, since))
            for v in chunk:
                slurm_id = found.get(v.entity.submit_token or "")
                try:
                    if slurm_id is not None:
                        self._record(v, slurm_id, actor)
                        report.found += 1
                    elif v.entity.submitted_by != self.unix_user:  # sbatch would run it as us
                        report.others += 1
                    else:
                        self._fresh.add(v.entity.submit_token or "")  # just looked up: not in Slurm
                        self.submit(v, actor)
                        report.submitted += 1
                except (SubmissionError, ConflictError) as exc:
                    report.failed += 1
                    report.errors.append(f"job {v.entity.id}: {exc}")
        return report
