"""The job dashboard: :mod:`.data` gathers and aggregates a job in one pass, :mod:`.render` turns
it into one self-contained HTML page (``slurmctl dashboard``), which ``slurmctl serve`` also serves
live (:mod:`slurmctl.server`). See docs/dashboard.md."""
