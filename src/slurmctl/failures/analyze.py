"""``slurmctl analyze-errors JOB``: a job's failures grouped by signature.

What is read: the failed items of each task's *published* attempt (the attempt its ``.done`` marker
names: ``results/<task>/a<N>.errors.jsonl``; items of attempts that were not published are not
failures of the job), and the tasks that failed as a whole (task records in state ``failed`` with no
``.done``: their ``error`` and ``exit_code``, classified by ``classify.task_fact``).

A group is one (category, exception type, masked message, handler frame) — see
:mod:`slurmctl.failures.signature` — with its count, the tasks and items it affects, when it was
first and last seen, a few sample items (with host and Slurm job id), one sample traceback, the
hosts it happened on (the first ten) and the suggested action. Groups are ordered by the items they
affect, then by count.

Memory is bounded: error files are streamed in blocks of ``BLOCK`` bytes, a group keeps a fixed
number of samples, and the signature caches are capped; what grows is one entry per group and one
id per failed task.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import groupby
from operator import attrgetter, itemgetter, methodcaller
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from slurmctl.errors import (
    EXIT_OK,
    ConfigError,
    JobNotFoundError,
    ObjectNotFoundError,
    SlurmctlError,
    StorageError,
)
from slurmctl.failures.classify import CATEGORIES, Verdict, task_fact, verdict_of
from slurmctl.failures.signature import Signer, json_text, mask_message
from slurmctl.storage import keys

if TYPE_CHECKING:
    from slurmctl.storage.base import Backend, Record

BLOCK = 4 << 20  # bytes of an error file decoded at once
SAMPLES = 5  # sample items (or tasks) kept per group
HOSTS = 10  # distinct hosts counted per group
_INDEX_MAX = 100_000  # raw keys remembered (see _Items)

# The task-record fields a task-level failure needs (model.core.TaskStatus).
_TASK_FIELDS = (
    "state",
    "error",
    "exit_code",
    "owner",
    "attempt",
    "finished_at",
    "updated_at",
    "items_total",
    "slurm_job_id",
)


class Group:
    """One signature's failures (see the module docstring)."""

    __slots__ = (
        "category",
        "count",
        "first_seen",
        "frame",
        "hosts",
        "items",
        "kind",
        "last_seen",
        "last_task",
        "level",
        "message",
        "sample_traceback",
        "samples",
        "tasks",
        "type",
    )

    def __init__(self, level: str, category: str, kind: str | None, type_: str, message: str, frame: str):
        self.level = level  # "item" or "task"
        self.category = category
        self.kind = kind
        self.type = type_
        self.message = message
        self.frame = frame
        self.count = 0
        self.items = 0
        self.tasks = 0
        self.first_seen: float | None = None
        self.last_seen: float | None = None
        self.samples: list[dict[str, Any]] = []
        self.sample_traceback = ""
        self.hosts: dict[str, int] = {}
        self.last_task: str | None = None

    @property
    def id(self) -> str:
        """A short stable name of the signature (8 hex digits)."""
        text = "\x1f".join((self.level, self.category, self.kind or "", self.type, self.message, self.frame))
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    @property
    def action(self) -> str:
        return Verdict(self.category, self.kind).action

    def seen(self, at: float | None) -> None:
        if at is None:
            return
        if self.first_seen is None or at < self.first_seen:
            self.first_seen = at
        if self.last_seen is None or at > self.last_seen:
            self.last_seen = at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "level": self.level,
            "category": self.category,
            "kind": self.kind,
            "type": self.type,
            "message": self.message,
            "frame": self.frame,
            "count": self.count,
            "tasks": self.tasks,
            "items": self.items,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "hosts": dict(self.hosts),
            "samples": [dict(s) for s in self.samples],
            "sample_traceback": self.sample_traceback,
            "action": self.action,
        }


