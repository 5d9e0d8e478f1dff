"""The typer command ``slurmctl analyze-errors`` (registered by cli/main.py as
``app.command("analyze-errors")(analyze_errors)``); the work is in analyze.py."""

from __future__ import annotations

from typing import Annotated

import typer

from slurmctl.failures.classify import CATEGORIES


def analyze_errors(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
    top: Annotated[
        int | None, typer.Option("--top", help="only the N groups that affect the most items")
    ] = None,
    category: Annotated[
        str | None, typer.Option("--category", help=f"only failures of one category: {', '.join(CATEGORIES)}")
    ] = None,
    root: Annotated[
        str | None,
        typer.Option("--root", envvar="SLURMCTL_ROOT", help="local backend root (default ~/.slurmctl)"),
    ] = None,
    backend_spec: Annotated[
        str | None, typer.Option("--backend", help="backend block as JSON (default: local)")
    ] = None,
) -> None:
    """A job's failures grouped by signature: count, category, tasks and items, first and last seen,
    samples, a traceback and what to do."""
    from slurmctl.cli.common import open_backend_of
    from slurmctl.failures.analyze import check_category, run

    check_category(category)
    code = run(open_backend_of(root, backend_spec), job_id, as_json=as_json, top=top, category=category)
    raise typer.Exit(code)
