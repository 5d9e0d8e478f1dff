"""Projects, their members and allocations: /api/v1/projects…"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from slurmctl.controlplane.auth import Principal, Resource, authorize
from slurmctl.controlplane.domain import ResearchProject, ResourceAllocation
from slurmctl.controlplane.repo import Versioned
from slurmctl.server.api.deps import (
    PREFIX,
    ProjectName,
    UserName,
    actor,
    api,
    etag,
    idempotent,
    if_match,
    principal,
)
from slurmctl.server.api.schemas import (
    PROBLEMS,
    AllocationIn,
    MemberPut,
    Project,
    ProjectCreate,
    ProjectList,
    ProjectPatch,
)

router = APIRouter(prefix=f"{PREFIX}/projects", tags=["projects"], responses=PROBLEMS)


def _answer(v: Versioned[ResearchProject], status: int = 200) -> JSONResponse:
    headers = {"ETag": etag(v.version)}
    if status == 201:
        headers["Location"] = f"{PREFIX}/projects/{v.entity.name}"
    return JSONResponse(Project.of(v).model_dump(mode="json"), status_code=status, headers=headers)


def _load(request: Request, who: Principal, name: str, action: str) -> Versioned[ResearchProject]:
    v = api(request).repo.get_project(name)
    authorize(who, action, Resource(project=v.entity))
    return v


@router.get("", response_model=ProjectList, summary="The caller's projects (every project for admins)")
def list_projects(request: Request, who: Principal = Depends(principal)) -> ProjectList:
    authorize(who, "project.list", Resource())
    rows = api(request).repo.list_projects()
    mine = [v for v in rows if who.admin or who.user in v.entity.members]
    return ProjectList(items=[Project.of(v) for v in mine])


@router.post("", status_code=201, response_model=Project, summary="Create a project (admins)")
def create_project(request: Request, body: ProjectCreate, who: Principal = Depends(principal)) -> Response:
    authorize(who, "project.create", Resource())

    def run() -> JSONResponse:
        project = ResearchProject.build(**body.model_dump())
        return _answer(api(request).repo.create_project(project, actor(request, who)), 201)

    return idempotent(request, who, body, run)


@router.get("/{name}", response_model=Project)
def get_project(request: Request, name: ProjectName, who: Principal = Depends(principal)) -> Response:
    return _answer(_load(request, who, name, "project.read"))


@router.patch("/{name}", response_model=Project, summary="Change title, PI or parent (If-Match required)")
def update_project(
    request: Request, name: ProjectName, body: ProjectPatch, who: Principal = Depends(principal)
) -> Response:
    v = _load(request, who, name, "project.update")
    if_match(request, v.version, required=True)
    changes = body.model_dump(exclude_none=True)
    project = v.entity.replace(**changes)
    return _answer(api(request).repo.save_project(project, v.version, actor(request, who)))


@router.delete("/{name}", status_code=204, summary="Delete a project without jobs (If-Match required)")
def delete_project(request: Request, name: ProjectName, who: Principal = Depends(principal)) -> Response:
    v = _load(request, who, name, "project.delete")
    if_match(request, v.version, required=True)
    api(request).repo.delete_project(name, v.version, actor(request, who))
    return Response(status_code=204)


@router.put("/{name}/members/{user}", response_model=Project, summary="Add a member or change their role")
def put_member(
    request: Request, name: ProjectName, user: UserName, body: MemberPut, who: Principal = Depends(principal)
) -> Response:
    v = _load(request, who, name, "project.member.add")
    if_match(request, v.version, required=False)
    project = v.entity.with_member(user, body.role)
    repo = api(request).repo
    return _answer(repo.save_project(project, v.version, actor(request, who), "project.member.add"))


@router.delete("/{name}/members/{user}", response_model=Project, summary="Remove a member (not the PI)")
def delete_member(
    request: Request, name: ProjectName, user: UserName, who: Principal = Depends(principal)
) -> Response:
    v = _load(request, who, name, "project.member.remove")
    if_match(request, v.version, required=False)
    project = v.entity.without_member(user)
    repo = api(request).repo
    return _answer(repo.save_project(project, v.version, actor(request, who), "project.member.remove"))


@router.post("/{name}/allocations", status_code=201, response_model=Project, summary="Add an allocation")
def add_allocation(
    request: Request, name: ProjectName, body: AllocationIn, who: Principal = Depends(principal)
) -> Response:
    v = _load(request, who, name, "project.allocate")

    def run() -> JSONResponse:
        if_match(request, v.version, required=False)
        alloc = ResourceAllocation.build(**body.model_dump())
        project = v.entity.replace(allocations=(*v.entity.allocations, alloc))
        saved = api(request).repo.save_project(project, v.version, actor(request, who), "project.allocate")
        return _answer(saved, 201)

    return idempotent(request, who, body, run)
