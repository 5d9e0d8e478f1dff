"""``slurmctl``: a thin CLI, the one definition of every command's arguments. Commands parse flags,
call the library, and render; :func:`main` turns errors into messages and exit codes with
:mod:`slurmctl.errors`.

Commands import what they need inside their bodies: starting the CLI costs typer and rich only, so
``status`` (run in loops by people and scripts) pays for nothing it does not use."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from slurmctl.alerts.command import alerts_app
from slurmctl.cli.audit import audit as audit_command
from slurmctl.cli.common import format_progress, open_backend_of, progress_json, use_color
from slurmctl.cli.cp import cp_app
from slurmctl.cli.db import db_app
from slurmctl.cli.project import project_app
from slurmctl.cli.token import token_app
from slurmctl.errors import EXIT_ITEMS_FAILED, ConfigError, SlurmctlError, exit_code, failure_message
from slurmctl.failures.command import analyze_errors
from slurmctl.retry.command import retry

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="slurmctl",
    help="Map a Python handler over millions of records on Slurm (or this machine), with checkpoints "
    "and verified results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@functools.cache
def out() -> Console:
    """The rich console of stdout (made on first use: rich.console is a third of the CLI's imports)."""
    from rich.console import Console

    return Console(soft_wrap=True)


@functools.cache
def err() -> Console:
    """The rich console of stderr; never wraps, so file paths in messages stay greppable."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


RootOpt = Annotated[
    str | None,
    typer.Option("--root", envvar="SLURMCTL_ROOT", help="local backend root (default ~/.slurmctl)"),
]


BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", help='backend block as JSON, e.g. \'{"kind":"aws","bucket":"b"}\' (default: local)'
    ),
]


@app.command()
def validate(job_file: Path) -> None:
    """Check a job file; print "ok" or every problem with file:line: field."""
    from slurmctl.config import load_config

    cfg = load_config(job_file)
    kind, fmt = cfg.executor.kind, cfg.output.format
    out().print(f"ok: {job_file} (job {cfg.name!r}, executor {kind}, output {fmt})")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the job file."""
    from slurmctl.config import config_json_schema

    print(config_json_schema())


@app.command()
def submit(
    job_file: Path,
    wait: Annotated[
        bool, typer.Option("--wait", help="follow the job with a progress bar until it ends")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="partition, then print what would run")] = False,
    check_handler: Annotated[
        bool, typer.Option(help="import the handler before submitting (off if it only imports on nodes)")
    ] = True,
    resume: Annotated[
        str | None, typer.Option("--resume", help="carry on an interrupted submission of this job id")
    ] = None,
    root: RootOpt = None,
) -> None:
    """Partition the input, create the tasks and hand them to the executor; prints the job id."""
    from slurmctl.config import load_config
    from slurmctl.coordinator import prepare
    from slurmctl.executors import executor_for

    cfg = load_config(job_file)
    if check_handler:
        # Import the handler here, before any work is created: a typo fails in a second, not on a node.
        from slurmctl.worker.handler import load_handler

        load_handler(cfg.handler.function, cfg.handler.python_path, cfg.handler.mode)
    from slurmctl.coordinator import new_job_id

    job_id = resume or new_job_id(cfg.name)
    # Said first, so an interrupted submission can be carried on with --resume.
    err().print(f"job {job_id}: partitioning {cfg.input.path}", highlight=False)
    with _progress_bar("partitioning") as bar:
        backend, job = prepare(cfg, root_override=root, progress=bar, job_id=job_id)
    executor = executor_for(backend, job)
    task_ids = job.task_ids()
    if job.rejected:
        err().print(f"[yellow]{job.rejected} malformed record(s) rejected[/] (within input.max_rejects)")
    if dry_run:
        out().print(executor.dry_run(task_ids), markup=False, highlight=False)
        err().print(f"dry run: job {job.job_id} partitioned ({job.tasks} tasks), nothing submitted")
        print(job.job_id)
        return
    detail = executor.submit(task_ids)
    err().print(f"submitted {job.tasks} task(s), {job.total_items} item(s): {detail}")
    print(job.job_id)
    if wait:
        code = _follow(backend, job.job_id)
        raise typer.Exit(code)


