"""Run the slurmctl CLI with one kill point armed: SIGKILL this very process at the Nth time a step
of the submission happens, exactly as an OOM killer or a lost login session would stop it there.

    python tests/faults/killpoint.py POINT N [slurmctl arguments...]

The kill points wrap functions at the edges of the coordinator's steps, not its internals, so they
keep meaning the same step while the coordinator changes: the state store's ``create`` and
``compare_and_set`` (recognised by the table and the state they write), the partitioner's entry
point and batch writer, and the start of the local runner process. The CLI runs unchanged
(``slurmctl.cli.main.main``).

POINTS (in the order a submission reaches them):

    before-job-record   about to create the job record (nothing exists yet)
    job-record          the job record exists (state created), partitioning has not started
    batch               the partitioner closed its Nth batch (not yet committed to its state file)
    partitioned-input   the partitioner returned (batches durable), no task manifest or record yet
    task-record         the Nth task record was created
    job-partitioned     the job record is partitioned; the executor has not been called
    task-queued         the executor queued the Nth task record (the submission is under way)
    runner-started      the local runner process started; the job record is not yet submitted
    job-submitted       the job record is submitted; submit has not printed the job id yet

If the point is never reached, the CLI runs to its end and this prints
``killpoint: POINT never reached (N times expected, M seen)`` on stderr and exits 99 instead of the
CLI's code, so a test can tell a kill point that went stale from a submission that survived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

POINTS = (
    "before-job-record",
    "job-record",
    "batch",
    "partitioned-input",
    "task-record",
    "job-partitioned",
    "task-queued",
    "runner-started",
    "job-submitted",
)
NEVER_REACHED = 99


class KillPoint:
    """Counts occurrences of ``point`` and SIGKILLs the process at the ``n``th."""

    def __init__(self, point: str, n: int) -> None:
        self.point = point
        self.n = n
        self.seen = 0

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.seen += 1
        if self.seen == self.n:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def arm(kp: KillPoint) -> None:
    """Wrap the functions at each step's edge so that they report their occurrences to ``kp``."""
    import slurmctl.partition as partition_pkg
    import slurmctl.storage.local as local_storage
    from slurmctl.partition.durable import BatchWriter
    from slurmctl.storage import keys

    open_local = local_storage.local_backend

    def local_backend(*args: Any, **kwargs: Any) -> Any:
        backend = open_local(*args, **kwargs)
        state = backend.state
        create, cas = state.create, state.compare_and_set

        def create_hooked(table: str, key: str, value: Any) -> Any:
            if table == keys.JOBS_TABLE:
                kp.hit("before-job-record")
            rec = create(table, key, value)
            kp.hit({keys.JOBS_TABLE: "job-record", keys.TASKS_TABLE: "task-record"}.get(table, ""))
            return rec

        def cas_hooked(table: str, key: str, value: Any, expected_version: int) -> Any:
            rec = cas(table, key, value, expected_version)
            new = value.get("state") if isinstance(value, dict) else None
            if table == keys.JOBS_TABLE and new in ("partitioned", "submitted"):
                kp.hit(f"job-{new}")
            elif table == keys.TASKS_TABLE and new == "queued":
                kp.hit("task-queued")
            return rec

        # Instance attributes: the store's own update() calls self.create / self.compare_and_set.
        state.create, state.compare_and_set = create_hooked, cas_hooked
        return backend

    local_storage.local_backend = local_backend

    run_partition = partition_pkg.partition

    def partition(*args: Any, **kwargs: Any) -> Any:
        summary = run_partition(*args, **kwargs)
        kp.hit("partitioned-input")
        return summary

    partition_pkg.partition = partition

    close_batch = BatchWriter.close_batch

    def close_batch_hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = close_batch(self, *args, **kwargs)
        kp.hit("batch")
        return out

    BatchWriter.close_batch = close_batch_hooked  # type: ignore[method-assign]

    popen = subprocess.Popen

    class Popen(popen):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            super().__init__(args, *a, **kw)
            if isinstance(args, (list, tuple)) and "slurmctl.executors.local" in args:
                kp.hit("runner-started")

    subprocess.Popen = Popen  # type: ignore[misc]


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in POINTS or not sys.argv[2].isdigit():
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    kp = KillPoint(sys.argv[1], int(sys.argv[2]))
    arm(kp)
    from slurmctl.cli.main import main as cli_main

    sys.argv = ["slurmctl", *sys.argv[3:]]
    try:
        cli_main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    print(f"killpoint: {kp.point} never reached ({kp.n} times expected, {kp.seen} seen)", file=sys.stderr)
    sys.exit(NEVER_REACHED if code == 0 else code)


if __name__ == "__main__":
    main()
