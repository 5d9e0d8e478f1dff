"""Jobs tracked by the control plane: /api/v1/jobs…"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from slurmctl.controlplane.auth import Principal, Resource, authorize
from slurmctl.controlplane.domain import JobState
from slurmctl.errors import SubmissionError
from slurmctl.server.api.deps import PREFIX, PROJECT, JobId, actor, api, etag, idempotent, principal
from slurmctl.server.api.schemas import PROBLEMS, JobCreate, JobPage, TrackedJob

router = APIRouter(prefix=f"{PREFIX}/jobs", tags=["jobs"], responses=PROBLEMS)


@router.post(
    "",
    status_code=201,
    response_model=TrackedJob,
    summary="Accept an sbatch script for a project, then sbatch it under the project's account",
    description="201: submitted (Slurm ids known). 202: accepted, but sbatch failed transiently; "
    "the poller's recovery submits it. sbatch refusing the script answers 502 (the job is failed).",
)
def submit_job(request: Request, body: JobCreate, who: Principal = Depends(principal)) -> Response:
    a = api(request)
    project = a.repo.get_project(body.project).entity
    authorize(who, "job.submit", Resource(project=project))

    def run() -> JSONResponse:
        by = actor(request, who)
        sub = a.submitter()
        key = request.headers.get("idempotency-key")
        v, new = sub.accept_new(project=body.project, script=body.script, actor=by, idempotency_key=key)
        status = 201
        if new:  # only the first request with a key sbatches; a retry reports what it did
            try:
                v = sub.submit(v, by)
            except SubmissionError:
                v = a.repo.get_job(v.entity.id)
                if v.entity.state != JobState.ACCEPTED:
                    raise
        if v.entity.state == JobState.ACCEPTED:
            status = 202
        headers = {"ETag": etag(v.version), "Location": f"{PREFIX}/jobs/{v.entity.id}"}
        return JSONResponse(TrackedJob.of(v).model_dump(mode="json"), status_code=status, headers=headers)

    return idempotent(request, who, body, run)


@router.get("", response_model=JobPage, summary="Jobs by id; non-admins must name a project")
def list_jobs(
    request: Request,
    who: Principal = Depends(principal),
    project: str | None = Query(default=None, pattern=PROJECT),
    cluster: str | None = Query(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    state: list[JobState] = Query(default=[]),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str = Query(
        default="", pattern=r"^[A-Za-z0-9_.:-]{0,64}$", description="next_cursor of the previous page"
    ),
) -> JobPage:
    repo = api(request).repo
    resource = Resource(project=repo.get_project(project).entity) if project is not None else Resource()
    authorize(who, "job.list", resource)
    rows = repo.list_jobs(project=project, cluster=cluster, states=list(state), limit=limit + 1, after=cursor)
    page = rows[:limit]
    more = len(rows) > limit
    return JobPage(items=[TrackedJob.of(v) for v in page], next_cursor=page[-1].entity.id if more else None)


@router.get("/{job_id}", response_model=TrackedJob)
def get_job(request: Request, job_id: JobId, who: Principal = Depends(principal)) -> Response:
    repo = api(request).repo
    v = repo.get_job(job_id)
    project = repo.get_project(v.entity.project).entity
    authorize(who, "job.read", Resource(project=project, owner=v.entity.submitted_by))
    return JSONResponse(TrackedJob.of(v).model_dump(mode="json"), headers={"ETag": etag(v.version)})