class _progress_bar:
    """A rich progress bar on a terminal, nothing otherwise; callable as (done, total)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _progress_bar | None:
        if not err().is_terminal:
            return None
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        self.progress = Progress(
            f"[bold]{self.label}", BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err()
        )
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _follow(backend: Any, job_id: str) -> int:
    """Follow the job until it ends (see slurmctl.watch); exit code 0 iff every item succeeded."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from slurmctl.coordinator import load_job
    from slurmctl.executors import executor_for
    from slurmctl.watch import watch

    executor = executor_for(backend, load_job(backend, job_id))
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeRemainingColumn(),
        console=err(),
        disable=not err().is_terminal,
    ) as bar:
        task = bar.add_task(job_id, total=None, extra="")

        def show(p: Any) -> None:
            bar.update(
                task, completed=p.items_done, total=p.items_total, extra=f"{p.state} failed={p.items_failed}"
            )

        p = watch(executor, show, min_s=0.2 if executor.kind == "local" else None)
    err().print(f"job {job_id}: {p.state} — {p.items_done}/{p.items_total} items, {p.items_failed} failed")
    if p.state != "succeeded":
        for f in p.failed_tasks[:5]:
            err().print(f"  failed {f['task_id']}: {f['error']}", highlight=False, markup=False)
        return 1
    return EXIT_ITEMS_FAILED if p.items_failed else 0


@app.command()
def resubmit(
    job_id: str,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="also run tasks that used up their attempts, with a fresh budget (fix the cause first)",
        ),
    ] = False,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """Submit again the tasks of a job that nothing will run any more (failed with attempts left,
    interrupted, or never submitted after a failed sbatch). Item retry tasks wait for their backoff;
    a paused job gets nothing (exit 5: `slurmctl resume JOB` first)."""
    from slurmctl.coordinator import load_job
    from slurmctl.executors import executor_for

    backend = open_backend_of(root, backend_spec)
    executor = executor_for(backend, load_job(backend, job_id))
    from slurmctl.watch import resubmit_once

    _, message = resubmit_once(executor, failed=failed)
    out().print(f"job {job_id}: {message}".replace("JOB", job_id), highlight=False)


@app.command()
def status(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="refresh until the job ends")] = False,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """Progress of a job: tasks per state, items done/failed, throughput, ETA."""
    from slurmctl.status import progress

    backend = open_backend_of(root, backend_spec)
    if watch and not as_json:
        raise typer.Exit(_follow(backend, job_id))
    p = progress(backend, job_id)
    if as_json:
        print(progress_json(p))
        return
    print(format_progress(p, use_color()))
    if p.items_failed or p.task_states.get("failed"):
        from slurmctl.model.states import JobState

        if not JobState(p.state).is_terminal:
            # The analysis reads every error file and task record: not on every call of a running job.
            print(f"failures so far are grouped by `slurmctl analyze-errors {job_id}`")
            return
        from slurmctl.failures.analyze import summary_line, top_signatures

        top = top_signatures(backend, job_id, 3)
        if top:
            print(f"top failure signatures (`slurmctl analyze-errors {job_id}` for all):")
            for g in top:
                print("  " + summary_line(g))


app.command("analyze-errors")(analyze_errors)
app.command("retry")(retry)


@app.callback()
def _options(
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="debug|info|warning|error: this command's log and, through $SLURMCTL_LOG_LEVEL, the "
            "runner and workers it starts (default: $SLURMCTL_LOG_LEVEL, then the job file's logging.level)",
        ),
    ] = None,
    log_file: Annotated[
        str | None,  # not Path: typer converts a Path through pydantic, a cost for every command
        typer.Option(
            "--log-file", help="also append this command's log to FILE as JSON lines ($SLURMCTL_LOG_FILE)"
        ),
    ] = None,
) -> None:
    """Map a Python handler over millions of records on Slurm (or this machine)."""
    import logging
    import os

    from slurmctl.obs.logs import ENV_LEVEL, configure, resolve_level

    level = resolve_level(log_level)  # a bad name: ConfigError, exit 2
    if log_level:
        os.environ[ENV_LEVEL] = log_level
    elif not os.environ.get(ENV_LEVEL):
        level = logging.WARNING  # a command's own stderr: warnings and errors unless asked for more
    configure(level, file=log_file)


