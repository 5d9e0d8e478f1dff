"""The executor contract: how tasks of a job get run.

An executor turns task ids into running ``slurmctl worker`` processes and answers for them:

* ``submit(task_ids)`` hands tasks over (local: a detached runner process; Slurm: ``sbatch
  --array``) and records what it submitted in the job manifest's task groups. Tasks go to
  ``queued`` (through the lifecycle). Safe to call again for tasks that are not running.
* ``poll()`` reports the scheduler's facts about every submission (one scheduler command);
  :meth:`slurmctl.lifecycle.Lifecycle.settle` decides what they mean for the tasks.
* ``cancel()`` stops everything the executor started for the job. Idempotent.
* ``hold()`` / ``hold(release=True)`` keep what has not started from starting (``slurmctl pause``).
* ``dry_run(task_ids)`` returns what ``submit`` would run, without running it.

Executors never change a task's state themselves: :mod:`slurmctl.lifecycle` owns it.

Executors never process items themselves: every executor launches the same worker entry point
(:func:`worker_command`), so behaviour is identical whatever runs it.
"""

from __future__ import annotations

import json
import shlex
import sys
from abc import ABC, abstractmethod

from slurmctl.lifecycle import Facts, Lifecycle
from slurmctl.model.core import Job
from slurmctl.obs.logs import bind
from slurmctl.storage.base import Backend


def worker_command(backend: Backend, job_id: str, *extra: str, python: str | None = None) -> list[str]:
    """The argv that runs a worker for ``job_id`` on ``backend``; ``extra`` selects the task(s)."""
    return [
        python or sys.executable,
        "-m",
        "slurmctl.worker",
        "--backend",
        json.dumps(backend.spec, separators=(",", ":")),
        "--job",
        job_id,
        *extra,
    ]


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


class Executor(ABC):
    kind: str = ""

    def __init__(self, backend: Backend, job: Job) -> None:
        self.backend = backend
        self.job = job
        self.lifecycle = Lifecycle.of(backend, job.job_id, job.config)
        bind(job=job.job_id)  # the executor's lines name the job

    @abstractmethod
    def submit(self, task_ids: list[str]) -> str:
        """Hand ``task_ids`` to the scheduler. Returns a one-line description of what was done.
        Raises SchedulerError/SubmissionError; on failure no task is left half-submitted."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop all work of the job. Idempotent."""

    @abstractmethod
    def dry_run(self, task_ids: list[str]) -> str:
        """The commands/scripts ``submit`` would run, as text."""

    def hold(self, *, release: bool = False) -> str:
        """Keep what the scheduler has not started yet from starting (``release``: let it start
        again), with at most ONE scheduler command; returns what was done ("" for nothing). Work
        already running goes on: a paused job's workers claim no task (the lifecycle)."""
        return ""

    # Whether a process of the executor's own plans item retries (the local runner); if not, the
    # watch loop does (slurmctl.retry.store.AutoRetry).
    plans_item_retries = False

    def deciding(self) -> bool:
        """Whether a process of this executor may still add work to a job whose tasks all ended
        (the local runner plans item retries before it exits); the watch waits for it."""
        return False

    def poll(self) -> Facts:
        """What the scheduler says of everything the executor started for the job, as the
        lifecycle's facts (ONE scheduler command; the Slurm executor adds ONE sacct for the exit
        codes of elements it sees end FAILED). The lifecycle settles tasks from them;
        an executor never changes a task's state itself."""
        return Facts()

    def poll_settled(self) -> Facts:
        """``poll`` for a one-off decision (``resubmit``): an executor whose first answer may be
        incomplete asks again (at most one more scheduler command)."""
        return self.poll()
