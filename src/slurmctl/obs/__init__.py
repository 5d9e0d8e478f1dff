"""Observability: structured logs (logs.py) and metrics (metrics.py); docs/observability.md."""
