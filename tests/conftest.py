"""Shared fixtures. Slurm fixtures (``slurm_cluster``: fails under CI=true when the dev cluster is
unreachable, skips otherwise) live in tests/slurm_fixtures.py; the control plane's database fixtures
(``db_engine``, ``repo``: SQLite and PostgreSQL, the latter failing under CI=true when missing) in
tests/db_fixtures.py."""

pytest_plugins = ["tests.slurm_fixtures", "tests.db_fixtures"]
