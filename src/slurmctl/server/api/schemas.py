"""Pydantic v2 request and response bodies of the control plane API. The domain (controlplane.domain)
holds the invariants; these only shape the JSON (unknown fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slurmctl.controlplane.domain import Job, JobKind, JobState, ResearchProject, Role
from slurmctl.controlplane.repo import Versioned


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("NUL characters are not allowed")
        return value


class ProjectCreate(_In):
    name: str = Field(max_length=64)
    pi: str = Field(max_length=32)
    title: str = Field(default="", max_length=200)
    members: dict[str, Role] = Field(default_factory=dict)
    slurm_account: str = Field(default="", max_length=64)
    parent_account: str = Field(default="root", max_length=64)


class ProjectPatch(_In):
    title: str | None = Field(default=None, max_length=200)
    pi: str | None = Field(default=None, max_length=32)
    parent_account: str | None = Field(default=None, max_length=64)


class MemberPut(_In):
    role: Role = Role.MEMBER


class AllocationIn(_In):
    cluster: str = Field(max_length=64)
    partition: str | None = Field(default=None, max_length=64)
    cpu_hours: float = 0
    gpu_hours: float = 0
    mem_gb_hours: float = 0
    period_start: datetime
    period_end: datetime


class Allocation(AllocationIn):
    pass


class Project(BaseModel):
    name: str
    title: str
    pi: str
    members: dict[str, Role]
    slurm_account: str
    parent_account: str
    allocations: list[Allocation]
    version: int

    @classmethod
    def of(cls, v: Versioned[ResearchProject]) -> Project:
        return cls(**v.entity.model_dump(mode="json"), version=v.version)


class ProjectList(BaseModel):
    items: list[Project]


class JobCreate(_In):
    project: str = Field(max_length=64)
    script: str = Field(min_length=1, max_length=1_000_000)


class TrackedJob(BaseModel):
    id: str
    kind: JobKind
    submitted_by: str
    project: str
    cluster: str
    backend: str
    state: JobState
    slurm_job_ids: list[str]
    idempotency_key: str | None
    submit_token: str | None
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    version: int

    @classmethod
    def of(cls, v: Versioned[Job]) -> TrackedJob:
        data: dict[str, Any] = v.entity.model_dump(mode="json", exclude={"script"})
        return cls(**data, version=v.version)


class JobPage(BaseModel):
    items: list[TrackedJob]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": "application/problem+json"}
    for status in (401, 403, 404, 409, 412, 422, 428, 503)
}
"""The error answers every route may give, for the OpenAPI document."""
