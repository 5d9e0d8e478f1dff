"""The CLI's fast path: ``slurmctl status JOB [--json] [--root R] [--backend B]`` answered before
typer is imported.

Why: typer (0.29) builds its parameter adapters with pydantic, so merely starting the full CLI
costs ~0.15-0.25 s of imports on a login node — most of the 0.3 s that ``status`` on a 10k-task job
may take (docs/performance.md). ``status`` is the command people and scripts run in loops, so its
plain forms are parsed here by hand; anything else (``--watch``, ``--help``, an unknown option, any
other command) returns None and the full typer CLI handles it, so the options, help and errors
stay defined in one place (:mod:`slurmctl.cli.main`). Output and exit codes are identical on both
paths (tests run both).
"""

from __future__ import annotations

import gc
import os
import sys

from slurmctl.errors import SlurmctlError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from slurmctl.storage.base import Backend


def _parse_status(args: list[str]) -> tuple[str, bool, str | None, str | None] | None:
    """(job_id, as_json, root, backend) for the forms the fast path serves, else None."""
    job_id: str | None = None
    as_json = False
    opts: dict[str, str | None] = {"--root": None, "--backend": None}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--json":
            as_json = True
        elif a in opts:
            if i + 1 >= len(args):
                return None
            opts[a] = args[i + 1]
            i += 1
        elif a.partition("=")[0] in opts and "=" in a:
            name, _, value = a.partition("=")
            opts[name] = value
        elif a.startswith("-") or job_id is not None:
            return None  # --watch, --help, a typo, a second positional: the full CLI says what to do
        else:
            job_id = a
        i += 1
    if job_id is None:
        return None
    root = opts["--root"] if opts["--root"] is not None else os.environ.get("SLURMCTL_ROOT") or None
    return job_id, as_json, root, opts["--backend"]


def try_fast(argv: list[str]) -> int | None:
    """Run ``argv`` (without the program name) if the fast path serves it: its exit code; else None."""
    if not argv or argv[0] != "status" or os.environ.get("SLURMCTL_NO_FAST_PATH"):
        return None
    parsed = _parse_status(argv[1:])
    if parsed is None:
        return None
    job_id, as_json, root, backend_spec = parsed
    # A short-lived process that builds ~100k objects (the job's task rows), none of them in a
    # reference cycle: the cyclic collector would only traverse them again and again (~10% of a
    # warm call's instructions). Reference counting still frees everything.
    gc.disable()
    from slurmctl.status import progress

    try:
        p = progress(_open_backend(root, backend_spec), job_id)
        from slurmctl.cli.common import format_progress, progress_json, use_color

        print(progress_json(p) if as_json else format_progress(p, use_color()))
        return 0
    except SlurmctlError as exc:
        _error(f"[red]error:[/] {_escape(str(exc))}")
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:  # a genuine bug: the same message as the full CLI's
        if os.environ.get("SLURMCTL_DEBUG"):
            raise
        _error(f"[red]internal error:[/] {type(exc).__name__}: {_escape(str(exc))}")
        _error("re-run with SLURMCTL_DEBUG=1 for the traceback, and please report it")
        return 70


def _open_backend(root: str | None, spec: str | None) -> Backend:
    """The backend of ``--root`` / ``--backend``, as :func:`slurmctl.cli.common.open_backend_of`
    opens it. The local store without ``--backend`` is opened here directly: cli.common and
    storage.open import typing and pathlib (~10 ms), which the status path otherwise avoids."""
    if spec is not None:
        from slurmctl.cli.common import open_backend_of

        return open_backend_of(root, spec)
    from slurmctl.storage.local import local_backend

    # the default of storage.open.default_root (SLURMCTL_ROOT was read by _parse_status)
    return local_backend(root or "~/.slurmctl")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _error(markup: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(markup, highlight=False)


def main() -> None:
    """Console entry point: the fast path if it serves the command line, else the full CLI."""
    rc = try_fast(sys.argv[1:])
    if rc is not None:
        # Exempt everything from the collection the interpreter runs at exit: it would traverse
        # every object still alive only to find no cycles (~3% of a cold `status`).
        gc.freeze()
        sys.exit(rc)
    from slurmctl.cli.main import main as full_main

    full_main()