@app.command()
def logs(
    job_id: str,
    task_id: Annotated[str | None, typer.Argument(help="one task (t0000003); default: every task")] = None,
    follow_: Annotated[
        bool,
        typer.Option("--follow", "-f", help="keep printing new lines of running tasks until the job ends"),
    ] = False,
    level: Annotated[
        str | None, typer.Option("--level", help="least level shown: debug|info|warning|error")
    ] = None,
    grep: Annotated[
        str | None, typer.Option("--grep", help="only lines whose message matches this regex")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the stored JSON lines")] = False,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """The tasks' logs (stored beside their results), by task and attempt; with --follow, also the
    lines of running tasks as they are written (local backend)."""
    from slurmctl.errors import StateError
    from slurmctl.model.states import JobState
    from slurmctl.obs.logs import human_line
    from slurmctl.obs.read import follow, line_filter, show
    from slurmctl.status import progress

    keep = line_filter(level, grep)
    backend = open_backend_of(root, backend_spec)
    progress(backend, job_id)  # an unknown job: exit 5
    if task_id is not None and not (task_id[:1] == "t" and task_id[1:].isdigit()):
        raise StateError(f"job {job_id} has no task {task_id!r} (tasks are t0000000..)")

    def emit(d: dict[str, Any]) -> None:
        if keep(d):
            print(json.dumps(d, ensure_ascii=False) if as_json else human_line(d), flush=True)

    if follow_:
        follow(
            backend,
            job_id,
            task_id,
            emit,
            finished=lambda: JobState(progress(backend, job_id).state).is_terminal,
        )
    else:
        show(backend, job_id, task_id, emit)


@app.command()
def metrics(job_id: str, root: RootOpt = None, backend_spec: BackendOpt = None) -> None:
    """The job's metrics as OpenMetrics text, rolled up from its tasks' metrics summaries."""
    from slurmctl.obs.read import job_openmetrics

    sys.stdout.write(job_openmetrics(open_backend_of(root, backend_spec), job_id))  # unknown job: exit 5


@app.command()
def dashboard(
    job_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="the HTML file to write")] = Path("job.html"),
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """Write the job's dashboard: one self-contained HTML file (no network needed to view it)."""
    from slurmctl.dashboard.render import write

    backend = open_backend_of(root, backend_spec)
    r = write(backend, job_id, output)
    print(
        f"wrote {output} ({r['bytes'] / 1e6:.2f} MB, {r['tasks']:,} tasks) in "
        f"{r['collect_s'] + r['render_s']:.1f} s"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 8765,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
    api: Annotated[
        bool,
        typer.Option(
            "--api", help="also serve the control plane's REST API (/api/v1) on the database of --url"
        ),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="SLURMCTL_DATABASE_URL", help="control plane database (with --api)"),
    ] = None,
) -> None:
    """Serve every job of the backend over HTTP: the job list, each job's live dashboard, JSON API;
    with --api, the control plane's REST API too."""
    if not 0 < port < 65536:
        from slurmctl.errors import ConfigError

        raise ConfigError(f"--port must be 1..65535 (found {port})")
    try:
        from slurmctl.server.app import serve as run_server
    except ImportError as exc:
        raise SlurmctlError(
            f"slurmctl serve needs the server extra ({exc.name} is missing)",
            hint="pip install 'slurmctl[server]'",
        ) from None
    database = None
    if api:
        from slurmctl.controlplane.db import database_url

        database = database_url(url)
    run_server(open_backend_of(root, backend_spec), host, port, database=database)


@app.command()
def results(
    job_id: str,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="merged output file (default: the job's output.path)"),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("-f", "--format", help="parquet|sqlite|csv|jsonl (default: from -o suffix)")
    ] = None,
    allow_failed_items: Annotated[
        bool, typer.Option("--allow-failed-items", help="exit 0 even if some items failed")
    ] = False,
    show_status: Annotated[
        bool, typer.Option("--status", help="show the merge tree's progress per level; merge nothing")
    ] = False,
    redo_level: Annotated[
        int | None, typer.Option("--redo-level", help="merge the nodes of level N and above again")
    ] = None,
    processes: Annotated[
        int | None, typer.Option("-j", "--processes", help="merge processes (default: aggregate.processes)")
    ] = None,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """Verify every task's result (checksums, item accounting) and merge them into one file, as a
    tree of merge nodes that a re-run resumes (docs/aggregation.md)."""
    from slurmctl.aggregate import Settings, aggregate
    from slurmctl.coordinator import load_job

    backend = open_backend_of(root, backend_spec)
    if show_status:
        from slurmctl.aggregate.run import status

        plan, levels, finished = status(backend, job_id)
        print(f"job {job_id}: {plan.format}, {len(plan.sources)} results, fan-in {plan.fan_in}")
        for lv in levels:
            what = "root" if lv.level == plan.root_level else "nodes"
            print(f"  level {lv.level}: {lv.done}/{lv.nodes} {what} done")
        print("  output: " + ("written (output/.done)" if finished else "not written yet"))
        return
    if processes is not None and processes < 1:
        raise ConfigError(f"--processes {processes}: expected 1 or more")
    config = load_job(backend, job_id).config
    settings = Settings.of_job(config)
    if processes is not None:
        settings.processes = processes
    if output is None:
        ocfg = config["output"]
        if not ocfg.get("path"):
            raise SlurmctlError("no output path: give -o FILE or set output.path in the job file")
        output, fmt = Path(ocfg["path"]), fmt or ocfg["format"]

    def on_level(level: int, ran: int, skipped: int) -> None:
        err().print(f"level {level}: merged {ran} node(s), {skipped} already done", highlight=False)

    m = aggregate(backend, job_id, output, fmt, settings=settings, redo_level=redo_level, on_level=on_level)
    if m.unpublished:
        shown = ", ".join(m.unpublished[:10]) + (" ..." if len(m.unpublished) > 10 else "")
        err().print(
            f"[yellow]warning[/]: {len(m.unpublished)} retry task(s) have no published result (failed, "
            f"not run yet or waiting): their items keep their earlier outcome: {shown}",
            highlight=False,
        )
    out().print(
        f"wrote {m.output_path} ({m.output_format}, {m.rows} rows from {m.tasks} tasks, "
        f"sha256 {m.output_sha256[:16]}…); items ok={m.items_ok} failed={m.items_failed}"
    )
    if m.items_failed:
        err().print(
            f"[yellow]{m.items_failed} item(s) failed[/]: see {m.output_path}.errors.jsonl", highlight=False
        )
        if not allow_failed_items:
            raise typer.Exit(EXIT_ITEMS_FAILED)


