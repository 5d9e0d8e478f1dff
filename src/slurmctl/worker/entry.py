"""The worker's program, ``python -m slurmctl.worker``: what every executor starts (an sbatch
script's array element or pilot, the local runner's subprocess). A program of its own, with its own
arguments: it runs on compute nodes, imports neither typer nor rich, and ends with the exit code of
:func:`slurmctl.errors.exit_code`. ``slurmctl worker`` (the CLI) runs the same :func:`run`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

from slurmctl.errors import SlurmctlError, exit_code, failure_message


def run(
    job: str,
    backend_spec: str,
    task: str | None,
    array_offset: int | None,
    pilot: bool,
    index: int,
    workers: int,
) -> int:
    """Run one task, the array element's task, or a pilot loop. Returns the exit code (EXIT_*)."""
    try:
        return _run(job, backend_spec, task, array_offset, pilot, index, workers)
    except sqlite3.Error as exc:  # the checkpoint's SQLite on a full or broken scratch: a storage error
        from slurmctl.worker.checkpoint import disk_error

        disk = disk_error(Path(os.environ.get("SLURMCTL_SCRATCH") or "scratch"), exc)
        if disk is None:
            raise
        raise disk from exc


def _run(
    job: str,
    backend_spec: str,
    task: str | None,
    array_offset: int | None,
    pilot: bool,
    index: int,
    workers: int,
) -> int:
    from slurmctl.model.core import task_id
    from slurmctl.obs.logs import configure, resolve_level
    from slurmctl.storage.open import open_backend
    from slurmctl.worker.runtime import Worker

    configure(resolve_level())  # JSON lines on stderr (readable ones on a terminal)
    w = Worker(open_backend(json.loads(backend_spec)), job)
    # The job file's level, unless $SLURMCTL_LOG_LEVEL says otherwise.
    logging.getLogger().setLevel(resolve_level(None, (w.job.config.get("logging") or {}).get("level")))
    w.stop.install()
    if pilot:
        i = index if index >= 0 else int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
        return w.run_pilot(i, workers)
    if task is None:
        if array_offset is None or "SLURM_ARRAY_TASK_ID" not in os.environ:
            raise SlurmctlError("worker needs --task, --pilot, or --array-offset inside a Slurm array job")
        task = task_id(int(os.environ["SLURM_ARRAY_TASK_ID"]) + array_offset)
    from slurmctl.errors import EXIT_LEASE_LOST
    from slurmctl.lifecycle import Busy

    try:
        return w.run_task(task)
    except Busy:
        st = w.lifecycle.task(task)
        held = f"held by live worker {st.owner}" if st is not None and st.owner else "not runnable"
        state = st.state.value if st is not None else "missing"
        print(f"task {task} is {state}, {held}: this worker leaves it alone", file=sys.stderr)
        return EXIT_LEASE_LOST


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m slurmctl.worker", description=__doc__)
    ap.add_argument("--job", required=True)
    ap.add_argument("--backend", default='{"kind":"local"}', help="backend spec as JSON")
    ap.add_argument("--task")
    ap.add_argument("--array-offset", type=int)
    ap.add_argument("--pilot", action="store_true")
    ap.add_argument("--index", type=int, default=-1)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        code = run(a.job, a.backend, a.task, a.array_offset, a.pilot, a.index, a.workers)
    except (Exception, KeyboardInterrupt) as exc:  # the traceback of a bug goes to the log (stderr)
        print(failure_message(exc, traceback_file=False), file=sys.stderr)
        sys.exit(exit_code(exc))
    sys.exit(code)