class Analysis:
    """What ``analyze`` found: the groups (ordered), totals, and records it could not read."""

    def __init__(
        self,
        job_id: str,
        groups: list[Group],
        failed_items: int,
        failed_tasks: int,
        unreadable: int,
        unreadable_keys: list[str],
    ) -> None:
        self.job_id = job_id
        self.groups = groups
        self.failed_items = failed_items
        self.failed_tasks = failed_tasks
        self.unreadable = unreadable
        self.unreadable_keys = unreadable_keys

    def to_dict(self, groups: list[Group] | None = None) -> dict[str, Any]:
        shown = self.groups if groups is None else groups
        return {
            "job_id": self.job_id,
            "failed_items": self.failed_items,
            "failed_tasks": self.failed_tasks,
            "signatures": len(self.groups),
            "unreadable_records": self.unreadable,
            "unreadable_files": list(self.unreadable_keys),
            "groups": [g.to_dict() for g in shown],
        }


# -- reading --------------------------------------------------------------------------------------


def _decoder() -> Any:
    """(a decoder of one line of an error file, its error class). The traceback is kept as its JSON
    text (``msgspec.Raw``): only a group's sample is ever decoded. Unknown fields are ignored."""
    import msgspec

    failure = msgspec.defstruct(
        "Failure",
        [
            ("item_id", int),
            ("category", str, "unknown"),
            ("type", str, ""),
            ("message", str, ""),
            ("traceback", msgspec.Raw, msgspec.Raw(b'""')),
            ("attempt", int, 0),
            ("host", str | None, None),
            ("slurm_job_id", str | None, None),
            ("at", float | None, None),
        ],
    )
    return msgspec.json.Decoder(failure), msgspec.DecodeError


@contextlib.contextmanager
def _opened(backend: Backend, key: str) -> Iterator[IO[bytes] | None]:
    """The object ``key`` opened for reading (a local file, or a download to a temporary file);
    None if it does not exist."""
    path = backend.objects.local_path(key)
    if path is not None:
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        with f:
            try:
                yield f
            except OSError as exc:  # reading it failed (EIO, a stale NFS handle)
                raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return
    with tempfile.TemporaryDirectory(prefix="slurmctl-errors-") as tmp:
        dest = Path(tmp) / "errors.jsonl"
        try:
            backend.objects.get_file(key, dest)
        except ObjectNotFoundError:
            yield None
            return
        with open(dest, "rb") as f:
            yield f


def _blocks(f: IO[bytes]) -> Iterator[bytes | memoryview]:
    """The file as blocks of whole lines (each ends with a newline but the last may not), read
    ``BLOCK`` bytes at a time."""
    rest = b""
    while True:
        data = f.read(BLOCK)
        if not data:
            if rest.strip():
                yield rest
            return
        if rest:
            data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no line ends in this block yet
            rest = data
            continue
        rest = data[cut:]
        yield memoryview(data)[:cut]


def _published(
    backend: Backend, job_id: str, result_keys: list[str] | None = None
) -> tuple[dict[str, str], set[str]]:
    """(task -> its published attempt's error-file key, for tasks that have one; every task with a
    ``.done``), from one listing of the job's results (``result_keys`` when the caller has it) and
    the markers of the tasks that have an error file."""
    from slurmctl.model.manifests import DoneMarker

    prefix = keys.result_prefix(job_id, "").rstrip("/") + "/"  # every task's: jobs/<job>/results/
    with_errors: dict[str, set[str]] = {}
    done: set[str] = set()
    for key in backend.objects.list(prefix) if result_keys is None else result_keys:
        task, _, name = key[len(prefix) :].partition("/")
        if name == ".done":
            done.add(task)
        elif name.endswith(".errors.jsonl"):
            with_errors.setdefault(task, set()).add(key)
    out: dict[str, str] = {}
    for task in sorted(with_errors.keys() & done):
        try:
            marker = DoneMarker.from_json(backend.objects.get(keys.done_marker(job_id, task)), where=task)
        except ObjectNotFoundError:
            done.discard(task)
            continue
        key = keys.result_errors(job_id, task, marker.attempt)
        if key in with_errors[task]:
            out[task] = key
    return out, done


