"""Run the merge tree level by level: the nodes of a level in N processes on this machine, or as
one Slurm job array (``where: slurm``, slurmctl.aggregate.slurm).

Order of durable steps: discovery (nothing written) → the plan (``aggregate/plan.json``) → level 0
… the root (each node: output, manifest, ``.done``) → the errors file of the still-failed items →
the aggregation manifest (in the store and beside the output) → the success marker
``output/.done``. A re-run does the same steps: a node whose ``.done``, manifest and output agree
(and, above level 0, whose inputs are the current outputs of the level below) is skipped, any
other node is redone; so a merge killed anywhere redoes only the nodes that were in flight.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from slurmctl.aggregate import formats
from slurmctl.aggregate import plan as plans
from slurmctl.aggregate.discover import discover
from slurmctl.aggregate.node import NodeManifest, NodeSpec, done_key, valid
from slurmctl.aggregate.node import run as run_node
from slurmctl.errors import ConfigError, ResultsError, SlurmctlError, StateError
from slurmctl.fsutil import atomic_writer
from slurmctl.model.manifests import AggregationManifest
from slurmctl.storage import keys
from slurmctl.storage.base import Backend

if TYPE_CHECKING:
    from slurmctl.aggregate.slurm import SlurmRunner
    from slurmctl.slurm.client import SlurmClient

DEFAULT_FAN_IN = 256  # measured: docs/performance.md, "Aggregation"


@dataclass
class Settings:
    """The job file's ``aggregate:`` block as a merge uses it (defaults filled in)."""

    fan_in: int = DEFAULT_FAN_IN
    processes: int = 0  # 0: the machine's cores
    reduce: dict[str, Any] | None = None
    python_path: list[str] | None = None
    where: str = "local"  # slurm: one job array per level (slurmctl.aggregate.slurm)
    config: dict[str, Any] | None = None  # the job file (slurm: resources, executor.cluster, polls)

    @classmethod
    def of_job(cls, config: dict[str, Any]) -> Settings:
        a = config.get("aggregate") or {}
        return cls(
            fan_in=a.get("fan_in") or DEFAULT_FAN_IN,
            processes=a.get("processes") or 0,
            reduce=a.get("reduce"),
            python_path=(config.get("handler") or {}).get("python_path") or [],
            where=a.get("where") or "local",
            config=config,
        )


def output_format(out_path: Path, fmt: str | None) -> str:
    fmt = fmt or {".parquet": "parquet", ".sqlite": "sqlite", ".db": "sqlite", ".csv": "csv"}.get(
        out_path.suffix, "jsonl"
    )
    if fmt not in formats.FORMATS:
        raise ResultsError(f"unknown output format {fmt!r}; expected one of {', '.join(formats.FORMATS)}")
    return fmt


def _check_writable(out_path: Path) -> None:
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_path.parent, prefix=".slurmctl-probe-"):
            pass
    except OSError as exc:
        raise ResultsError(
            f"cannot write the output to {out_path}: {exc.strerror}",
            hint="choose a writable -o path; nothing was lost, the task results stay in the store",
        ) from exc


def _specs(plan: plans.Plan, level: int, settings: Settings, out_path: Path) -> list[NodeSpec]:
    retried = sorted({i for s in plan.sources if s.item_ids for i in s.item_ids})
    specs = []
    for index in range(plan.levels[level]):
        inputs = plan.inputs(level, index)
        sources = [plan.sources[i] for i in inputs] if level == 0 else []
        mine: list[int] = []
        if sources and retried:
            for s in sources:
                if s.item_ids is not None:
                    mine.extend(s.item_ids)  # a retry task holds only retried items
                else:
                    mine.extend(
                        retried[
                            bisect_left(retried, s.first_item) : bisect_right(
                                retried, s.first_item + s.items - 1
                            )
                        ]
                    )
        specs.append(
            NodeSpec(
                job_id=plan.job_id,
                plan=plan.fingerprint,
                fmt=plan.format,
                level=level,
                index=index,
                sources=sources,
                children=inputs if level else range(0),
                retried=sorted(set(mine)),
                reduce=plan.reduce,
                reduce_path=settings.python_path or [],
                output_path=str(out_path) if level == plan.root_level else None,
            )
        )
    return specs


