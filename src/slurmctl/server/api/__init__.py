"""The control plane's REST API (/api/v1), mounted on the app of ``slurmctl serve``.

Every route authenticates (Bearer API token, 401) and calls :func:`slurmctl.controlplane.auth.authorize`
(403); writes go through the repository. See docs/control-plane.md, "The REST API".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slurmctl.controlplane.repo import Repository


def mount(app: Any, repo: Repository, *, admins: frozenset[str], submitter: Callable[[], Any]) -> None:
    """Add the API's routes and its problem+json error handlers to ``app``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from slurmctl.server.api import jobs, projects
    from slurmctl.server.api.deps import PREFIX, Api, problem

    app.state.controlplane = Api(repo, admins, submitter)
    app.include_router(projects.router)
    app.include_router(jobs.router)

    default_validation = app.exception_handlers.get(RequestValidationError)
    default_http = app.exception_handlers.get(HTTPException)

    async def validation(request: Any, exc: RequestValidationError) -> Any:
        if not request.url.path.startswith(PREFIX):
            return await default_validation(request, exc)
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return problem(422, "Unprocessable Content", "; ".join(lines) or "invalid request")

    async def http(request: Any, exc: HTTPException) -> Any:
        if not request.url.path.startswith(PREFIX):
            return await default_http(request, exc)
        headers = dict(exc.headers or {})
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail), **headers)

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