def _retried(backend: Backend, job_id: str, done: set[str]) -> dict[int, int]:
    """Item -> index of the last item retry task that held it and published (slurmctl.retry): one
    that has not (waiting, running, failed) leaves the item its earlier outcome, as in results."""
    from slurmctl.retry.tasks import manifests

    out: dict[int, int] = {}
    for m in manifests(backend.objects, job_id):
        for tid, ids in m.items.items():
            if tid in done:
                out.update(dict.fromkeys(ids, int(tid[1:])))
    return out


def analyze(
    backend: Backend,
    job_id: str,
    task_records: list[Record] | None = None,
    result_keys: list[str] | None = None,
) -> Analysis:
    """Group every failure of the job by signature (see the module docstring). Reads only.
    ``task_records`` (the job's task records) and ``result_keys`` (the keys under its
    ``results/``): what the caller has read already (the dashboard), else read here. Raises
    JobNotFoundError, StorageError."""
    if backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id)) is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    decoder, decode_error = _decoder()
    groups: dict[tuple[str, ...], Group] = {}
    items = _Items(groups)
    errors, done = _published(backend, job_id, result_keys)
    failed_items = unreadable = 0
    unreadable_keys: list[str] = []
    later = _retried(backend, job_id, done)
    for task, key in errors.items():
        with _opened(backend, key) as f:
            if f is None:
                continue
            bad = 0
            for block in _blocks(f):
                try:
                    records = decoder.decode_lines(block)
                except decode_error:  # a damaged line: decode one by one, skip what is unreadable
                    records = []
                    for line in bytes(block).splitlines():
                        try:
                            records.append(decoder.decode(line))
                        except decode_error:
                            bad += line.strip() != b""
                if later:  # an item a later retry task held: that task's outcome is the item's
                    idx = int(task[1:])
                    records = [r for r in records if later.get(r.item_id, -1) <= idx]
                failed_items += len(records)
                items.add(task, records)
            if bad:
                unreadable += bad
                unreadable_keys.append(key)
    failed_tasks = _add_tasks(backend, job_id, groups, done, task_records)
    ordered = sorted(groups.values(), key=lambda g: (-g.items, -g.count, g.category, g.type, g.message))
    return Analysis(job_id, ordered, failed_items, failed_tasks, unreadable, unreadable_keys)


_CATEGORY, _TYPE, _MESSAGE, _TRACEBACK, _AT, _HOST = (
    attrgetter(f) for f in ("category", "type", "message", "traceback", "at", "host")
)
_SPLIT_LAST_LINE, _FIRST = methodcaller("rsplit", b"\\n", 2), itemgetter(0)  # signature.frame_key


