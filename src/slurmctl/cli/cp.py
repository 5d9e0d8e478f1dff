"""``slurmctl cp``: jobs submitted through the control plane (tracked in its database).

A thin layer over :mod:`slurmctl.controlplane.submit` (and the poller). ``cp submit`` commits the job
as accepted, then sbatches it under the project's Slurm account; ``cp recover`` finishes jobs a crash
left accepted; ``cp jobs`` lists tracked jobs. The database is ``--url`` / ``$SLURMCTL_DATABASE_URL``.

Exit codes: 0 done; 2 invalid script, key or URL; 3 unreadable script; 5 no such project; 6 the
database failed or is behind the code; 7 sbatch, squeue or sacct failed (a transiently failed sbatch
leaves the job accepted: ``cp recover`` or the poller submits it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from slurmctl.cli.db import UrlOpt
from slurmctl.cli.project import ClusterOpt, JsonOpt, _actor, _cluster

cp_app = typer.Typer(help="Jobs submitted and tracked through the control plane.", no_args_is_help=True)


def _submitter(url: str | None, cluster: str | None):  # type: ignore[no-untyped-def]
    from slurmctl.controlplane.repo import open_repository
    from slurmctl.controlplane.submit import Submitter
    from slurmctl.slurm.client import SlurmClient
    from slurmctl.slurm.runner import CommandRunner

    client = SlurmClient(CommandRunner())
    return Submitter(open_repository(url), client, cluster=_cluster(cluster, client.runner))


@cp_app.command("submit")
def submit(
    script: Annotated[
        Path, typer.Argument(help="batch script (#SBATCH lines apply; --account is the project's)")
    ],
    project: Annotated[str, typer.Option("--project", "-p", help="project (its Slurm account is used)")],
    key: Annotated[str | None, typer.Option("--idempotency-key", help="same key, same job")] = None,
    cluster: ClusterOpt = None,
    url: UrlOpt = None,
) -> None:
    """Accept SCRIPT for PROJECT (committed first), sbatch it, record its Slurm id."""
    from slurmctl.errors import InputError

    try:
        text = script.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {script}: {exc}") from exc
    sub = _submitter(url, cluster)
    actor = _actor()
    v = sub.submit(sub.accept(project=project, script=text, actor=actor, idempotency_key=key), actor)
    job = v.entity
    print(f"job {job.id} {job.state} slurm={','.join(job.slurm_job_ids) or '-'} token={job.submit_token}")


@cp_app.command("recover")
def recover(
    grace: Annotated[
        float, typer.Option("--grace", min=0, max=31_536_000, help="only jobs accepted this many seconds ago")
    ] = 300,
    cluster: ClusterOpt = None,
    url: UrlOpt = None,
) -> None:
    """Finish jobs left accepted: record the Slurm id of those that reached Slurm, submit the rest."""
    from datetime import timedelta

    sub = _submitter(url, cluster)
    sub.grace = timedelta(seconds=grace)
    report = sub.recover(_actor())
    print(f"recovered: {report.found} found in Slurm, {report.submitted} submitted, {report.failed} failed")
    if report.others:
        print(f"{report.others} accepted job(s) of other users left for their own `slurmctl cp recover`")
    for line in report.errors:
        print(f"  {line}")
    if report.failed:
        raise typer.Exit(7)


@cp_app.command("jobs")
def jobs(
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", help="repeatable")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """List tracked jobs (by id), filtered by project and state."""
    from slurmctl.controlplane.domain import JobState
    from slurmctl.controlplane.repo import open_repository
    from slurmctl.errors import ConfigError

    bad = [s for s in state or [] if s not in set(JobState)]
    if bad:
        raise ConfigError(f"unknown state {bad[0]!r} (one of {', '.join(JobState)})")
    found = open_repository(url).list_jobs(project=project, states=state or [], limit=limit)
    if as_json:
        rows = [{**v.entity.model_dump(mode="json", exclude={"script"}), "version": v.version} for v in found]
        print(json.dumps(rows, indent=2))
        return
    for v in found:
        j = v.entity
        print(
            f"{j.id}\t{j.project}\t{j.state}\tslurm={','.join(j.slurm_job_ids) or '-'}\tby={j.submitted_by}"
        )


@cp_app.command("poll")
def poll(
    polls: Annotated[
        int | None, typer.Option("--polls", min=1, help="stop after N polls (default: run on)")
    ] = None,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0, max=31_536_000, help="recover jobs accepted this many seconds ago"),
    ] = 300,
    cluster: ClusterOpt = None,
    url: UrlOpt = None,
) -> None:
    """Track the cluster's jobs: recover accepted ones, then one squeue per poll for all tracked jobs
    (one sacct for those squeue no longer lists); the interval grows while nothing changes."""
    from datetime import timedelta

    from slurmctl.controlplane.poller import Poller, PollReport

    sub = _submitter(url, cluster)
    sub.grace = timedelta(seconds=grace)
    actor = _actor()

    def show(r: PollReport) -> None:
        print(f"poll: {r.tracked} tracked, {r.changed} changed, {r.unseen} not found in Slurm", flush=True)

    poller = Poller(sub.repo, sub.slurm, cluster=sub.cluster, actor=actor, submitter=sub)  # type: ignore[arg-type]
    poller.run(max_polls=polls, on_poll=show)
