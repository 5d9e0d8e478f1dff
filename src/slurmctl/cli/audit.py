"""``slurmctl audit``: read the control plane's audit log (from the database, oldest first).

``--project`` shows a project's entries and its jobs' (its owners and site admins may); without it,
the whole log (site admins: ``$SLURMCTL_ADMINS``, default ``root``). ``--since`` takes an ISO date
or time (UTC) or an age (``30m``, ``12h``, ``7d``). Exit codes: 0 done; 2 bad ``--since`` or URL;
5 no such project; 6 the database failed; 14 not allowed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from slurmctl.cli.db import UrlOpt
from slurmctl.cli.project import JsonOpt, _actor

_AGE = re.compile(r"^(\d+)([mhd])$")


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``/``12h``/``30m`` before ``now``, or an ISO date/time (UTC unless it names a zone).
    Raises ConfigError. Pure."""
    from slurmctl.errors import ConfigError

    m = _AGE.match(text.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        try:
            return now - timedelta(**{unit: int(m.group(1))})
        except OverflowError:
            raise ConfigError(
                f"--since {text!r}: too far back; give at most 100000d or an ISO date"
            ) from None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give an ISO date/time (2026-12-01, 2026-12-01T08:00) or 7d, 12h, 30m"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def audit(
    project: Annotated[str | None, typer.Option("--project", "-p", help="a project and its jobs")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date/time (UTC) or 7d, 12h, 30m")] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Show the audit log: when, who, from where, what, and the digests before/after."""
    from slurmctl.controlplane import auth
    from slurmctl.controlplane.domain import utcnow
    from slurmctl.controlplane.repo import audit_json, open_repository

    start = parse_since(since, utcnow()) if since else None
    repo = open_repository(url)
    actor = _actor()
    principal = auth.Principal(user=actor.user, admin=actor.user in auth.admins_from_env())
    resource = auth.Resource(project=repo.get_project(project).entity if project else None)
    auth.authorize(principal, "audit.read", resource)
    entries = repo.audit(project=project, since=start)
    if as_json:
        print(json.dumps([audit_json(e) for e in entries], indent=2))
        return
    for e in entries:
        before = (e.before_sha256 or "-")[:12]
        after = (e.after_sha256 or "-")[:12]
        print(
            f"{e.at:%Y-%m-%dT%H:%M:%SZ}\t{e.actor}@{e.source}\t{e.action}\t{e.entity_key}\t{before} → {after}"
        )
