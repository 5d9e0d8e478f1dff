"""The worker tests' fixtures, shared from test_worker_runs.py: ``scratch`` (a node-local scratch
directory per simulated node) and ``restore_signals``."""

from test_worker_runs import restore_signals, scratch

__all__ = ["restore_signals", "scratch"]
