"""The streaming partitioner: input files (JSONL, CSV, Parquet; gz/zst) → batch files of JSON lines.

See docs/partitioning.md for the on-disk layout, the reject rules and the resume protocol.
"""

from .core import partition
from .inputs import expand_inputs
from .model import BatchInfo, CsvOptions, PartitionSummary

__all__ = ["BatchInfo", "CsvOptions", "PartitionSummary", "expand_inputs", "partition"]
