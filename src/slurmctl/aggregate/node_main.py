"""One merge node as a process: what an element of a merge array (``aggregate.where: slurm``) runs.

    python -m slurmctl.aggregate.node_main --backend SPEC --job JOB --plan FINGERPRINT --level K
        [--node I | --offset O] [--output PATH]

The node is ``--node``, else ``$SLURM_ARRAY_TASK_ID + --offset``. It rebuilds the node's spec from
the stored plan (which must still have ``FINGERPRINT``) exactly as the local merge does and runs the
same node function; a node that is already valid is left as it is. Exits 0, or with the error's
exit code (src/slurmctl/errors.py) after printing it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from slurmctl.aggregate import plan as plans
from slurmctl.aggregate.node import NodeManifest, valid
from slurmctl.aggregate.node import run as run_node
from slurmctl.aggregate.run import Settings, _specs
from slurmctl.errors import ConfigError, ResultsError, SlurmctlError
from slurmctl.storage.base import Backend


def run_one(
    backend: Backend, job_id: str, fingerprint: str, level: int, node: int, output: str | None
) -> NodeManifest:
    """Merge node ``node`` of ``level`` of the job's stored plan (skipped if valid)."""
    from slurmctl.coordinator import load_job

    plan = plans.load(backend, job_id)
    if plan is None or plan.fingerprint != fingerprint:
        raise ResultsError(
            f"job {job_id}: the stored aggregation plan is not the one this merge was submitted with",
            hint=f"another `slurmctl results {job_id}` replaced it; run that command again",
        )
    if not 0 <= level < len(plan.levels) or not 0 <= node < plan.levels[level]:
        raise ConfigError(f"job {job_id}: the plan has no node {node} at level {level}")
    if level == plan.root_level and not output:
        raise ConfigError("the root node needs --output (the merged output file)")
    settings = Settings.of_job(load_job(backend, job_id).config)
    spec = _specs(plan, level, settings, Path(output or "."))[node]
    m = valid(backend, spec)
    if m is not None:
        return m
    with tempfile.TemporaryDirectory(prefix="slurmctl-agg-") as tmp:
        return run_node(backend, spec, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    from slurmctl.storage.open import open_backend

    p = argparse.ArgumentParser(prog="python -m slurmctl.aggregate.node_main")
    p.add_argument("--backend", required=True, help="the backend spec (JSON)")
    p.add_argument("--job", required=True)
    p.add_argument("--plan", required=True, help="the plan's fingerprint")
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--node", type=int, help="default: $SLURM_ARRAY_TASK_ID + --offset")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--output", help="the root's output file")
    a = p.parse_args(argv)
    node = a.node
    if node is None and os.environ.get("SLURM_ARRAY_TASK_ID", "").isdigit():
        node = int(os.environ["SLURM_ARRAY_TASK_ID"]) + a.offset
    try:
        if node is None:
            raise ConfigError("give --node, or run as a Slurm array element ($SLURM_ARRAY_TASK_ID)")
        m = run_one(open_backend(json.loads(a.backend)), a.job, a.plan, a.level, node, a.output)
    except SlurmctlError as exc:
        where = f"L{a.level:02d}" + (f"/n{node:06d}" if node is not None else "")
        print(f"slurmctl: merge node {where}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"merge node L{m.level:02d}/n{m.index:06d}: {m.rows} rows, sha256 {m.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