@app.command()
def jobs(
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List jobs in the backend, newest first."""
    from rich.table import Table

    from slurmctl.model.core import JobStatus
    from slurmctl.storage import keys

    backend = open_backend_of(root, backend_spec)
    rows = sorted(
        (JobStatus.model_validate(r.value) for r in backend.state.scan(keys.JOBS_TABLE)),
        key=lambda s: s.created_at,
        reverse=True,
    )
    from slurmctl.status import progress

    # A job nobody watches keeps its stored state (readers never write): show what its tasks imply.
    states = {
        r.job_id: r.state.value
        if r.state.is_terminal or r.state.value in ("created", "partitioned")
        else progress(backend, r.job_id).state
        for r in rows
    }
    if as_json:
        print(json.dumps([r.model_dump(mode="json") | {"state": states[r.job_id]} for r in rows], indent=2))
        return
    t = Table("job", "state", "executor", "tasks", "items", "created")
    for r in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        t.add_row(r.job_id, states[r.job_id], r.executor, str(r.tasks), str(r.total_items), created)
    out().print(t)


@app.command()
def inspect(
    job_id: str,
    task_id: Annotated[str | None, typer.Argument()] = None,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """Show the job manifest, or a task's manifest, state and result manifest (JSON)."""
    from slurmctl.coordinator import load_job
    from slurmctl.errors import ObjectNotFoundError, StateError
    from slurmctl.model.core import Task
    from slurmctl.model.manifests import DoneMarker
    from slurmctl.storage import keys

    backend = open_backend_of(root, backend_spec)
    job = load_job(backend, job_id)
    if task_id is None:
        doc = job.model_dump(mode="json")
        rec = backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id))
        doc["status"] = None if rec is None else rec.value
        print(json.dumps(doc, indent=2))
        if rec is None:
            err().print(f"job {job_id} has no job record (purged with --keep-results): status is null")
        return
    missing = StateError(f"job {job_id} has no task {task_id!r} (tasks are t0000000..)")
    if not (task_id[:1] == "t" and task_id[1:].isdigit()):  # never a key outside the job's tasks
        raise missing
    try:
        task = Task.from_json(backend.objects.get(keys.task_manifest(job_id, task_id)), where=task_id)
    except ObjectNotFoundError:
        raise missing from None
    rec = backend.state.get(keys.TASKS_TABLE, keys.task_state(job_id, task_id))
    doc: dict[str, Any] = {"task": task.model_dump(mode="json"), "state": rec.value if rec else None}
    try:
        marker = DoneMarker.from_json(backend.objects.get(keys.done_marker(job_id, task_id)))
        doc["done"] = marker.model_dump(mode="json")
        doc["result"] = json.loads(backend.objects.get(marker.manifest_key))
    except ObjectNotFoundError:
        doc["done"] = None
    print(json.dumps(doc, indent=2))


