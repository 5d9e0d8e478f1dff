"""The worker's process entry point, kept light: ``python -m slurmctl.worker`` imports neither the
CLI framework nor rich, so an array element that runs one short task spends its time on the task,
not on start-up. ``slurmctl worker`` (the CLI) runs the same function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from slurmctl.errors import EXIT_INTERNAL, SlurmctlError


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
    from slurmctl.model.core import task_id
    from slurmctl.storage.open import open_backend
    from slurmctl.worker.runtime import Worker

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    w = Worker(open_backend(json.loads(backend_spec)), job)
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
        try:
            code = run(a.job, a.backend, a.task, a.array_offset, a.pilot, a.index, a.workers)
        except Exception as exc:  # the checkpoint's SQLite on a full or broken scratch: a storage error
            import sqlite3

            if not isinstance(exc, sqlite3.Error):
                raise
            from pathlib import Path

            from slurmctl.worker.checkpoint import disk_error

            disk = disk_error(Path(os.environ.get("SLURMCTL_SCRATCH") or "scratch"), exc)
            if disk is None:
                raise
            raise disk from exc
    except SlurmctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("SLURMCTL_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    sys.exit(code)
