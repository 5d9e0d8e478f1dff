"""``slurmctl serve``: the HTTP server over one backend (FastAPI; the ``server`` extra).
:func:`slurmctl.server.app.create_app` builds the application; see docs/dashboard.md."""