@app.command()
def cancel(
    job_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """Stop a job's running work and mark it cancelled."""
    from slurmctl.coordinator import load_job
    from slurmctl.executors import executor_for
    from slurmctl.lifecycle import job_status

    backend = open_backend_of(root, backend_spec)
    st = job_status(backend, job_id)
    if st.state.is_terminal:
        out().print(f"job {job_id} is already {st.state.value}")
        return
    if not yes and not typer.confirm(f"cancel job {job_id} ({st.tasks} tasks)?"):
        raise typer.Exit(1)
    executor = executor_for(backend, load_job(backend, job_id))
    executor.cancel()
    executor.lifecycle.cancel("cancelled by user")
    from slurmctl.lifecycle import record_event

    record_event(backend, job_id, "cancel")
    out().print(f"cancelled {job_id}")


@app.command()
def doctor(
    cluster: Annotated[str | None, typer.Option("--cluster", help="a named cluster profile")] = None,
    tasks: Annotated[
        int | None, typer.Option("--tasks", help="check MaxArraySize against this many tasks")
    ] = None,
    root: RootOpt = None,
) -> None:
    """Check Slurm (commands, controller, MaxArraySize, accounting), scratch space and the backend
    root; print what to do about each problem. Exit 1 on errors, 0 otherwise (warnings included)."""
    from slurmctl.clusters import resolve
    from slurmctl.doctor import check_backend_root
    from slurmctl.slurm.client import SlurmClient
    from slurmctl.slurm.doctor import Severity, run_slurm_checks

    profile = resolve(cluster)
    client = SlurmClient(bin_dir=profile[1].slurm_bin if profile else None)
    root = root or (profile[1].root if profile else None)
    findings = [*run_slurm_checks(client, wanted_tasks=tasks), check_backend_root(root)]
    colour = {Severity.OK: "green", Severity.WARNING: "yellow", Severity.ERROR: "red"}
    for f in findings:
        out().print(f"[{colour[f.severity]}]{f.severity.value:>7}[/] {f.check}: {f.message}", highlight=False)
        if f.hint and f.severity != Severity.OK:
            out().print(f"          → {f.hint}", highlight=False)
    if any(f.severity == Severity.ERROR for f in findings):
        raise typer.Exit(1)


@app.command()
def clusters() -> None:
    """List the named cluster profiles (~/.config/slurmctl/clusters.yaml or $SLURMCTL_CLUSTERS)."""
    from rich.table import Table

    from slurmctl.clusters import load_profiles, profiles_path

    profiles = load_profiles()
    if not profiles.clusters:
        out().print(f"no cluster profiles in {profiles_path()}")
        return
    t = Table("cluster", "partition", "account", "root", "slurm_bin")
    for name, p in sorted(profiles.clusters.items()):
        mark = " (default)" if name == profiles.default else ""
        t.add_row(name + mark, p.partition or "-", p.account or "-", p.root or "-", p.slurm_bin or "PATH")
    out().print(t)


@app.command(hidden=False)
def worker(
    job: Annotated[str, typer.Option("--job", help="job id")],
    backend_spec: Annotated[str, typer.Option("--backend", help="backend spec as JSON")] = '{"kind":"local"}',
    task: Annotated[str | None, typer.Option("--task", help="run this task id")] = None,
    array_offset: Annotated[
        int | None, typer.Option("--array-offset", help="task index = SLURM_ARRAY_TASK_ID + offset")
    ] = None,
    pilot: Annotated[bool, typer.Option("--pilot", help="claim tasks until none are left")] = False,
    index: Annotated[int, typer.Option("--index", help="pilot: this worker's index")] = -1,
    workers: Annotated[int, typer.Option("--workers", help="pilot: number of pilots")] = 1,
) -> None:
    """The worker entry point every executor launches (one task, an array element, or a pilot).
    Executors call the lighter ``python -m slurmctl.worker``, which runs the same code."""
    from slurmctl.worker.entry import run

    raise typer.Exit(run(job, backend_spec, task, array_offset, pilot, index, workers))


aws_app = typer.Typer(help="AWS backend resources (S3 + DynamoDB + SQS).", no_args_is_help=True)
app.add_typer(aws_app, name="aws")
limits_app = typer.Typer(help="Shared rate limits (token buckets) of running jobs.", no_args_is_help=True)
app.add_typer(limits_app, name="limits")
app.add_typer(db_app, name="db")
app.add_typer(project_app, name="project")
app.add_typer(alerts_app, name="alerts")
app.add_typer(cp_app, name="cp")
app.add_typer(token_app, name="token")
app.command("audit")(audit_command)


@aws_app.command("bootstrap")
def aws_bootstrap(
    bucket: Annotated[str, typer.Option("--bucket", help="S3 bucket (created if missing)")],
    table_prefix: Annotated[str, typer.Option("--table-prefix")] = "slurmctl-",
    queue_prefix: Annotated[str, typer.Option("--queue-prefix")] = "slurmctl-",
    region: Annotated[str | None, typer.Option("--region")] = None,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="S3-compatible/test endpoint")
    ] = None,
    queues: Annotated[bool, typer.Option("--queues/--no-queues", help="also create the SQS queues")] = True,
) -> None:
    """Create (or correct) the bucket, tables and queues of the aws backend. Idempotent."""
    from slurmctl.storage.aws.bootstrap import bootstrap
    from slurmctl.storage.aws.settings import AwsSettings

    settings = AwsSettings.from_spec(
        {
            "bucket": bucket,
            "table_prefix": table_prefix,
            "queue_prefix": queue_prefix,
            "region": region,
            "endpoint_url": endpoint_url,
        }
    )
    for action in bootstrap(settings, queues=queues):
        out().print(action, highlight=False)
    block = json.dumps(settings.to_spec())
    out().print(f"backend block for job files: {block}", markup=False, highlight=False)


