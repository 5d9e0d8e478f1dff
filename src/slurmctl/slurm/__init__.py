"""The Slurm adapter: every Slurm command slurmctl runs goes through this package.

* runner     CommandRunner: timeout, retry of transient failures, per-command call counts
* client     SlurmClient: sbatch / squeue / sacct / scancel / scontrol / sinfo as typed methods
* states     JobState: Slurm's state strings reduced to one enum
* jobids     job id strings (123_4, 123_[5-9%2], 123+1, 123.batch) parsed
* queue      squeue format and parser; accounting: sacct fields and parser; values: field values
* config     scontrol show config -> SlurmConfig (MaxArraySize, MinJobAge, ...)
* watcher    StatusWatcher: one Slurm command per poll, growing intervals
* doctor     the Slurm checks of ``slurmctl doctor``
"""

from slurmctl.slurm.accounting import AcctRow
from slurmctl.slurm.client import NodeRow, PingResult, SlurmClient
from slurmctl.slurm.config import SlurmConfig
from slurmctl.slurm.jobids import JobRef, TaskRanges, parse_job_id
from slurmctl.slurm.queue import QueueRow
from slurmctl.slurm.runner import CommandResult, CommandRunner, RetryPolicy
from slurmctl.slurm.states import JobState, parse_state
from slurmctl.slurm.watcher import BackoffSchedule, JobStatus, Snapshot, StatusWatcher, WatchTimeoutError

__all__ = [
    "AcctRow",
    "BackoffSchedule",
    "CommandResult",
    "CommandRunner",
    "JobRef",
    "JobState",
    "JobStatus",
    "NodeRow",
    "PingResult",
    "QueueRow",
    "RetryPolicy",
    "SlurmClient",
    "SlurmConfig",
    "Snapshot",
    "StatusWatcher",
    "TaskRanges",
    "WatchTimeoutError",
    "parse_job_id",
    "parse_state",
]