class _Items:
    """Counts failed items into groups, a block of records at a time.

    The per-record work is done by C loops (``map``, ``zip``, ``set``, ``sorted``, ``groupby``):
    each record's raw key (category, type, masked message, ``frame_key`` of its traceback) is
    looked up in ``index`` (a bounded cache: raw key -> group number), the block's positions are
    sorted by group, and each group's run of positions is counted at once."""

    def __init__(self, groups: dict[tuple[str, ...], Group]) -> None:
        self.groups = groups
        self.signer = Signer()
        self.index: dict[tuple[str, str, str, str], int] = {}
        self.numbered: list[Group] = []
        self.numbers: dict[tuple[str, ...], int] = {}

    def _number(self, key: tuple[str, str, str, str]) -> int:
        category, type_, message, fkey = key
        gkey = (category, type_, message, self.signer.frame(fkey))
        number = self.numbers.get(gkey)
        if number is None:
            verdict = verdict_of(category)
            self.groups[gkey] = Group("item", verdict.category, verdict.kind, type_, message, gkey[3])
            number = self.numbers[gkey] = len(self.numbered)
            self.numbered.append(self.groups[gkey])
        return number

    def add(self, task: str, records: list[Any]) -> None:
        """Count ``records`` (failed items of ``task``, in file order) into the groups."""
        if not records:
            return
        tracebacks = list(map(bytes, map(_TRACEBACK, records)))  # JSON strings
        messages = self.signer.masks(list(map(_MESSAGE, records)))
        fkeys = map(_FIRST, map(_SPLIT_LAST_LINE, tracebacks))  # frame_key of each, in C loops
        keys_ = list(zip(map(_CATEGORY, records), map(_TYPE, records), messages, fkeys, strict=True))
        index = self.index
        try:  # after the first blocks every key is known: no set built
            numbers = list(map(index.__getitem__, keys_))
        except KeyError:
            new = set(keys_).difference(index)
            if len(index) + len(new) > _INDEX_MAX:
                index.clear()
                new = set(keys_)
            for key in new:
                index[key] = self._number(key)
            numbers = list(map(index.__getitem__, keys_))
        ats, hosts = list(map(_AT, records)), list(map(_HOST, records))
        for number, run in groupby(sorted(range(len(numbers)), key=numbers.__getitem__), numbers.__getitem__):
            positions = list(run)
            g = self.numbered[number]
            g.count += len(positions)
            g.items += len(positions)
            if g.last_task != task:
                g.last_task = task
                g.tasks += 1
            if len(g.samples) < SAMPLES:
                g.sample_traceback = g.sample_traceback or json_text(tracebacks[positions[0]]) or ""
                for i in positions[: SAMPLES - len(g.samples)]:
                    r = records[i]
                    g.samples.append(
                        {
                            "task": task,
                            "item": r.item_id,
                            "attempt": r.attempt,
                            "host": r.host,
                            "slurm_job_id": r.slurm_job_id,
                        }
                    )
            times = list(map(ats.__getitem__, positions))
            if None in times:
                times = [t for t in times if t is not None]
            if times:
                g.seen(min(times))
                g.seen(max(times))
            for host, n in Counter(map(hosts.__getitem__, positions)).items():
                if host is not None and (host in g.hosts or len(g.hosts) < HOSTS):
                    g.hosts[host] = g.hosts.get(host, 0) + n


def _add_tasks(
    backend: Backend,
    job_id: str,
    groups: dict[tuple[str, ...], Group],
    done: set[str],
    records: list[Record] | None = None,
) -> int:
    """Count the tasks that failed as a whole into ``groups``; return how many."""
    from slurmctl.model.core import Task

    n = 0
    if records is None:
        records = backend.state.scan(keys.TASKS_TABLE, keys.task_states_prefix(job_id))
    for rec in records:
        state, error, exit_code, owner, attempt, finished, updated, items, slurm_id = map(
            rec.value.get, _TASK_FIELDS
        )
        task = rec.key.rpartition("/")[2]
        if state != "failed" or task in done:
            continue
        n += 1
        label, verdict = task_fact(error, exit_code, rec.value.get("cause"), rec.value.get("slurm_state"))
        text = error or ""
        if owner:
            text = text.replace(owner, "<worker>")
        message = mask_message(text)
        gkey = ("task", verdict.label, label, message)  # no category is "task": never an item's key
        g = groups.get(gkey)
        if g is None:
            g = groups[gkey] = Group("task", verdict.category, verdict.kind, label, message, "")
            g.sample_traceback = error or ""
        if not items:
            with contextlib.suppress(SlurmctlError):  # a missing or unreadable manifest: 0 items known
                items = Task.from_json(
                    backend.objects.get(keys.task_manifest(job_id, task)), where=task
                ).batch.items
        g.count += 1
        g.tasks += 1
        g.items += items or 0
        g.seen(finished or updated)
        host = owner.split(":", 1)[0] if owner else None
        if len(g.samples) < SAMPLES:
            g.samples.append(
                {"task": task, "item": None, "attempt": attempt or 0, "host": host, "slurm_job_id": slurm_id}
            )
        if host and (host in g.hosts or len(g.hosts) < HOSTS):
            g.hosts[host] = g.hosts.get(host, 0) + 1
    return n