@limits_app.command("set")
def limits_set(
    name: str,
    rate: Annotated[float | None, typer.Option("--rate", help="tokens per second")] = None,
    burst: Annotated[int | None, typer.Option("--burst", help="tokens at once")] = None,
    job: Annotated[
        str | None, typer.Option("--job", help="the job's bucket (default: the shared one)")
    ] = None,
    root: RootOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Change a rate limit while jobs run; workers pick it up with their next lease."""
    from slurmctl.ratelimit import bucket_store, set_limit

    if rate is None and burst is None:
        raise SlurmctlError("give --rate and/or --burst")
    doc = set_limit(bucket_store(open_backend_of(root, backend)), name, rate=rate, burst=burst, job_id=job)
    scope = f"job {job}" if job else "shared"
    out().print(f"limit {name} ({scope}): rate {doc['rate']:g}/s, burst {doc['burst']}")


@app.command()
def pause(job_id: str, root: RootOpt = None, backend: BackendOpt = None) -> None:
    """Stop new work of a job: no task is claimed (running tasks finish theirs), pending Slurm array
    elements are held (one scontrol hold), rate-limit tokens stop. `slurmctl resume` undoes it."""
    from slurmctl.control import pause as pause_job

    for line in pause_job(open_backend_of(root, backend), job_id):
        out().print(line, highlight=False, markup=False)


@app.command()
def resume(job_id: str, root: RootOpt = None, backend: BackendOpt = None) -> None:
    """Undo `slurmctl pause`: workers claim tasks again, held Slurm elements are released (one
    scontrol release), rate-limit tokens flow."""
    from slurmctl.control import pause as pause_job

    for line in pause_job(open_backend_of(root, backend), job_id, resume=True):
        out().print(line, highlight=False, markup=False)


@app.command()
def purge(
    job_id: str,
    keep_results: Annotated[
        bool, typer.Option("--keep-results", help="keep what `slurmctl results` reads (manifests, results)")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what it would delete")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="purge a live job too (it is cancelled first)")
    ] = False,
    root: RootOpt = None,
    backend_spec: BackendOpt = None,
) -> None:
    """Delete a job from the backend: objects (local files, S3), records (jobs, tasks, progress,
    rate limits, alerts), SQS messages. Refuses a live job without --force (exit 5); asks first unless
    --yes. Crash-safe: run it again to finish an interrupted purge."""
    from slurmctl.control import plan_purge
    from slurmctl.control import purge as purge_job

    backend = open_backend_of(root, backend_spec)
    plan = plan_purge(backend, job_id, keep_results=keep_results)
    state = plan.status.state.value if plan.status else "no job record"
    out().print(f"job {job_id} ({state}): deletes {plan.summary()}", highlight=False, markup=False)
    if dry_run:
        for key, size in plan.objects:
            out().print(f"  {key}  {size}", highlight=False, markup=False)
        if plan.live:
            out().print(f"the job is live ({plan.live}): purge would need --force", highlight=False)
        return
    if plan.live and not force:
        purge_job(backend, plan, force=False)  # raises the refusal (exit 5)
    if not yes:
        if not sys.stdin.isatty():
            raise SlurmctlError(
                f"purge of {job_id} needs confirmation and stdin is not a terminal",
                hint="add --yes to purge without asking (--dry-run lists what it deletes)",
            )
        if not typer.confirm(f"delete job {job_id} for good?"):
            raise typer.Exit(1)
    report = purge_job(backend, plan, force=force, keep_results=keep_results)
    out().print(f"purged {job_id}: {report.summary()}", highlight=False, markup=False)


class _PlainConversion:
    """typer's run-time conversion of a str, int, float or bool parameter (the ``coerce`` of its
    ``RuntimeParam``), without pydantic: typer builds a pydantic TypeAdapter for every parameter
    whose value is not already a bool, which imports pydantic (~0.15 s of every command on a 2-core
    VM), and these types need none of it. Bad values are usage errors, as typer's own are."""

    BOOLS = {"1": True, "true": True, "yes": True, "y": True, "on": True}
    BOOLS |= {"0": False, "false": False, "no": False, "n": False, "off": False}

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None or isinstance(value, self.kind):
            return value
        try:
            return self.BOOLS[str(value).lower()] if self.kind is bool else self.kind(value)
        except (KeyError, ValueError):
            message = f"{value!r} is not a valid {self.kind.__name__}."
            raise typer.BadParameter(message, ctx=ctx, param=param) from None


