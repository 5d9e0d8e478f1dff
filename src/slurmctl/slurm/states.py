"""Slurm job state strings (squeue, sacct, scontrol; long and compact forms) mapped onto one enum."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """What a Slurm job (or array task) is doing, reduced to what a caller acts on."""

    PENDING = "pending"
    """Queued, held, or allocated but not yet started (CONFIGURING, REQUEUE_HOLD, RESV_DEL_HOLD)."""
    RUNNING = "running"
    """Running user code (also SIGNALING, RESIZING)."""
    COMPLETING = "completing"
    """Finished, epilogs / step cleanup still running (COMPLETING, STAGE_OUT); final state comes next."""
    COMPLETED = "completed"
    """All steps exited 0."""
    FAILED = "failed"
    """Non-zero exit of the batch script, or SPECIAL_EXIT. Also how OverMemoryKill kills end (0:9)."""
    CANCELLED = "cancelled"
    """scancel (sacct prints "CANCELLED by <uid>"), or REVOKED by a federation sibling."""
    TIMEOUT = "timeout"
    """Hit its time limit; killed after KillWait."""
    OUT_OF_MEMORY = "out_of_memory"
    """The kernel OOM-killed a step (needs cgroup memory enforcement; without cgroups see FAILED)."""
    NODE_FAIL = "node_fail"
    """Its node failed. With requeue the job comes back as PENDING under the same id."""
    PREEMPTED = "preempted"
    """Preempted by a higher-priority job (terminal for this record; may be requeued)."""
    REQUEUED = "requeued"
    """Being put back in the queue (scontrol requeue, node failure); will be PENDING again."""
    SUSPENDED = "suspended"
    """Suspended or STOPPED: holds its allocation, not running."""
    BOOT_FAIL = "boot_fail"
    """Its node failed to boot."""
    DEADLINE = "deadline"
    """Could not start before its --deadline."""
    UNKNOWN = "unknown"
    """A string this table does not know (newer Slurm); never treated as finished."""

    @property
    def is_terminal(self) -> bool:
        """True when this record will not change any more (a requeue starts a new record, same id)."""
        return self in TERMINAL_STATES

    @property
    def is_success(self) -> bool:
        return self is JobState.COMPLETED


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
    }
)

# Long names as printed by squeue %T / -O state, sacct State and scontrol JobState=.
LONG_STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "COMPLETING": JobState.COMPLETING,
    "STAGE_OUT": JobState.COMPLETING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
    "REQUEUED": JobState.REQUEUED,
    "REQUEUE_FED": JobState.REQUEUED,
    "SUSPENDED": JobState.SUSPENDED,
    "STOPPED": JobState.SUSPENDED,
    "BOOT_FAIL": JobState.BOOT_FAIL,
    "DEADLINE": JobState.DEADLINE,
}

# Compact codes as printed by squeue %t and sacct -s.
SHORT_STATES: dict[str, JobState] = {
    "PD": JobState.PENDING,
    "CF": JobState.PENDING,
    "RH": JobState.PENDING,
    "RD": JobState.PENDING,
    "R": JobState.RUNNING,
    "SI": JobState.RUNNING,
    "RS": JobState.RUNNING,
    "CG": JobState.COMPLETING,
    "SO": JobState.COMPLETING,
    "CD": JobState.COMPLETED,
    "F": JobState.FAILED,
    "SE": JobState.FAILED,
    "CA": JobState.CANCELLED,
    "RV": JobState.CANCELLED,
    "TO": JobState.TIMEOUT,
    "OOM": JobState.OUT_OF_MEMORY,
    "NF": JobState.NODE_FAIL,
    "PR": JobState.PREEMPTED,
    "RQ": JobState.REQUEUED,
    "RF": JobState.REQUEUED,
    "S": JobState.SUSPENDED,
    "ST": JobState.SUSPENDED,
    "BF": JobState.BOOT_FAIL,
    "DL": JobState.DEADLINE,
}


def parse_state(text: str) -> JobState:
    """Return the JobState for a Slurm state string; UNKNOWN for anything unrecognised. Pure.

    Only the first word counts: sacct appends who cancelled ("CANCELLED by 0") and squeue -l may
    append "+" when a job carries more state flags than it prints.
    """
    word = text.strip().split(" ", 1)[0].rstrip("+").upper()
    if not word:
        return JobState.UNKNOWN
    return LONG_STATES.get(word) or SHORT_STATES.get(word) or JobState.UNKNOWN
