"""What the full CLI (typer) and its fast path share: opening the backend a command names, and
rendering a job's progress. Imports nothing heavy at module level."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from slurmctl.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from slurmctl.status import JobProgress
    from slurmctl.storage.base import Backend


def open_backend_of(root: str | None, spec: str | None) -> Backend:
    """The backend of ``--root`` (local) or ``--backend JSON``. Raises ConfigError on a bad spec."""
    from slurmctl.storage.open import open_backend

    if spec is None:
        return open_backend({"kind": "local"}, root)
    try:
        block = json.loads(spec)
    except ValueError as exc:
        raise ConfigError(
            f"--backend: not valid JSON: {exc}", hint='e.g. --backend \'{"kind":"aws","bucket":"b"}\''
        ) from None
    if not isinstance(block, dict):
        raise ConfigError("--backend: expected a JSON object")
    return open_backend(block, root)


def fmt_s(s: float | None) -> str:
    """Seconds as ``1h02m`` / ``3m05s``; ``-`` for None."""
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_json(p: JobProgress) -> str:
    """``status --json``'s document."""
    return json.dumps(p.to_dict(), indent=2)


def print_progress(p: JobProgress, out: Console) -> None:
    """``status``'s human view: a borderless table, then the failed tasks (at most 20)."""
    from rich.table import Table

    t = Table(title=f"{p.job_id} — {p.state}", show_header=False, box=None)
    t.add_row("tasks", " ".join(f"{k}={v}" for k, v in p.task_states.items() if v) or "0")
    t.add_row("items", f"{p.items_done}/{p.items_total} done, {p.items_failed} failed")
    t.add_row("throughput", f"{p.items_per_s:,.1f} items/s" if p.items_per_s else "-")
    t.add_row("elapsed / ETA", f"{fmt_s(p.elapsed_s)} / {fmt_s(p.eta_s)}")
    if p.message:
        t.add_row("message", p.message)
    out.print(t)
    for f in p.failed_tasks:
        out.print(f"  [red]failed[/] {f['task_id']} (attempt {f['attempt']}): {f['error']}", highlight=False)
