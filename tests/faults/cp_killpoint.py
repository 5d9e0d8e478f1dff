"""Run ``slurmctl`` with one control-plane kill point armed: SIGKILL this process right after a step
of :class:`slurmctl.controlplane.submit.Submitter`, as an OOM killer or a lost session would.

    python tests/faults/cp_killpoint.py POINT [slurmctl arguments...]

POINTS:
    accepted    the job row is committed (state accepted); sbatch has not run
    sbatched    sbatch answered with the Slurm id; the id is not committed

Exits 99 if the point was never reached (the command ran to its end).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

POINTS = ("accepted", "sbatched")


def _kill() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    from slurmctl.controlplane.submit import Submitter

    accept, record = Submitter.accept, Submitter._record

    def accept_hooked(self: Any, **kw: Any) -> Any:
        v = accept(self, **kw)
        if point == "accepted":
            _kill()
        return v

    def record_hooked(self: Any, v: Any, slurm_id: str, actor: Any) -> Any:
        if point == "sbatched":
            print(f"sbatched {slurm_id}", flush=True)
            _kill()
        return record(self, v, slurm_id, actor)

    Submitter.accept = accept_hooked  # type: ignore[method-assign]
    Submitter._record = record_hooked  # type: ignore[method-assign]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in POINTS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    point = sys.argv[1]
    arm(point)
    from slurmctl.cli.main import main as cli_main

    sys.argv = ["slurmctl", *sys.argv[2:]]
    with contextlib.suppress(SystemExit):
        cli_main()
    print(f"cp_killpoint: {point} never reached", file=sys.stderr)
    sys.exit(99)


if __name__ == "__main__":
    main()
