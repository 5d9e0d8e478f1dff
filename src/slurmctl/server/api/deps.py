"""What every control plane route shares: the caller (Bearer API token → Principal), problem+json
errors (RFC 9457), ETags from row versions and If-Match, and Idempotency-Key replay of POSTs."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from slurmctl.controlplane.auth import Principal, verify_token
from slurmctl.controlplane.repo import Actor, Repository
from slurmctl.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    SchedulerError,
    SlurmctlError,
    StateError,
    StorageError,
)

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
PROJECT = r"^[a-z][a-z0-9_-]{0,63}$"
USER = r"^[a-z_][a-z0-9_-]{0,31}\$?$"
JOB_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
log = logging.getLogger(__name__)
ProjectName = Annotated[str, Path(pattern=PROJECT)]
UserName = Annotated[str, Path(pattern=USER)]
JobId = Annotated[str, Path(pattern=JOB_ID)]


class ApiError(SlurmctlError):
    """An HTTP error of the API itself (precondition failed or required, idempotency key misuse)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title = status, title


def problem(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def status_of(exc: SlurmctlError) -> tuple[int, str]:
    """The HTTP status and title of a slurmctl error. Pure."""
    if isinstance(exc, ApiError):
        return exc.status, exc.title
    for kind, status, title in (
        (AuthenticationError, 401, "Unauthorized"),
        (ForbiddenError, 403, "Forbidden"),
        (NotFoundError, 404, "Not Found"),
        (ConfigError, 422, "Unprocessable Content"),
        (ConflictError, 409, "Conflict"),
        (StateError, 409, "Conflict"),
        (StorageError, 503, "Service Unavailable"),
        (SchedulerError, 502, "Bad Gateway"),
    ):
        if isinstance(exc, kind):
            return status, title
    return 500, "Internal Server Error"


def error_response(exc: SlurmctlError) -> JSONResponse:
    """The problem+json answer to ``exc``; a database or internal failure is logged, and its
    details (SQL, parameters, URLs) stay out of the answer."""
    status, title = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    detail = exc.message
    if status in (500, 503):
        log.error("control plane API: %s", exc)
        detail = "the control plane database failed; try again later" if status == 503 else "internal error"
    return problem(status, title, detail, **headers)


@dataclass
class Api:
    """The control plane as the routes see it."""

    repo: Repository
    admins: frozenset[str]
    submitter: Callable[[], Any]
    """returns the :class:`~slurmctl.controlplane.submit.Submitter` (built on first use)"""


def api(request: Request) -> Api:
    return request.app.state.controlplane  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="an API token: `slurmctl token create`")


def principal(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """The caller. Raises AuthenticationError (401) without a valid Bearer token."""
    if cred is None or cred.scheme.lower() != "bearer":
        raise AuthenticationError("an API token is required: Authorization: Bearer sct_…")
    a = api(request)
    return verify_token(a.repo, cred.credentials, admins=a.admins)


def actor(request: Request, who: Principal) -> Actor:
    host = request.client.host if request.client else "unknown"
    return Actor(who.user, f"api {host}")


def etag(version: int) -> str:
    return f'"{version}"'


def if_match(request: Request, version: int, *, required: bool) -> None:
    """Check the request's If-Match against ``version``: 412 on mismatch, 428 when required and absent."""
    header = request.headers.get("if-match")
    if header is None:
        if required:
            raise ApiError(428, "Precondition Required", "send If-Match with the ETag you read")
        return
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    if "*" not in tags and etag(version) not in tags:
        raise ApiError(
            412, "Precondition Failed", f"If-Match {header} does not match the current ETag {etag(version)}"
        )


def idempotent(
    request: Request, who: Principal, body: BaseModel | None, run: Callable[[], JSONResponse]
) -> JSONResponse:
    """Run a POST once per Idempotency-Key: the same key with the same request replays the first
    answer (header ``Idempotent-Replayed: true``); with another request it is refused (422). Only
    successful answers are remembered; without the header the POST simply runs."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return run()
    if not 1 <= len(key) <= 200:
        raise ApiError(400, "Bad Request", "Idempotency-Key must be 1 to 200 characters")
    payload = body.model_dump(mode="json") if body is not None else None
    canonical = json.dumps([request.method, request.url.path, payload], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    repo = api(request).repo
    seen = repo.recalled(who.user, key)
    if seen is not None:
        if seen[0] != digest:
            raise ApiError(422, "Unprocessable Content", "this Idempotency-Key was used for another request")
        return _replay(seen[1], seen[2])
    response = run()
    if response.status_code < 300:
        try:
            repo.remember(who.user, key, digest, response.status_code, bytes(response.body).decode())
        except ConflictError:  # a concurrent request with the same key answered first
            again = repo.recalled(who.user, key)
            if again is not None and again[0] == digest:
                return _replay(again[1], again[2])
            raise
    return response


def _replay(status: int, body: str) -> JSONResponse:
    data = json.loads(body)
    response = JSONResponse(data, status_code=status, headers={"Idempotent-Replayed": "true"})
    if isinstance(data, dict) and isinstance(data.get("version"), int):
        response.headers["ETag"] = etag(data["version"])
    return response
