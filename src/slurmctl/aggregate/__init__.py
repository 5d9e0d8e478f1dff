"""Aggregation: verify every published task result and merge them into one output, as a tree of
merge nodes with bounded memory, resumable node by node (docs/aggregation.md).

    discover.py   which results are published and complete (one listing, then per-task reads)
    plan.py       the merge tree, stored before any node runs
    schema.py     column schemas, their unification and evolution rules
    formats.py    Parquet, SQLite, CSV, JSONL: streaming writers and mergers
    node.py       one merge node: verify inputs, write output, manifest, .done
    reduce.py     user reductions applied at every node
    run.py        the levels on this machine with N processes; --status, --redo-level
    slurm.py      the levels as Slurm job arrays (where: slurm)
    node_main.py  one node as a process: what an element of a merge array runs
"""

from slurmctl.aggregate.run import Settings, aggregate

__all__ = ["Settings", "aggregate"]
