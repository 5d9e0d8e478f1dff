"""Helpers of the CLI's commands: opening the backend a command names, and rendering a job's
progress."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from slurmctl.errors import ConfigError

if TYPE_CHECKING:
    from slurmctl.status import JobProgress
    from slurmctl.storage.base import Backend


def open_backend_of(root: str | None, spec: str | None) -> Backend:
    """The backend of ``--root`` (local) or ``--backend JSON``. Raises ConfigError on a bad spec;
    StorageError when a remote backend fails its first-contact check (seconds at most)."""
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
    return open_backend(block, root, check=True)


def fmt_s(s: float | None) -> str:
    """Seconds as ``1h02m`` / ``3m05s``; ``-`` for None."""
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_json(p: JobProgress) -> str:
    """``status --json``'s document."""
    return json.dumps(p.to_dict(), indent=2)


def use_color(stream: object = None) -> bool:
    """Whether to colour text for ``stream`` (stdout): a terminal, no NO_COLOR, TERM not dumb."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(
        isatty and isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"
    )


def format_progress(p: JobProgress, color: bool = False) -> str:
    """``status``'s human view: a title, one aligned line per figure, then the failed tasks (at most
    20). Plain text, ANSI bold/red only with ``color``."""
    rows = [
        ("tasks", " ".join(f"{k}={v}" for k, v in p.task_states.items() if v) or "0"),
        *([("retry tasks", f"{p.retry_tasks} of the {p.tasks} (item retries)")] if p.retry_tasks else []),
        ("items", f"{p.items_done}/{p.items_total} done, {p.items_failed} failed"),
        ("throughput", f"{p.items_per_s:,.1f} items/s" if p.items_per_s else "-"),
        ("elapsed / ETA", f"{fmt_s(p.elapsed_s)} / {fmt_s(p.eta_s)}"),
    ]
    if p.message:
        rows.append(("message", p.message))
    bold, red, reset = ("\x1b[1m", "\x1b[31m", "\x1b[0m") if color else ("", "", "")
    width = max(len(k) for k, _ in rows)
    state = f"{p.state}, paused (`slurmctl resume {p.job_id}` resumes it)" if p.paused else p.state
    lines = [f"{bold}{p.job_id} — {state}{reset}"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines += [
        f"  {red}failed{reset} {f['task_id']} (attempt {f['attempt']}): {f['error']}" for f in p.failed_tasks
    ]
    return "\n".join(lines)
