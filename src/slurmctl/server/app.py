"""The application of ``slurmctl serve``: every job of one backend, live.

Pages (HTML, the dashboard of :mod:`slurmctl.dashboard.render`) and the JSON they read:

    GET /                                 the job list, newest first, runs of a job name as its history
    GET /jobs/{job}                       a job's dashboard; refreshes from the API while the job runs
    GET /api/jobs                         the job list (dashboard.data.list_jobs)
    GET /api/jobs/{job}                   the job's dashboard data (dashboard.data.collect)
    GET /api/jobs/{job}/tasks/{task}      one task's drill-down (dashboard.data.task_detail)
    GET /jobs/{job}/metrics               the job's metrics, OpenMetrics text (as ``slurmctl metrics``)

Errors are JSON ``{"error": message}``: 400 a malformed id, 404 an unknown job or task, 503 the
backend failed.

A job's data is computed once per ``ttl_s`` however many pages poll it. Links are relative, so the
server also works behind a proxy under a path prefix.

Given a control plane database, the same app also serves the control plane's REST API under
``/api/v1`` (:mod:`slurmctl.server.api`: projects, members, allocations, jobs; problem+json errors).
The OpenAPI document is ``/api/openapi.json``.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote

from slurmctl.errors import ConfigError, JobNotFoundError, SlurmctlError, StateError, StorageError
from slurmctl.storage.base import Backend

REFRESH_S = 10.0


class _Cache:
    """The dashboard data of each job, recomputed at most once per ``ttl_s`` (one computation at a
    time per job: concurrent requests wait for it rather than repeat it). Holds the ``keep`` jobs
    asked for last (a 100k-task job's data is megabytes); an unknown job leaves nothing behind."""

    def __init__(self, backend: Backend, ttl_s: float, keep: int = 16) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.keep = keep
        self.lock = threading.Lock()
        self.locks: dict[str, threading.Lock] = {}
        self.entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, job_id: str) -> dict[str, Any]:
        from slurmctl.dashboard.data import collect
        from slurmctl.storage import keys

        if self.backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id)) is None:
            raise JobNotFoundError.in_backend(job_id, self.backend.description)
        with self.lock:
            job_lock = self.locks.setdefault(job_id, threading.Lock())
        with job_lock:
            hit = self.entries.get(job_id)
            if hit and time.monotonic() - hit[0] < self.ttl_s:
                with self.lock:  # asked for again: the last to go
                    if job_id in self.entries:
                        self.entries[job_id] = self.entries.pop(job_id)
                return hit[1]
            data = collect(self.backend, job_id, details=0)  # the page fetches drill-downs
        with self.lock:
            self.entries.pop(job_id, None)
            self.entries[job_id] = (time.monotonic(), data)  # newest last
            for old in list(self.entries)[: max(0, len(self.entries) - self.keep)]:
                del self.entries[old]
                self.locks.pop(old, None)
        return data


def create_app(
    backend: Backend,
    *,
    ttl_s: float = 5.0,
    refresh_s: float = REFRESH_S,
    database: str | None = None,
    submitter: Any = None,
    admins: frozenset[str] | None = None,
) -> Any:
    """The FastAPI application serving ``backend``'s jobs, and, when ``database`` (a control plane
    URL, see :func:`slurmctl.controlplane.db.database_url`) is given, the control plane API on it.
    ``submitter`` (a :class:`~slurmctl.controlplane.submit.Submitter`) defaults to sbatch on the local
    cluster, built on the first submission; ``admins`` to ``$SLURMCTL_ADMINS``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from slurmctl import __version__
    from slurmctl.dashboard import data as ddata
    from slurmctl.dashboard import render
    from slurmctl.storage import keys

    app = FastAPI(
        title="slurmctl",
        version=__version__,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.backend = backend
    cache = _Cache(backend, ttl_s)
    if database is not None:
        _mount_controlplane(app, database, submitter, admins)

    @app.exception_handler(SlurmctlError)
    def _error(request: Request, exc: SlurmctlError) -> JSONResponse:
        from slurmctl.server.api.deps import PREFIX, error_response

        if request.url.path.startswith(PREFIX):
            return error_response(exc)
        status = 500
        if isinstance(exc, ConfigError):
            status = 400
        elif isinstance(exc, JobNotFoundError | StateError):
            status = 404
        elif isinstance(exc, StorageError):
            status = 503
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return render.jobs_page(ddata.list_jobs(backend))

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(job_id: str) -> str:
        data = cache.get(keys.check_job_id(job_id))
        api = f"../api/jobs/{quote(job_id, safe='')}"
        return render.job_page(data, api=api, refresh_s=refresh_s, home="../")

    @app.get("/jobs/{job_id}/metrics", response_model=None)  # the annotation is not a body model
    def job_metrics(job_id: str) -> Response:
        from slurmctl.obs.read import job_openmetrics

        text = job_openmetrics(backend, keys.check_job_id(job_id))
        return Response(text, media_type="application/openmetrics-text; version=1.0.0; charset=utf-8")

    @app.get("/api/jobs")
    def api_jobs() -> list[dict[str, Any]]:
        return ddata.list_jobs(backend)

    @app.get("/api/jobs/{job_id}")
    def api_job(job_id: str) -> dict[str, Any]:
        return cache.get(keys.check_job_id(job_id))

    @app.get("/api/jobs/{job_id}/tasks/{task_id}")
    def api_task(job_id: str, task_id: str) -> dict[str, Any]:
        keys.check_job_id(job_id)
        if backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id)) is None:
            raise JobNotFoundError.in_backend(job_id, backend.description)
        return ddata.task_detail(backend, job_id, task_id)

    return app


def _mount_controlplane(app: Any, database: str, submitter: Any, admins: frozenset[str] | None) -> None:
    from slurmctl.controlplane.auth import admins_from_env
    from slurmctl.controlplane.repo import open_repository
    from slurmctl.server.api import mount

    repo = open_repository(database)
    made: list[Any] = [submitter] if submitter is not None else []
    lock = threading.Lock()

    def get_submitter() -> Any:
        with lock:
            if not made:
                from slurmctl.controlplane.submit import Submitter
                from slurmctl.slurm.client import SlurmClient
                from slurmctl.slurm.runner import CommandRunner

                client = SlurmClient(CommandRunner())
                cluster = client.config().cluster_name
                if not cluster:
                    raise ConfigError("scontrol show config names no ClusterName: cannot submit")
                made.append(Submitter(repo, client, cluster=cluster))
            return made[0]

    mount(app, repo, admins=admins if admins is not None else admins_from_env(), submitter=get_submitter)


def serve(backend: Backend, host: str, port: int, *, database: str | None = None) -> None:
    """Run the server until interrupted. Raises SlurmctlError if the address cannot be listened on."""
    import socket

    import uvicorn

    try:  # a clear message rather than uvicorn's log line and exit 1
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise SlurmctlError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port, or stop what listens there",
        ) from None
    uvicorn.run(create_app(backend, database=database), host=host, port=port, log_level="info")
