"""``partition()``: stream input files into batch files, durably and resumably."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from slurmctl.errors import ConfigError, InputError, StateError, StorageError

from .batcher import Batcher
from .durable import (
    BATCH_LOG_NAME,
    REJECTS_NAME,
    STATE_NAME,
    BatchWriter,
    RejectsFile,
    write_json_atomic,
)
from .inputs import ByteStream, InputFile, describe_input
from .jsonl import C_SCANNER, BlockVerdicts, read_jsonl
from .model import FORMATS, BatchInfo, CsvOptions, PartitionSummary
from .records import Blank, Event, Reject, Run
from .verdicts import VerdictPool

STATE_VERSION = 1
_BATCH_FILE = re.compile(r"^\.?b\d{7,}\.jsonl(\.tmp)?$")

ProgressFn = Callable[[int, int], None]

# With workers=None, validate in worker processes only when there is enough uncompressed JSONL to repay
# starting them (about 0.15 s of CPU each, off the parser's path).
AUTO_WORKERS_MIN_BYTES = 64 * 2**20
AUTO_WORKERS_MIN_CPUS = 4
# Scan threads (C scanner only) for an uncompressed JSONL file of at least this size.
SCAN_THREADS_MIN_BYTES = 8 * 2**20


def partition(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    items_per_batch: int | None = 1000,
    bytes_per_batch: int | None = None,
    input_format: str | None = None,
    max_record_bytes: int = 16 * 2**20,
    progress: ProgressFn | None = None,
    csv_options: CsvOptions | None = None,
    workers: int | None = None,
    reference: bool = False,
) -> PartitionSummary:
    """Split ``inputs`` (in the given order) into batch files ``out_dir/b0000000.jsonl`` ...

    Each batch line is one accepted record as JSON: a JSONL record's own bytes (line terminator
    normalised to "\\n"), a CSV row or Parquet row as an object. Malformed records go to
    ``out_dir/rejects.jsonl``. A batch closes at ``items_per_batch`` records or before the record
    that would take it past ``bytes_per_batch`` bytes, whichever comes first; batches may span files.

    ``workers``: processes that validate uncompressed JSONL blocks while this one splits them and
    writes the batches (0: validate here). None picks the CPUs available minus one (at most 4) for
    64 MiB or more of uncompressed JSONL on a machine with 4 CPUs or more, else 0 (on 2 CPUs shared
    with other work the extra process cost more than it saved; see docs/partitioning.md). The output
    is byte-identical whatever the value, and an interrupted partition may resume with another one.

    ``reference``: a batch made only of an uncompressed JSONL input's own bytes (no reject, blank line
    or CRLF inside it, within one file: almost every batch of clean input) is not copied: its BatchInfo
    names the input file and offset (``ref_path``, ``ref_offset``) and its sha256 covers those bytes.
    Whoever reads the batches must be able to read the input, unchanged, for as long as the batches
    are used. Any other batch is a file as without ``reference``; the batches' bytes are the same.

    Returns: the summary, identical for a clean run and a resumed one.
    Raises: InputError (missing/unreadable/empty input, unknown format, corrupt compression),
        ConfigError (bad limits), StateError (``out_dir`` holds a different partition or foreign
        batch files), StorageError (cannot write ``out_dir``).
    Idempotent: yes. An interrupted run (even SIGKILL) resumes from ``_partition.json`` and yields
        byte-identical batches; a completed partition is not redone, its summary is returned.
    """
    _check_options(items_per_batch, bytes_per_batch, input_format, max_record_bytes)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise ConfigError(f"workers must be a non-negative integer (found {workers!r})")
    csv_options = csv_options or CsvOptions()
    if not inputs:
        raise InputError("no input files given", hint="point the job's `input:` at a file or glob")
    files = [describe_input(Path(p), input_format, csv_options.delimiter) for p in inputs]
    fingerprint = {
        "version": STATE_VERSION,
        "inputs": [[str(f.path), f.size_bytes, f.mtime_ns, f.format] for f in files],
        "items_per_batch": items_per_batch,
        "bytes_per_batch": bytes_per_batch,
        "max_record_bytes": max_record_bytes,
        "csv": csv_options.fingerprint() if any(f.format == "csv" for f in files) else None,
    }
    if reference:  # (absent otherwise: partitions made before the option resume as they were)
        fingerprint["reference"] = True
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the batch directory {out_dir}: {exc}") from exc
    state = _load_state(out_dir, fingerprint)
    if state is None:
        state = _fresh_state(out_dir, fingerprint)
    elif state["complete"]:
        return _summary(out_dir, files, state, _read_batch_log(out_dir, state))
    batches = _prepare_resume(out_dir, state)
    if workers is None:
        plain = sum(f.size_bytes for f in files if f.format == "jsonl" and f.compression is None)
        cpus = _cpus()
        big = plain >= AUTO_WORKERS_MIN_BYTES and cpus >= AUTO_WORKERS_MIN_CPUS
        # With the C scanner, scan threads do the validation instead (see _Run.scan_threads).
        workers = min(4, cpus - 1) if big and not C_SCANNER else 0
    return _Run(
        out_dir,
        files,
        state,
        batches,
        items_per_batch,
        bytes_per_batch,
        max_record_bytes,
        csv_options,
        progress,
        workers,
        reference,
    ).execute()


def _cpus() -> int:
    """Returns the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _check_options(ipb: int | None, bpb: int | None, fmt: str | None, max_record: int) -> None:
    if ipb is None and bpb is None:
        raise ConfigError("set items_per_batch, bytes_per_batch, or both")
    for name, value in (("items_per_batch", ipb), ("bytes_per_batch", bpb), ("max_record_bytes", max_record)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{name} must be a positive integer (found {value!r})")
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown input format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


def _load_state(out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    path = out_dir / STATE_NAME
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(
            f"cannot read the partition state {path}: {exc}",
            hint="the directory is damaged; delete it and partition again",
        ) from exc
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        raise StateError(
            f"{out_dir} holds a partition of other inputs or options (or the inputs changed since)",
            hint="use an empty directory, or delete this one to partition again",
        )
    return state


def _fresh_state(out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    foreign = sorted(
        p.name
        for p in out_dir.iterdir()
        if _BATCH_FILE.match(p.name) or p.name in (REJECTS_NAME, BATCH_LOG_NAME)
    )
    if foreign:
        raise StateError(
            f"{out_dir} already holds batch files ({', '.join(foreign[:3])}...) but no {STATE_NAME}",
            hint="use an empty directory for the batches",
        )
    state: dict[str, Any] = {
        "fingerprint": fingerprint,
        "complete": False,
        "batches": 0,
        "batch_log_bytes": 0,
        "cursor": [0, 0, 1, 0, 0, 0, 0],
        "input_starts": [[0, 0, 0]],
    }
    write_json_atomic(out_dir / STATE_NAME, state)
    return state


def _read_batch_log(out_dir: Path, state: dict[str, Any]) -> list[BatchInfo]:
    path = out_dir / BATCH_LOG_NAME
    try:
        with open(path, "rb") as fh:
            data = fh.read(state["batch_log_bytes"])
        infos = [BatchInfo(**json.loads(line)) for line in data.splitlines()]
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(
            f"cannot read the batch log {path}: {exc}", hint="delete the directory and redo"
        ) from exc
    if len(infos) != state["batches"]:
        raise StateError(
            f"{path} lists {len(infos)} batches, the state {state['batches']}",
            hint="delete the directory and partition again",
        )
    return infos


def _prepare_resume(out_dir: Path, state: dict[str, Any]) -> list[BatchInfo]:
    """Drop everything written after the last commit; returns the committed batches."""
    batches = _read_batch_log(out_dir, state) if state["batches"] else []
    try:
        with open(out_dir / BATCH_LOG_NAME, "ab") as fh:
            fh.truncate(state["batch_log_bytes"])
        rejects = out_dir / REJECTS_NAME
        if rejects.exists():
            with open(rejects, "r+b") as fh:
                fh.truncate(state["cursor"][6])
        for p in out_dir.iterdir():
            m = _BATCH_FILE.match(p.name)
            if m and (p.name.startswith(".") or int(p.name[1:].split(".")[0]) >= state["batches"]):
                p.unlink()
    except OSError as exc:
        raise StorageError(f"cannot resume the partition in {out_dir}: {exc}") from exc
    return batches


def _summary(
    out_dir: Path, files: list[InputFile], state: dict[str, Any], batches: list[BatchInfo]
) -> PartitionSummary:
    starts = state["input_starts"]
    totals = state["cursor"][3:6]
    inputs = []
    for i, f in enumerate(files):
        lo = starts[i]
        hi = starts[i + 1] if i + 1 < len(starts) else totals
        inputs.append(
            dict(f.describe(), records=hi[0] - lo[0], rejected=hi[1] - lo[1], blank_lines=hi[2] - lo[2])
        )
    rejected = totals[1]
    return PartitionSummary(
        batches=batches,
        total_items=totals[0],
        rejected=rejected,
        rejects_path=(out_dir / REJECTS_NAME) if rejected else None,
        inputs=inputs,
    )


class _Run:
    """One execution of a partition, from the state's cursor to the end."""

    def __init__(
        self,
        out_dir: Path,
        files: list[InputFile],
        state: dict[str, Any],
        batches: list[BatchInfo],
        ipb: int | None,
        bpb: int | None,
        max_record: int,
        csv_options: CsvOptions,
        progress: ProgressFn | None,
        workers: int = 0,
        reference: bool = False,
    ) -> None:
        self.out_dir = out_dir
        self.files = files
        self.state = state
        self.max_record = max_record
        self.csv_options = csv_options
        self.progress = progress
        src, _off, _line, items, rejected, blank, rejects_bytes = state["cursor"]
        self.input_starts: list[list[int]] = [list(s) for s in state["input_starts"][: src + 1]]
        self.rejected = rejected
        self.blank = blank
        self.rejects = RejectsFile(out_dir / REJECTS_NAME, rejects_bytes)
        ref_inputs = [
            (os.path.abspath(f.path), f.size_bytes)
            if reference and f.format == "jsonl" and f.compression is None
            else None
            for f in files
        ]
        self.writer = BatchWriter(out_dir, state["batch_log_bytes"], batches, self.rejects, ref_inputs)
        self.batcher = Batcher(
            self.writer, [str(f.path) for f in files], ipb, bpb, len(batches), items, self._maybe_commit
        )
        self.batcher.cursor = tuple(state["cursor"])
        self.total_bytes = sum(f.size_bytes for f in files)
        self.workers = workers
        # The C scanner releases the GIL: one thread scans the next blocks while this one hashes and
        # writes (more threads only where more CPUs are free; the main thread keeps one busy).
        self.scan_threads = max(1, min(3, _cpus() - 1))
        self._pool: VerdictPool | None = None

    def execute(self) -> PartitionSummary:
        try:
            self._stream()
            self.batcher.finish()
            if self.batcher.next_item == 0:
                self.writer.abandon()
                if self.rejected:
                    raise InputError(
                        f"all {self.rejected} input records were rejected; nothing to partition",
                        hint=f"see {self.rejects.path} for each record's line and reason",
                    )
                raise InputError(
                    "the input holds no records: " + ", ".join(str(f.path) for f in self.files),
                    hint="check the input path/glob; blank lines and header-only CSV files hold no records",
                )
            end = len(self.files)
            final = (end, 0, 1, self.batcher.next_item, self.rejected, self.blank, self.rejects.size)
            state = self._state(final, complete=True)
            self.writer.finish(state)
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            self.writer.abandon()
            self.rejects.close()
        if self.progress:
            self.progress(self.total_bytes, self.total_bytes)
        return _summary(self.out_dir, self.files, state, self.writer.batches)

    def _state(self, cursor: tuple[int, ...], complete: bool = False) -> dict[str, Any]:
        src = cursor[0]
        return {
            "fingerprint": self.state["fingerprint"],
            "complete": complete,
            "cursor": list(cursor),
            "input_starts": self.input_starts[: src + 1] if not complete else self.input_starts,
        }

    def _stream(self) -> None:
        src0, off0, line0 = self.state["cursor"][:3]
        done_bytes = sum(f.size_bytes for f in self.files[:src0])
        for src in range(src0, len(self.files)):
            if src > src0:
                self.input_starts.append([self.batcher.next_item, self.rejected, self.blank])
            off, line = (off0, line0) if src == src0 else (0, 1)
            inp = self.files[src]
            for events, raw_pos in self._events(src, inp, off, line):
                self._handle(events)
                if self.progress:
                    self.progress(done_bytes + raw_pos, self.total_bytes)
            done_bytes += inp.size_bytes

    def _events(self, src: int, inp: InputFile, off: int, line: int) -> Iterator[tuple[list[Event], int]]:
        if inp.format == "parquet":
            from .parquet import read_parquet

            yield from read_parquet(inp, src, off)
            return
        stream = ByteStream(inp)
        try:
            if inp.format == "jsonl":
                verdicts = self._verdicts(inp) if inp.compression is None and self.workers else None
                threads = self.scan_threads if inp.size_bytes >= SCAN_THREADS_MIN_BYTES else 0
                for events in read_jsonl(
                    stream, src, off, line, self.max_record, verdicts=verdicts, threads=threads
                ):
                    yield events, stream.raw_pos
            else:
                from .csvfmt import read_csv

                for events in read_csv(stream, src, off, line, self.max_record, self.csv_options):
                    yield events, stream.raw_pos
        finally:
            stream.close()

    def _verdicts(self, inp: InputFile) -> BlockVerdicts:
        """Returns a function that asks a worker whether a byte range of ``inp`` is clean (see jsonl).

        Raises: StorageError when the worker processes cannot be started."""
        if self._pool is None:
            try:
                self._pool = VerdictPool(self.workers, self.max_record)
            except OSError as exc:
                raise StorageError(
                    f"cannot start the partition's worker processes: {exc}", hint="use workers=0"
                ) from exc
        ask, path = self._pool.ask, inp.path
        return lambda off, length: ask(path, off, length)

    def _handle(self, events: list[Event]) -> None:
        for ev in events:
            if type(ev) is Run:
                self.batcher.add(ev, self.rejected, self.blank, self.rejects.size)
            elif type(ev) is Reject:
                self.rejects.append(str(self.files[ev.source].path), ev.line, ev.reason, ev.excerpt)
                self.rejected += 1
            elif type(ev) is Blank:
                self.blank += ev.count

    def _maybe_commit(self) -> None:
        """Called by the batcher right after a batch closed: the only moment a checkpoint may happen
        (only *when* checkpoints happen depends on time, never what is written)."""
        cursor = self.batcher.cursor
        assert cursor is not None
        self.writer.checkpoint(lambda: self._state(cursor))