def _in_worker(backend_spec: dict[str, Any], spec: NodeSpec) -> NodeManifest | tuple[str, int, str | None]:
    """A pool worker's node: errors come back as (message, exit code, hint) (exceptions with
    their own constructors do not survive pickling)."""
    from slurmctl.storage.open import open_backend

    try:
        with tempfile.TemporaryDirectory(prefix="slurmctl-agg-") as tmp:
            return run_node(open_backend(backend_spec), spec, Path(tmp))
    except SlurmctlError as exc:
        return (exc.message, exc.exit_code, exc.hint)


def _raise(err: tuple[str, int, str | None]) -> None:
    exc = SlurmctlError(err[0], hint=err[2])
    exc.exit_code = err[1]
    raise exc


class _Runner:
    """Runs a level's nodes: in this process, or in a pool of ``processes`` started once, when a
    level first has more than one node to merge."""

    def __init__(self, backend: Backend, processes: int) -> None:
        self.backend = backend
        self.processes = processes
        self.pool: cf.ProcessPoolExecutor | None = None

    def run(self, todo: list[NodeSpec]) -> list[NodeManifest]:
        if self.processes <= 1 or len(todo) <= 1:
            with tempfile.TemporaryDirectory(prefix="slurmctl-agg-") as tmp:
                return [run_node(self.backend, spec, Path(tmp)) for spec in todo]
        if self.pool is None:
            ctx = multiprocessing.get_context("spawn")
            self.pool = cf.ProcessPoolExecutor(max_workers=self.processes, mp_context=ctx)
        futures = [self.pool.submit(_in_worker, self.backend.spec, spec) for spec in todo]
        out: list[NodeManifest] = []
        for f in cf.as_completed(futures):
            try:
                r = f.result()
            except cf.process.BrokenProcessPool as exc:
                raise SlurmctlError(
                    "a merge process died (killed, or out of memory?)",
                    hint="run `slurmctl results` again: the nodes already done are kept; "
                    "fewer processes (-j) use less memory",
                ) from exc
            if isinstance(r, tuple):
                for other in futures:
                    other.cancel()
                _raise(r)
            out.append(r)
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def aggregate(
    backend: Backend,
    job_id: str,
    out_path: Path,
    fmt: str | None = None,
    *,
    settings: Settings | None = None,
    redo_level: int | None = None,
    on_level: Callable[[int, int, int], None] | None = None,
    client: SlurmClient | None = None,
) -> AggregationManifest:
    """Verify and merge the job's results into ``out_path``. ``on_level(level, run, skipped)``
    is called after each level; ``client``: the Slurm client of ``where: slurm``. Idempotent: a
    re-run rewrites nothing that is valid."""
    from slurmctl.coordinator import load_job

    out_path = Path(out_path).expanduser().absolute()
    fmt = output_format(out_path, fmt)
    _check_writable(out_path)
    if settings is None:
        settings = Settings.of_job(load_job(backend, job_id).config)
    found = discover(backend, job_id)
    reduce = settings.reduce and {
        "function": settings.reduce["function"],
        "key": list(settings.reduce["key"]),
    }
    plan = plans.store(
        backend, plans.make(job_id, fmt, settings.fan_in, reduce, found.sources, found.unpublished)
    )
    if redo_level is not None:
        forget_levels(backend, plan, redo_level)
    runner: _Runner | SlurmRunner
    if settings.where == "slurm":
        from slurmctl.aggregate.slurm import SlurmRunner

        runner = SlurmRunner(backend, settings.config or {}, plan.fingerprint, out_path, client)
    else:
        runner = _Runner(backend, settings.processes or os.cpu_count() or 1)
    try:
        root, ran = _levels(backend, plan, settings, out_path, runner, on_level)
    finally:
        runner.close()
    return _finish(backend, plan, root, out_path, ran)


def _levels(
    backend: Backend,
    plan: plans.Plan,
    settings: Settings,
    out_path: Path,
    runner: _Runner | SlurmRunner,
    on_level: Callable[[int, int, int], None] | None,
) -> tuple[NodeManifest, int]:
    below: dict[int, NodeManifest] = {}
    ran = 0
    for level in range(len(plan.levels)):
        specs = _specs(plan, level, settings, out_path)
        current: dict[int, NodeManifest] = {}
        todo = []
        for spec in specs:
            m = valid(backend, spec)
            if (
                m is not None
                and level
                and m.inputs
                != [[f"L{level - 1:02d}/n{i:06d}", below[i].sha256, below[i].rows] for i in spec.children]
            ):
                m = None  # built from other outputs of the level below: stale
            if m is None:
                todo.append(spec)
            else:
                current[spec.index] = m
        for m in runner.run(todo):
            current[m.index] = m
        ran += len(todo)
        if on_level is not None:
            on_level(level, len(todo), len(specs) - len(todo))
        below = current
    return below[0], ran


