"""Pilot chaos on real Slurm, N runs in a row (target: every run exactly once, 20 of 20).

Each run is the scenario of tests/faults/test_pilot_chaos.py (``run_chaos``, the same code): a
pilot job with two pilots, submitted without ``--wait``; once both pilots hold tasks, one worker is
``kill -9``'d and the other pilot ``scancel``'d at seeded random moments; then ``slurmctl resubmit
JOB`` and ``slurmctl status JOB --watch``. Per run it prints the outcome, the sbatch calls (a PATH
shim counts them), the items handled twice and whether they all lie in the killed worker's
uncommitted items, and the tasks' failed attempts; then the summary line

    N of N exactly once, F failed jobs, E extra pilot submissions, D items handled twice outside
    the killed worker's uncommitted items

where E counts pilot submissions beyond the one resubmission each run needs. Run k uses seed
``--seed + k``; a run is replayed with ``bench/pilot_chaos.py 1 --seed <its seed>``, or with
``SLURMCTL_FAULT_SEED=<seed>`` and pytest on ``test_pilot_chaos_exactly_once[0]``.

Usage: ``.venv/bin/python bench/pilot_chaos.py [RUNS] [--seed S] [--dir DIR] [--keep]``. Needs the dev
cluster (``sudo scripts/dev-cluster up``). ``SLURMCTL_BENCH_SRC=<dir>`` runs another source tree
(bench/README.md). Exit code 0 iff every run kept every promise; 2 if the cluster is unreachable.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, child_env, machine, result

sys.path.insert(0, str(REPO))

# pytest.fail's exception: a run that hangs is reported, not fatal.
import pytest

from tests.faults.harness import Replay
from tests.faults.test_pilot_chaos import ChaosOutcome, run_chaos

BENCH = "pilot_chaos"
NODEID = "tests/faults/test_pilot_chaos.py::test_pilot_chaos_exactly_once[0]"


def cluster_problem() -> str | None:
    """Why the dev cluster cannot be used, or None if ``scontrol ping`` says it is up."""
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        return "Slurm commands are not on PATH"
    try:
        p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "scontrol ping timed out"
    return None if "is UP" in p.stdout else f"scontrol ping: {(p.stdout + p.stderr).strip()}"


def one_run(work: Path, seed: int) -> ChaosOutcome:
    """One chaos run in ``work``; a run that hangs or cannot start becomes an outcome with a
    problem (never an exception)."""
    replay = Replay(seed, NODEID)
    try:
        return run_chaos(work, replay)
    except pytest.fail.Exception as exc:
        return ChaosOutcome(seed=seed, problems=[f"did not complete: {exc}"])
    except Exception as exc:  # a bug of the driver or the product: report it, keep going
        return ChaosOutcome(seed=seed, problems=[f"did not complete: {type(exc).__name__}: {exc}"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="?", type=int, default=20, help="runs in a row (default 20)")
    ap.add_argument("--seed", type=int, default=None, help="seed of run 0 (run k: seed + k); default random")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    problem = cluster_problem()
    if problem:
        print(f"dev Slurm cluster unavailable: {problem} (run: sudo scripts/dev-cluster up)", file=sys.stderr)
        return 2
    # Every slurmctl command, and the pilots Slurm starts (sbatch exports the environment), import
    # the source tree under test.
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]
    base = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    work = args.dir or Path(tempfile.mkdtemp(prefix="pilot-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    machine(BENCH, "start")
    print(f"{args.runs} run(s), seeds {base}..{base + args.runs - 1}, work dir {work}", flush=True)
    outcomes = []
    for k in range(args.runs):
        t0 = time.monotonic()
        o = one_run(work / f"run{k:02d}", base + k)
        outcomes.append(o)
        print(f"run {k + 1:2d}/{args.runs} ({time.monotonic() - t0:.0f} s) {o.line()}", flush=True)
        if o.problems and o.details:
            print("    " + o.details.replace("\n", "\n    "), flush=True)
        result(
            BENCH,
            run=k,
            seed=o.seed,
            job=o.job_id,
            state=o.state,
            exactly_once=o.exactly_once,
            sbatch_calls=o.sbatch_calls,
            extra_submissions=o.extra_submissions,
            killed_tasks=o.killed_tasks,
            twice=len(o.twice),
            twice_outside=len(o.outside),
            failures=o.failures,
            resubmit=o.resubmit,
            problems=o.problems,
        )
    n = len(outcomes)
    once = sum(o.exactly_once for o in outcomes)
    failed = sum(o.state != "succeeded" for o in outcomes)
    extra = sum(max(0, o.extra_submissions - 1) for o in outcomes)
    none = sum(o.extra_submissions < 1 for o in outcomes)
    outside = sum(len(o.outside) for o in outcomes)
    machine(BENCH, "end")
    print(
        f"{once} of {n} exactly once, {failed} failed jobs, {extra} extra pilot submissions, "
        f"{outside} items handled twice outside the killed worker's uncommitted items"
        + (f" ({none} run(s) without the one resubmission)" if none else ""),
        flush=True,
    )
    if not args.keep and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(not o.problems for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
