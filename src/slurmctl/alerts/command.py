"""``slurmctl alerts check [JOB...|--all]`` and ``slurmctl alerts list JOB`` (registered by
cli/main.py).

``check`` makes one look at each job (slurmctl.alerts.evaluate) — what the runner and the watch
loop do on their own — so that cron can watch jobs nobody follows. ``--all``: every job that is not
finished, and every job with a condition still firing (so that its resolve goes out). Exit codes
(the table in errors.py): 0 nothing fires; 12 a condition fires (its notifications were sent or
are suppressed until ``repeat_s``); 13 a notification could not be delivered (it is tried again at
the next look); 2 invalid alert settings; 5 an unknown job; 6 the backend cannot be read.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

Root = Annotated[
    str | None,
    typer.Option("--root", envvar="SLURMCTL_ROOT", help="local backend root (default ~/.slurmctl)"),
]
BackendSpec = Annotated[str | None, typer.Option("--backend", help="backend block as JSON (default: local)")]

alerts_app = typer.Typer(
    help="Alerts of jobs: stalls, error spikes, saturated limits, resources.", no_args_is_help=True
)


def _jobs(backend: Any, all_jobs: bool, job_ids: list[str]) -> list[str]:
    from slurmctl.alerts import state as S
    from slurmctl.storage import keys

    if not all_jobs:
        return job_ids
    live = {
        r.key
        for r in backend.state.scan(keys.JOBS_TABLE)
        if r.value.get("state") not in ("succeeded", "failed", "cancelled", "purging")
    }
    firing = {r.key.partition("/")[0] for r in backend.state.scan(S.TABLE) if S.firing(r.value)}
    return sorted(live | firing | set(job_ids))


@alerts_app.command("check")
def check(
    job_ids: Annotated[list[str] | None, typer.Argument(help="job ids")] = None,
    all_jobs: Annotated[
        bool, typer.Option("--all", help="every unfinished job, and jobs still firing")
    ] = False,
    root: Root = None,
    backend_spec: BackendSpec = None,
) -> None:
    """Evaluate the alert rules of jobs once and send what is due (cron-able; exit 12: firing,
    13: a notification failed)."""
    from slurmctl.alerts.config import AlertsConfig, resolve
    from slurmctl.alerts.evaluate import Evaluator
    from slurmctl.cli.common import open_backend_of
    from slurmctl.coordinator import load_job
    from slurmctl.errors import EXIT_ALERTS_FIRING, EXIT_OK, EXIT_UNDELIVERED, ConfigError

    if not job_ids and not all_jobs:
        raise ConfigError("name the jobs to check, or --all")
    backend = open_backend_of(root, backend_spec)
    code = EXIT_OK
    for job_id in _jobs(backend, all_jobs, job_ids or []):
        config = load_job(backend, job_id).config
        cfg = resolve(config) or AlertsConfig()
        if not cfg.enabled:
            print(f"{job_id}: alerts are off (alerts.enabled: false)")
            continue
        report = Evaluator(backend, job_id, cfg, config).run_once()
        for key, cond in report.firing:
            print(f"{job_id}: FIRING {key} since {_when(cond['since'])}: {cond['summary']}")
            print(f"  next: {cond['command']}")
        for key, channel, event in report.sent:
            print(f"{job_id}: sent {event} {key} on {channel}")
        for key, channel, error in report.failed:
            print(f"{job_id}: NOT DELIVERED {key} on {channel}: {error}")
        if not report.firing and not report.failed:
            print(f"{job_id}: ok")
        if report.failed:
            code = EXIT_UNDELIVERED
        elif report.firing and code == EXIT_OK:
            code = EXIT_ALERTS_FIRING
    raise typer.Exit(code)


@alerts_app.command("list")
def list_(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="the alert record as JSON")] = False,
    root: Root = None,
    backend_spec: BackendSpec = None,
) -> None:
    """A job's alert conditions (firing and resolved) and their deliveries per channel. Reads only."""
    from slurmctl.alerts import state as S
    from slurmctl.cli.common import open_backend_of
    from slurmctl.errors import JobNotFoundError
    from slurmctl.storage import keys

    backend = open_backend_of(root, backend_spec)
    rec = backend.state.get(S.TABLE, keys.alerts_state(job_id))
    if rec is None and backend.state.get(keys.JOBS_TABLE, keys.job_state(job_id)) is None:
        raise JobNotFoundError.in_backend(job_id, backend.description)
    conds = (rec.value if rec else {}).get("conditions", {})
    if as_json:
        print(json.dumps({"job_id": job_id, "conditions": conds}, indent=2))
        return
    if not conds:
        print(f"job {job_id}: no alert conditions recorded")
        return
    for key, c in sorted(conds.items(), key=lambda kv: (kv[1]["state"] != "firing", kv[0])):
        end = f", resolved {_when(c['resolved_at'])}" if c["state"] == "resolved" else ""
        print(f"{c['state'].upper():8} {key} since {_when(c['since'])}{end}: {c['summary']}")
        print(f"         next: {c['command']}")
        for name, d in sorted(c["deliveries"].items()):
            how = f"sent {_when(d['sent_at'])}" if d["sent_at"] else f"pending (tries {d['tries']})"
            err = f": {d['error']}" if d["error"] and not d["sent_at"] else ""
            print(f"         {name}: {d['event']} {how}{err}")


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
