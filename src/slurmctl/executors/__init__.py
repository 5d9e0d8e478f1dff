"""Executors: how tasks get run (see :mod:`slurmctl.executors.base`)."""

from __future__ import annotations

from slurmctl.errors import ConfigError
from slurmctl.executors.base import Executor
from slurmctl.model.core import Job
from slurmctl.storage.base import Backend


def executor_for(backend: Backend, job: Job) -> Executor:
    """The executor the job's config names."""
    kind = job.config["executor"]["kind"]
    if kind == "local":
        from slurmctl.executors.local import LocalExecutor

        return LocalExecutor(backend, job)
    if kind == "slurm":
        from slurmctl.executors.slurm import SlurmExecutor

        return SlurmExecutor(backend, job)
    raise ConfigError(f"unknown executor {kind!r}")


__all__ = ["Executor", "executor_for"]