def _finish(
    backend: Backend, plan: plans.Plan, root: NodeManifest, out_path: Path, ran: int
) -> AggregationManifest:
    """The errors file, the aggregation manifest (store and beside the output), the success marker."""
    objects = backend.objects
    final: dict[int, dict[str, Any]] = {}  # each still-failed item's latest failure
    for s in plan.sources:
        if s.item_ids is not None:
            for i in s.item_ids:
                final.pop(i, None)
        if s.errors_key:
            for line in objects.get_verified(s.errors_key, s.errors_sha256 or "").splitlines():
                err = json.loads(line)
                err["task_id"] = s.task_id
                final[err["item_id"]] = err
    errors_path = out_path.with_name(out_path.name + ".errors.jsonl")
    if final:
        with atomic_writer(errors_path) as f:
            for _, err in sorted(final.items()):
                f.write((json.dumps(err) + "\n").encode())
    else:
        errors_path.unlink(missing_ok=True)
    items = sum(s.items for s in plan.sources if s.item_ids is None)
    manifest = AggregationManifest(
        job_id=plan.job_id,
        created_at=time.time(),
        output_path=str(out_path),
        output_format=plan.format,
        output_sha256=root.sha256,
        output_bytes=root.bytes,
        rows=root.rows,
        items_ok=items - len(final),
        items_failed=len(final),
        tasks=len(plan.sources),
        unpublished=plan.unpublished,
        sources=[{"task_id": s.task_id, "attempt": s.attempt, "sha256": s.sha256} for s in plan.sources],
        fan_in=plan.fan_in,
        levels=plan.levels,
        nodes_run=ran,
        columns=root.columns,
    )
    data = manifest.to_json()
    objects.put(keys.output_manifest(plan.job_id), data)
    with atomic_writer(out_path.with_name(out_path.name + ".manifest.json")) as f:
        f.write(data)
    from slurmctl.fsutil import sha256_bytes

    objects.put(
        keys.output_done(plan.job_id),
        msgspec.json.encode(
            {"manifest_key": keys.output_manifest(plan.job_id), "manifest_sha256": sha256_bytes(data)}
        ),
    )
    return manifest


def forget_levels(backend: Backend, plan: plans.Plan, level: int) -> int:
    """Remove the ``.done`` of every node of ``level`` and above (``--redo-level``): the next run
    redoes them. Returns how many markers were removed."""
    if not 0 <= level <= plan.root_level:
        raise ConfigError(
            f"--redo-level {level}: the plan of job {plan.job_id} has levels 0..{plan.root_level}",
            hint=f"`slurmctl results {plan.job_id} --status` shows them",
        )
    n = 0
    for lv in range(level, len(plan.levels)):
        for i in range(plan.levels[lv]):
            backend.objects.delete(done_key(plan.job_id, lv, i))
            n += 1
    backend.objects.delete(keys.output_done(plan.job_id))
    return n


@dataclass
class LevelStatus:
    level: int
    nodes: int
    done: int


def status(backend: Backend, job_id: str) -> tuple[plans.Plan, list[LevelStatus], bool]:
    """The stored plan, the ``.done`` markers per level (one listing; not re-verified) and whether
    the success marker is there. Raises StateError if no merge has started."""
    plan = plans.load(backend, job_id)
    if plan is None:
        raise StateError(
            f"job {job_id} has no aggregation plan: no merge has started",
            hint=f"`slurmctl results {job_id}` plans and runs it",
        )
    done = [0] * len(plan.levels)
    prefix = keys.aggregate_prefix(job_id)
    for key in backend.objects.list(prefix):
        rest = key[len(prefix) :]
        if rest.endswith(".done") and rest.startswith("L"):
            lv = int(rest[1:3])
            if lv < len(done):
                done[lv] += 1
    levels = [LevelStatus(i, n, done[i]) for i, n in enumerate(plan.levels)]
    return plan, levels, backend.objects.exists(keys.output_done(job_id))
