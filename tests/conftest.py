"""Shared fixtures. Slurm fixtures (``slurm_cluster``: fails under CI=true when the dev cluster is
unreachable, skips otherwise) live in tests/slurm_fixtures.py."""

pytest_plugins = ["tests.slurm_fixtures"]
