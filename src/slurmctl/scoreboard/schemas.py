"""The scoreboard's record layouts: internal exact integer sums and the public metrics derived from them.

Internally every per-user, per-day sum is a list of 10 integers in ``SUM_FIELDS`` order (seconds and
bytes, so re-summing never drifts). Public files carry ``METRICS`` (hours and base-10 MB as floats),
computed by ``to_metrics``.
"""

from typing import Dict, List, Sequence

# Index of each exact integer in a sum vector. Order is part of the .state file format: append only.
SUM_FIELDS = (
    "jobs",
    "gpu_jobs",
    "failed_jobs",
    "elapsed_s",
    "cpu_s",
    "gpu_elapsed_s",
    "gpu_s",
    "req_mem_bytes",
    "avg_mem_bytes",
    "max_mem_bytes",
)
N_SUMS = len(SUM_FIELDS)
# The fields kept per user and DAY (for rolling windows): counts and seconds, not the memory sums.
DAY_FIELDS = (0, 1, 2, 3, 4, 5, 6)
JOBS, GPU_JOBS, FAILED_JOBS, ELAPSED_S, CPU_S, GPU_ELAPSED_S, GPU_S, REQ_MEM, AVG_MEM, MAX_MEM = range(N_SUMS)

# Public metric names, in the order of the monthly rollup and table columns.
METRICS = (
    "jobs",
    "gpu_jobs",
    "failed_jobs",
    "elapsed_hours",
    "clock_hours",
    "gpu_elapsed_hours",
    "gpu_clock_hours",
    "sum_req_mem_mb",
    "sum_avg_mem_mb",
    "sum_max_mem_mb",
)
COUNT_METRICS = ("jobs", "gpu_jobs", "failed_jobs")
# Columns of the rolling-window tables (what DAY_FIELDS yield); all-time tables have every metric.
WINDOW_METRICS = METRICS[:7]
# The metrics the TUI offers with --metric: only they have leaderboard files; the other METRICS are
# table columns, which `slurm-sb leaderboard` ranks itself (derive.rank_rows).
TUI_METRICS = ("clock_hours", "elapsed_hours", "gpu_clock_hours", "gpu_elapsed_hours", "failed_jobs")

# Window names as they appear in file paths and the "window" field; TUI spellings map onto them.
WINDOWS = ("alltime", "rolling-30d", "rolling-365d")
WINDOW_DAYS = {"alltime": None, "rolling-30d": 30, "rolling-365d": 365}
WINDOW_ALIASES = {
    "alltime": "alltime",
    "all-time": "alltime",
    "all": "alltime",
    "30d": "rolling-30d",
    "rolling-30d": "rolling-30d",
    "365d": "rolling-365d",
    "rolling-365d": "rolling-365d",
}

# The job states every query selects (sacct -s codes): the terminal states, plus RQ for the earlier
# runs of requeued jobs. slurmdbd records each run of a job as its own row with the same JobIDRaw, and
# every run that was requeued (by scontrol, preemption, a node failure or RequeueExit) as REQUEUED;
# with -D sacct lists them all, each selected by its own End. Verified on 22.05: a job requeued twice
# gives REQUEUED, REQUEUED, COMPLETED rows (tests/scoreboard/golden/dev-22.05-requeue.sacct). Without
# -D, but with RQ in -s, sacct keeps only the latest matching run per job, so which run is listed would
# depend on the window: every query passes -D.
TERMINAL_STATE_CODES = "BF,CA,CD,DL,F,NF,OOM,PR,TO,RQ"
# The State of an earlier run of a requeued job: its time counts, the job itself counts with its last run.
REQUEUED = "REQUEUED"
DEFAULT_FAILURE_STATES = (
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
    "BOOT_FAIL",
    "DEADLINE",
)

SECONDS_PER_HOUR = 3600.0
BYTES_PER_MB = 1000000.0  # the plan reports base-10 MB


def zero_sums() -> List[int]:
    """Return a fresh all-zero sum vector. Pure."""
    return [0] * N_SUMS


def add_into(acc: List[int], other: Sequence[int]) -> None:
    """Add ``other`` into ``acc`` element-wise, in place. Not idempotent (it adds)."""
    for i in range(N_SUMS):
        acc[i] += other[i]


def to_metrics(sums: Sequence[int]) -> Dict[str, float]:
    """Return the public metrics for one exact sum vector (hours and MB rounded to 6 decimals). Pure."""
    h = SECONDS_PER_HOUR
    mb = BYTES_PER_MB
    return {
        "jobs": int(sums[JOBS]),
        "gpu_jobs": int(sums[GPU_JOBS]),
        "failed_jobs": int(sums[FAILED_JOBS]),
        "elapsed_hours": round(sums[ELAPSED_S] / h, 6),
        "clock_hours": round(sums[CPU_S] / h, 6),
        "gpu_elapsed_hours": round(sums[GPU_ELAPSED_S] / h, 6),
        "gpu_clock_hours": round(sums[GPU_S] / h, 6),
        "sum_req_mem_mb": round(sums[REQ_MEM] / mb, 6),
        "sum_avg_mem_mb": round(sums[AVG_MEM] / mb, 6),
        "sum_max_mem_mb": round(sums[MAX_MEM] / mb, 6),
    }


def metric_vector(sums: Sequence[int]) -> List[float]:
    """Return ``to_metrics(sums)`` as a list in ``METRICS`` order. Pure."""
    m = to_metrics(sums)
    return [m[name] for name in METRICS]


def normalize_window(name: str) -> str:
    """Return the canonical window (``alltime``/``rolling-30d``/``rolling-365d``) or "" if unknown. Pure."""
    return WINDOW_ALIASES.get(str(name).strip().lower(), "")
