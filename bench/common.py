"""Shared helpers for the benchmarks in bench/: child-process timing, peak RSS, ratio and result lines.

Every benchmark prints, besides its human-readable report,

* ``RESULT {json}`` lines — one per contender or figure, machine-readable (``bench`` names the script);
* ``RATIO <name> = <x>x ...`` lines — contender / baseline, both measured in the same run.

The smoke tests (tests/bench/test_bench_smoke.py) only check that a script runs and prints its RATIO
line; nothing ever asserts a time.

Import it from a benchmark script as ``from common import ...`` (bench/ is the script's directory, so it
is on ``sys.path`` when a script is run as ``python bench/<name>.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Runs in a fresh intermediate process, so that getrusage(RUSAGE_CHILDREN) sees exactly one child: the
# contender. (In the benchmark process itself RUSAGE_CHILDREN is the maximum over every child reaped so
# far, so a second contender could never report a smaller peak than the first.)
_MEASURE = r"""
import json, resource, subprocess, sys, time
spec = json.loads(sys.argv[1])
t0 = time.perf_counter()
p = subprocess.run(spec["argv"], env=spec["env"], cwd=spec["cwd"], capture_output=True, text=True,
                   timeout=spec["timeout"])
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_rss_kib": rss, "returncode": p.returncode,
                  "stdout": p.stdout, "stderr": p.stderr}))
"""


class BenchError(Exception):
    """A contender failed (non-zero exit or unusable output); the message says which and why."""


@dataclass(frozen=True)
class ChildRun:
    """One contender run in a child process."""

    wall_s: float  # wall time of the child process, interpreter start-up included
    peak_rss_kib: int  # the child's peak resident set size (ru_maxrss, KiB on Linux)
    returncode: int
    stdout: str
    stderr: str

    def last_json(self) -> dict[str, Any]:
        """Return the last stdout line that parses as a JSON object (a child's self-timed figures).

        Raises BenchError if there is none."""
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(value, dict):
                    return value
        raise BenchError(f"child printed no JSON result line; stderr tail:\n{self.stderr[-2000:]}")


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600.0,
    check: bool = True,
    label: str = "child",
) -> ChildRun:
    """Run ``argv`` as a child of a fresh measuring process; return its wall time and peak RSS.

    Raises BenchError if ``check`` and the child exits non-zero (message: label, code, stderr tail).
    Not idempotent in general: it runs whatever ``argv`` does."""
    spec = {
        "argv": list(argv),
        "env": dict(os.environ if env is None else env),
        "cwd": str(cwd) if cwd else None,
        "timeout": timeout,
    }
    p = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if p.returncode != 0:
        raise BenchError(f"{label}: measuring process failed ({p.returncode}):\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout)
    run = ChildRun(out["wall_s"], out["peak_rss_kib"], out["returncode"], out["stdout"], out["stderr"])
    if check and run.returncode != 0:
        raise BenchError(
            f"{label} exited {run.returncode}: {' '.join(argv)[:300]}\n"
            f"stderr tail:\n{run.stderr[-3000:]}\nstdout tail:\n{run.stdout[-1000:]}"
        )
    return run


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a contender: ours, with src/ first on PYTHONPATH, plus ``extra``. Pure.

    ``SLURMCTL_BENCH_SRC=<dir>`` puts another source tree first instead (before/after comparisons:
    ``git archive <commit> src | tar -x -C /tmp/before`` then ``SLURMCTL_BENCH_SRC=/tmp/before/src``)."""
    env = dict(os.environ)
    src = os.environ.get("SLURMCTL_BENCH_SRC") or str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def summary(values: Sequence[float]) -> dict[str, float]:
    """Return {min, median, max} of repeated measurements (rounded to 4 places). Pure."""
    return {
        "min": round(min(values), 4),
        "median": round(statistics.median(values), 4),
        "max": round(max(values), 4),
    }


def result(bench: str, **fields: Any) -> dict[str, Any]:
    """Print one ``RESULT {json}`` line and return the record."""
    record = {"bench": bench, **fields}
    print("RESULT " + json.dumps(record, sort_keys=False), flush=True)
    return record


def ratio(name: str, value: float, baseline: float, *, unit: str = "s", target: str | None = None) -> float:
    """Print ``RATIO <name> = <value/baseline>x (value vs baseline unit) [target]``; return the ratio.

    ``baseline`` must be positive (a baseline measured in the same run)."""
    r = value / baseline if baseline > 0 else float("inf")
    line = f"RATIO {name} = {r:.2f}x ({value:.4g} {unit} vs baseline {baseline:.4g} {unit})"
    if target:
        line += f"; target {target}"
    print(line, flush=True)
    return r


def machine(bench: str, when: str) -> dict[str, Any]:
    """Print a ``RESULT`` line describing the machine now (CPUs, load averages, Python); return it.

    Call it at the start and the end of a run: on a shared machine the load says how far the
    absolute figures can be trusted (ratios of contenders run alternately are sturdier)."""
    load = [round(x, 2) for x in os.getloadavg()]
    return result(
        bench,
        machine=when,
        cpus=os.cpu_count(),
        loadavg_1_5_15=load,
        python=sys.version.split()[0],
    )


def mib(kib: int) -> float:
    """KiB → MiB, one decimal. Pure."""
    return round(kib / 1024, 1)


def dry_run_submit(work: Path, root: Path) -> str:
    """Partition ``work/job.yaml`` into ``root`` with ``slurmctl submit --dry-run``; returns the job id."""
    run = run_child(
        [
            sys.executable,
            "-m",
            "slurmctl",
            "submit",
            str(work / "job.yaml"),
            "--dry-run",
            "--root",
            str(root),
        ],
        env=child_env(),
        cwd=work,
        label="slurmctl submit --dry-run",
    )
    return run.stdout.strip().splitlines()[-1]


def run_in_workdir(bench: str, keep: Path | None, prefix: str, body: Callable[[Path], None]) -> int:
    """Run ``body(work)`` between the start and end ``machine`` lines, in ``keep`` (created if need
    be, kept) or else a temporary directory named ``prefix...`` (removed afterwards). Returns the
    script's exit code: 0, or 1 after printing a BenchError's message."""
    work = keep or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        machine(bench, "start")
        body(work)
        machine(bench, "end")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0