def top_signatures(backend: Backend, job_id: str, n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` groups affecting the most items (``Group.to_dict``), for ``status``."""
    return [g.to_dict() for g in analyze(backend, job_id).groups[:n]]


# -- the command ----------------------------------------------------------------------------------


def check_category(category: str | None) -> None:
    """Raise ConfigError (exit 2) naming the categories if ``category`` is not one."""
    if category is not None and category not in CATEGORIES:
        raise ConfigError(
            f"unknown failure category {category!r}; the categories are: {', '.join(CATEGORIES)}"
        )


def run(
    backend: Backend,
    job_id: str,
    *,
    as_json: bool = False,
    top: int | None = None,
    category: str | None = None,
    out: IO[str] | None = None,
) -> int:
    """``slurmctl analyze-errors``: print the job's failure groups (``--json``: one JSON document),
    the ``top`` first of them, of one ``category`` only. Returns EXIT_OK. Raises ConfigError (exit
    2) for an unknown category or a ``top`` below 1, JobNotFoundError (exit 5) for an unknown job,
    StorageError (exit 6)."""
    check_category(category)
    if top is not None and top < 1:
        raise ConfigError(f"--top must be at least 1 (found {top})")
    out = out or sys.stdout
    result = analyze(backend, job_id)
    shown = [g for g in result.groups if category is None or g.category == category]
    shown = shown[:top] if top is not None else shown
    if as_json:
        out.write(json.dumps(result.to_dict(shown), indent=2) + "\n")
    else:
        out.write(render(result, shown, category) + "\n")
    return EXIT_OK


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t is not None else "-"


def summary_line(g: dict[str, Any]) -> str:
    """One line for a group (a ``Group.to_dict``), as ``status`` shows its top signatures."""
    what = f"{g['type']}: {g['message']}" if g["message"] else g["type"]
    cat = g["category"] + (f"/{g['kind']}" if g["kind"] else "")
    return f"{g['count']:,}x {what} [{cat}] — {g['action']}"


def render(result: Analysis, shown: Iterable[Group], category: str | None = None) -> str:
    """The human view of ``analyze-errors``. Plain text."""
    shown = list(shown)
    head = (
        f"job {result.job_id}: {result.failed_items:,} failed item(s), {result.failed_tasks:,} failed "
        f"task(s); {len(result.groups)} signature(s)"
    )
    if len(shown) != len(result.groups):
        head += f", {len(shown)} shown" + (f" (category {category})" if category else "")
    lines = [head]
    if result.unreadable:
        lines.append(
            f"warning: {result.unreadable} unreadable failure record(s) skipped in "
            + ", ".join(result.unreadable_keys[:5])
        )
    for i, g in enumerate(shown, 1):
        cat = g.category + (f"/{g.kind}" if g.kind else "")
        lines.append("")
        lines.append(
            f"#{i} [{g.id}] {cat}: {g.count:,} {'item' if g.level == 'item' else 'task'} failure(s), "
            f"{g.items:,} item(s) in {g.tasks:,} task(s)"
        )
        lines.append(f"    {g.type}: {g.message}" if g.message else f"    {g.type}")
        if g.frame:
            lines.append(f"    at      {g.frame}")
        lines.append(f"    seen    {_when(g.first_seen)} .. {_when(g.last_seen)} UTC")
        if g.hosts:
            lines.append("    hosts   " + ", ".join(f"{h} ({n:,})" for h, n in g.hosts.items()))
        lines.append("    samples " + ", ".join(_sample(s) for s in g.samples))
        lines.append(f"    action  {g.action}")
        tb = g.sample_traceback.rstrip("\n").splitlines()
        if tb:
            lines.append("    sample traceback:" if g.level == "item" else "    sample error:")
            if len(tb) > 12:
                tb = ["...", *tb[-12:]]
            lines += [f"      {line}" for line in tb]
    if not shown:
        lines.append("no failures" if not result.groups else f"no failures of category {category}")
    return "\n".join(lines)


def _sample(s: dict[str, Any]) -> str:
    where = ", ".join(
        x for x in (s["host"], f"slurm {s['slurm_job_id']}" if s["slurm_job_id"] else None) if x
    )
    head = (
        f"item {s['item']} ({s['task']}"
        if s["item"] is not None
        else f"task {s['task']} (attempt {s['attempt']}"
    )
    return head + (f", {where})" if where else ")")


__all__ = [
    "Analysis",
    "Group",
    "analyze",
    "check_category",
    "render",
    "run",
    "summary_line",
    "top_signatures",
]