def _use_plain_conversions() -> None:
    """Make typer convert str, int, float and bool parameters with :class:`_PlainConversion`
    (every other type keeps typer's own conversion). A typer without ``build_runtime_param``
    converts as it does."""
    import typer.core

    typer_build = getattr(typer.core, "build_runtime_param", None)
    if typer_build is None or getattr(typer_build, "plain", False):
        return

    def build_runtime_param(descriptor: Any) -> Any:
        info = descriptor.parameter_info
        plain = descriptor.annotation in (str, int, float, bool) and descriptor.file_annotation is None
        if plain and info.parser is None and info.min is None and info.max is None:
            return _PlainConversion(descriptor.annotation)
        return typer_build(descriptor)

    build_runtime_param.plain = True  # type: ignore[attr-defined]
    typer.core.build_runtime_param = build_runtime_param


def main() -> None:
    """Console entry point (``slurmctl``, ``python -m slurmctl``): runs the command; a usage error
    prints typer's usage message (exit 2), anything else that stops the command is mapped to its
    message and exit code by :func:`slurmctl.errors.exit_code` (the one table)."""
    _use_plain_conversions()
    command = typer.main.get_command(app)
    try:
        # With standalone_mode=False click returns the code of a typer.Exit instead of raising it.
        rc = command.main(prog_name="slurmctl", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors (bad option, missing argument): exit 2
        exc.show()  # type: ignore[attr-defined]  # every one is a (vendored) click.ClickException
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        from rich.markup import escape

        if isinstance(exc, typer.Abort):  # Ctrl-C at a prompt
            exc = KeyboardInterrupt()

        label, sep, rest = failure_message(exc).partition(":")
        err().print(f"[red]{label}{sep}[/]{escape(rest)}" if sep else label, highlight=False)
        sys.exit(exit_code(exc))
    sys.exit(rc if isinstance(rc, int) else 0)
