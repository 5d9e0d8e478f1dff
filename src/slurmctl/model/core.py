"""The core model: Job, Phase, TaskGroup, Task, Batch — typed, JSON round-trippable, versioned.

Immutable descriptions (Batch, Task, Job manifests) live in the object store; the mutable part of a
task or job (its state, attempt, lease, counters) is a ``TaskStatus`` / ``JobStatus`` record in the
state store, changed only by compare-and-set through :mod:`slurmctl.model.states`.

``schema_version`` is written into every document. Readers accept documents of their own major
version and reject newer ones with a clear error, so an old worker never misreads a new job.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import msgspec

from slurmctl.errors import StateError
from slurmctl.model.states import JobState, TaskState, advance_job, advance_task

SCHEMA_VERSION = 1


class Doc(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every stored document: typed fields, JSON round-trip, schema version check.

    msgspec rather than pydantic: every worker process starts by reading these documents, and
    importing pydantic and building its models cost ~0.2 s of each worker's start-up (an array
    element that runs one short task is mostly start-up). Job *configuration* — what users
    write, with its file:line error messages and JSON Schema — stays pydantic (``config/``).
    The few methods below keep the pydantic spelling the rest of the code uses."""

    schema_version: int = SCHEMA_VERSION
    # The newest schema_version this code reads of this kind of document (a kind whose fields
    # change bumps its own: ResultManifest is at 2).
    SCHEMA: ClassVar[int] = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    def model_dump_json(self) -> str:
        return msgspec.json.encode(self).decode()

    def model_dump(self, *, mode: str = "json") -> dict[str, Any]:
        """The document as plain JSON values (enums as their values, nested documents as dicts)."""
        return msgspec.to_builtins(self)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        """A copy with ``update`` applied (not validated, like pydantic's)."""
        return msgspec.structs.replace(self, **(update or {}))

    @classmethod
    def model_validate(cls, obj: Any) -> Any:
        """A document from plain values. Raises msgspec.ValidationError (path in the message)."""
        if isinstance(obj, cls):
            return obj
        return msgspec.convert(obj, cls, strict=False)

    @classmethod
    def from_json(cls, data: bytes | str, *, where: str = "") -> Any:
        try:
            raw = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise StateError(f"{where or cls.__name__}: not valid JSON: {exc}") from exc
        version = raw.get("schema_version", SCHEMA_VERSION) if isinstance(raw, dict) else None
        if isinstance(version, int) and version > cls.SCHEMA:
            raise StateError(
                f"{where or cls.__name__} has schema_version {version}; this slurmctl reads up to "
                f"{cls.SCHEMA}",
                hint="upgrade slurmctl on this node",
            )
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise StateError(f"{where or cls.__name__} is malformed: {exc}") from exc


class Batch(Doc, kw_only=True):
    """One slice of the input: items ``first_item .. first_item + items - 1``."""

    batch_id: str
    index: int
    key: str | None  # object key of the batch file; None for a reference batch
    first_item: int
    items: int
    bytes: int
    sha256: str
    source: str
    first_line: int
    last_line: int
    # A reference batch (local backend, uncompressed JSONL; see docs/partitioning.md): no batch file,
    # its bytes are the `bytes` bytes at `ref_offset` of the input file `ref_path`, covered by `sha256`.
    ref_path: str | None = None
    ref_offset: int | None = None
    # A retry batch (slurmctl.retry): its line k holds item ``item_ids[k]``; ``first_item`` is 0 and
    # the worker's positions 0..items-1 stand for these ids in rows, errors and ``ctx.item_id``.
    item_ids: list[int] | None = None

    @property
    def item_range(self) -> range:
        return range(self.first_item, self.first_item + self.items)

    def item_id(self, position: int) -> int:
        """The item id at ``position`` (``first_item`` + line number of the batch)."""
        return position if self.item_ids is None else self.item_ids[position - self.first_item]


class Task(Doc, kw_only=True):
    """The unit of execution: one batch through the handler. Task manifest."""

    task_id: str
    job_id: str
    index: int
    batch: Batch


