"""The dashboard as HTML: one Jinja2 template with the stylesheet, the script (charts drawn by our
own SVG code, ``assets/dash.js``) and the data inlined, so a written file needs no network to be
viewed. ``slurmctl serve`` renders the same page, which then refreshes from the JSON API."""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

from slurmctl import __version__
from slurmctl.errors import SlurmctlError

ASSETS = Path(__file__).with_name("assets")


def _jinja() -> Any:
    try:
        import jinja2
    except ImportError:
        raise SlurmctlError(
            "the dashboard needs Jinja2", hint="install the server extra: pip install 'slurmctl[server]'"
        ) from None
    return jinja2


@functools.cache
def _template() -> Any:
    jinja2 = _jinja()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ASSETS)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("page.html.j2")


@functools.cache
def _asset(name: str) -> str:
    text = (ASSETS / name).read_text(encoding="utf-8")
    if "</" in text:  # would end the <style>/<script> element early
        raise AssertionError(f"dashboard asset {name} contains '</'")
    return text


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside a <script> element: every ``<``, ``>`` and ``&`` (which
    JSON has only inside strings) becomes its ``\\u`` escape, so no ``</script>`` or ``<!--`` can occur."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(title: str, config: dict[str, Any], data: Any, home: str | None) -> str:
    from markupsafe import Markup

    return str(
        _template().render(
            title=title,
            version=__version__,
            home=home,
            css=Markup(_asset("dash.css")),
            js=Markup(_asset("dash.js")),
            config=Markup(script_json(config)),
            data=Markup(script_json(data)),
        )
    )


def job_page(
    data: dict[str, Any], *, api: str | None = None, refresh_s: float | None = None, home: str | None = None
) -> str:
    """The job dashboard. Without ``api`` it is a standalone file: drill-down shows the tasks
    whose details ``data`` carries; with it, the page fetches any task from ``{api}/tasks/<task>``
    and, while the job runs, ``api`` itself every ``refresh_s`` seconds."""
    job = data["job"]
    title = f"{job.get('name') or 'job'} · {job['id']}"
    return _page(title, {"page": "job", "api": api, "refresh_s": refresh_s}, data, home)


def jobs_page(jobs: list[dict[str, Any]]) -> str:
    """The list of a backend's jobs (``slurmctl serve``'s home page), with each job name's runs."""
    return _page("slurmctl jobs", {"page": "jobs"}, jobs, None)


def write(backend: Any, job_id: str, path: Path) -> dict[str, Any]:
    """Write the job's dashboard to ``path`` (temp file, fsync, rename). Returns what it did:
    ``bytes``, ``tasks``, ``collect_s``, ``render_s``. Raises JobNotFoundError, StorageError,
    SlurmctlError (the file cannot be written)."""
    from slurmctl.dashboard.data import collect
    from slurmctl.fsutil import atomic_write_bytes

    t0 = time.perf_counter()
    data = collect(backend, job_id)
    t1 = time.perf_counter()
    html = job_page(data).encode("utf-8")
    t2 = time.perf_counter()
    try:
        atomic_write_bytes(path, html)
        umask = os.umask(0o022)  # the temp file is private (0600): give the page the usual mode
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
    except OSError as exc:
        raise SlurmctlError(
            f"cannot write {path}: {exc.strerror or exc}", hint="give -o a path in a writable directory"
        ) from None
    return {"bytes": len(html), "tasks": data["job"]["tasks"], "collect_s": t1 - t0, "render_s": t2 - t1}
