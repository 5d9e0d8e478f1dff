"""Run ``slurmctl results`` with one kill point of the merge armed: SIGKILL this process at the Nth
time a step of the aggregation happens.

    python tests/faults/agg_killpoint.py POINT N [slurmctl arguments...]

POINTS (in the order a merge reaches them; run with ``-j 1`` so that nodes run in this process):

    plan             the plan is stored, no node has run
    node-written     the Nth node wrote its output to its temp file (not renamed)
    node-output      the Nth node's output is renamed into place; no manifest, no .done
    node-manifest    the Nth node's manifest is stored; no .done
    node-done        the Nth node's .done is stored
    output-manifest  the aggregation manifest is stored; no success marker

If the point is never reached the CLI runs to its end and this exits 99.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

POINTS = ("plan", "node-written", "node-output", "node-manifest", "node-done", "output-manifest")
NEVER_REACHED = 99


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in POINTS or not sys.argv[2].isdigit():
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    point, n = sys.argv[1], int(sys.argv[2])
    seen = 0

    def hit(p: str) -> None:
        nonlocal seen
        if p == point:
            seen += 1
            if seen == n:
                sys.stdout.flush()
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    import slurmctl.aggregate.formats as formats
    import slurmctl.aggregate.node as node
    import slurmctl.aggregate.plan as plans
    from slurmctl.storage.local import LocalObjectStore

    store = plans.store

    def stored(*a: Any, **kw: Any) -> Any:
        out = store(*a, **kw)
        hit("plan")
        return out

    plans.store = stored
    for table in (formats.WRITE_ROWS, formats.MERGE):
        for fmt, fn in list(table.items()):

            def written(*a: Any, _fn: Any = fn, **kw: Any) -> Any:
                out = _fn(*a, **kw)
                hit("node-written")
                return out

            table[fmt] = written
    parquet_tasks = formats.write_tasks_parquet

    def tasks_written(*a: Any, **kw: Any) -> Any:
        out = parquet_tasks(*a, **kw)
        hit("node-written")
        return out

    formats.write_tasks_parquet = tasks_written
    durable = node._durable

    def renamed(*a: Any, **kw: Any) -> Any:
        out = durable(*a, **kw)
        hit("node-output")
        return out

    node._durable = renamed
    put = LocalObjectStore.put

    def put_and_hit(self: Any, key: str, data: bytes) -> Any:
        out = put(self, key, data)
        if "/aggregate/" in key and key.endswith(".manifest.json"):
            hit("node-manifest")
        elif "/aggregate/" in key and key.endswith(".done"):
            hit("node-done")
        elif key.endswith("/output/manifest.json"):
            hit("output-manifest")
        return out

    LocalObjectStore.put = put_and_hit  # type: ignore[method-assign]
    from slurmctl.cli.main import main as cli_main

    sys.argv = ["slurmctl", *sys.argv[3:]]
    try:
        cli_main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    print(f"agg_killpoint: {point} never reached ({n} times expected, {seen} seen)", file=sys.stderr)
    sys.exit(NEVER_REACHED if code == 0 else code)


if __name__ == "__main__":
    main()