class TaskGroup(Doc, kw_only=True):
    """Tasks submitted together (one Slurm array, possibly split into chunks)."""

    group_id: str
    phase: str
    task_ids: list[str] = msgspec.field(default_factory=list)
    first_index: int = 0
    count: int = 0
    mode: Literal["array", "pilot", "local"] = "local"
    submissions: list[dict[str, Any]] = msgspec.field(
        default_factory=list
    )  # e.g. {"array_job_id", "offset", "size"}


class Phase(Doc, kw_only=True):
    """A stage of the job: ``map`` then ``aggregate``."""

    name: Literal["map", "aggregate"]
    state: Literal["pending", "running", "done", "failed"] = "pending"
    started_at: float | None = None
    finished_at: float | None = None


class Job(Doc, kw_only=True):
    """The job manifest: what was submitted, how it was partitioned, which groups exist."""

    job_id: str
    name: str
    created_at: float
    config: dict[str, Any]
    config_sha256: str
    backend: dict[str, Any]
    executor: str
    total_items: int = 0
    rejected: int = 0
    tasks: int = 0
    inputs: list[dict[str, Any]] = msgspec.field(default_factory=list)
    phases: list[Phase] = msgspec.field(default_factory=lambda: [Phase(name="map"), Phase(name="aggregate")])
    groups: list[TaskGroup] = msgspec.field(default_factory=list)

    def task_ids(self) -> list[str]:
        """Every task of the job: ``t0000000`` .. one per batch, in input order."""
        return [task_id(i) for i in range(self.tasks)]


def task_id(index: int) -> str:
    return f"t{index:07d}"


class TaskStatus(Doc, kw_only=True):
    """The mutable state of a task (state store, table ``tasks``); changed only by
    :mod:`slurmctl.lifecycle`."""

    task_id: str
    state: TaskState = TaskState.PENDING
    attempt: int = 0
    owner: str | None = None  # worker id: host:pid[:slurm job]
    lease_expires: float | None = None
    items_done: int = 0
    items_failed: int = 0
    items_total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = msgspec.field(default_factory=time.time)
    exit_code: int | None = None
    error: str | None = None
    slurm_job_id: str | None = None
    failures: int = 0  # attempts that ended in a failure (the budget: retry.max_attempts)
    submission: str | None = None  # the Slurm element of the holder: <array job id>_<index>
    # How Slurm ended the latest failed attempt, when the lifecycle failed it from Slurm's facts:
    # the element's state ("failed", "timeout", ...), its sacct ExitCode ("0:9") and the verdict
    # (failures/classify.py: "resources/memory", ...).
    slurm_state: str | None = None
    slurm_exit: str | None = None
    cause: str | None = None
    # Escalated resources (retry.escalate): {"mem_mb", "time_min", "steps", "attempt"}; a task
    # that has them runs as an array element of its own with these --mem/--time.
    resources: dict[str, Any] | None = None

    def advance(self, new: TaskState, **changes: Any) -> TaskStatus:
        """A copy in state ``new`` with ``changes`` applied. Raises StateError if illegal."""
        advance_task(self.state, new)
        return self.model_copy(update={"state": new, "updated_at": time.time(), **changes})


class JobStatus(Doc, kw_only=True):
    """The mutable state of a job (state store, table ``jobs``); changed only by
    :mod:`slurmctl.lifecycle`."""

    job_id: str
    name: str
    state: JobState = JobState.CREATED
    created_at: float = msgspec.field(default_factory=time.time)
    updated_at: float = msgspec.field(default_factory=time.time)
    total_items: int = 0
    tasks: int = 0
    executor: str = "local"
    max_attempts: int = 3  # retry.max_attempts of the job (the attempt budget of each task)
    runner_pid: int | None = None
    runner_host: str | None = None
    message: str | None = None
    paused: bool = False  # `slurmctl pause`: no task is claimed until `slurmctl resume`
    # The job's control history, oldest first, at most EVENTS_KEPT: {"at", "who", "what", "detail"}.
    events: list[dict[str, Any]] = msgspec.field(default_factory=list)

    def advance(self, new: JobState, **changes: Any) -> JobStatus:
        advance_job(self.state, new)
        return self.model_copy(update={"state": new, "updated_at": time.time(), **changes})
