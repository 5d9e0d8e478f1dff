"""The streaming partitioner: input files (JSONL, CSV, Parquet; gz/zst) → batch files of JSON lines.

See docs/partitioning.md for the on-disk layout, the reject rules and the resume protocol.

The names below are imported on first use: a worker imports ``slurmctl.partition.validity`` (the
definition of a valid record, and the decoder it reads batch lines with) without the partitioner
(~45 ms of imports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import partition
    from .inputs import expand_inputs
    from .model import BatchInfo, CsvOptions, PartitionSummary

__all__ = ["BatchInfo", "CsvOptions", "PartitionSummary", "expand_inputs", "partition"]

_HOME = {
    "partition": "core",
    "expand_inputs": "inputs",
    "BatchInfo": "model",
    "CsvOptions": "model",
    "PartitionSummary": "model",
}


def __getattr__(name: str) -> Any:
    """Returns one of ``__all__`` (imported now, then kept); raises AttributeError for other names."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
