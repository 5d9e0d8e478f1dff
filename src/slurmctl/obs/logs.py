"""Structured logs: one JSON object per line (or a readable line on a terminal), every line stamped
with where it was written — job, task, attempt, item, worker, host, Slurm job id — and no secret.

Every component logs through the standard ``logging`` module; :func:`configure` installs the
formatter on the root logger once per process (the CLI, the worker, the local runner), and
:func:`bind` sets the context the lines carry (the worker binds job, task and attempt per task).
A task's own log (``TaskLog``) is a third destination beside stderr and a file: JSON lines written
while the task runs to a *live* file (under the job root when the backend is a shared directory, so
``slurmctl logs --follow`` reads it from a login node), then gzipped and stored beside the task's
results before its ``.done`` (docs/observability.md, "Logs and metrics").

Stdlib only, imported by the worker: it must stay cheap to import.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}
ENV_LEVEL = "SLURMCTL_LOG_LEVEL"
ENV_FILE = "SLURMCTL_LOG_FILE"

# The context every line carries; the worker binds job/task/attempt per task (one task at a time
# per process: a pilot runs its tasks one after another).
CONTEXT: dict[str, Any] = {
    "job": None,
    "task": None,
    "attempt": None,
    "worker": None,
    "host": socket.gethostname(),
    "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
}


def bind(**fields: Any) -> None:
    """Set context fields (``None`` clears one) for every line logged from now on."""
    CONTEXT.update(fields)


def level_name(levelno: int) -> str:
    """``debug|info|warning|error`` of a logging level (CRITICAL counts as error)."""
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


def resolve_level(flag: str | None = None, job: str | None = None) -> int:
    """The level: the ``--log-level`` flag, else ``$SLURMCTL_LOG_LEVEL``, else the job file's
    ``logging.level``, else info. Raises ConfigError for a name that is not a level."""
    for source, value in (
        ("--log-level", flag),
        (ENV_LEVEL, os.environ.get(ENV_LEVEL)),
        ("logging.level", job),
    ):
        if value:
            level = LEVELS.get(value.strip().lower())
            if level is None:
                from slurmctl.errors import ConfigError

                raise ConfigError(
                    f"{source}: {value!r} is not a log level", hint=f"use one of {', '.join(LEVELS)}"
                )
            return level
    return logging.INFO


# -- secrets -----------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
# AWS access key ids have a fixed shape: redacted wherever they appear, from the environment or not.
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
REDACTED = "[redacted]"


class Redactor:
    """Replaces the values of secret-looking environment variables (names matching KEY, SECRET,
    TOKEN, PASSWORD, CREDENTIAL, AUTH: AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...) and AWS
    access key ids in text. The values are read when it is made (``configure`` makes one)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 4}
        # Longest first: a secret that contains another is replaced whole.
        self.values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for v in self.values:
            if v in text:
                text = text.replace(v, REDACTED)
        if "AKIA" in text or "ASIA" in text:
            text = _AWS_KEY_ID.sub(REDACTED, text)
        return text


# -- formatters --------------------------------------------------------------------------------


def iso_ms(t: float) -> str:
    """ISO-8601 UTC with milliseconds: ``2026-12-07T23:05:01.123Z``."""
    ms = int(t * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def record_dict(record: logging.LogRecord, redact: Redactor) -> dict[str, Any]:
    """The JSON object of one log line (the contract in docs/observability.md)."""
    ctx = CONTEXT
    out: dict[str, Any] = {
        "ts": iso_ms(record.created),
        "level": level_name(record.levelno),
        "logger": record.name,
        "msg": redact(record.getMessage()),
        "job": getattr(record, "job", ctx["job"]),
        "task": getattr(record, "task", ctx["task"]),
        "attempt": getattr(record, "attempt", ctx["attempt"]),
        "item": getattr(record, "item", None),
        "worker": ctx["worker"],
        "host": ctx["host"],
        "slurm_job_id": ctx["slurm_job_id"],
    }
    if record.exc_info:
        out["exc"] = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        out["exc"] = redact(record.exc_text)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``record_dict``)."""

    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_dict(record, self.redact), ensure_ascii=False, default=str)


def human_line(d: dict[str, Any]) -> str:
    """A log line as a person reads it: ``23:05:01.123 info  t0000003 a1 #17 slurmctl.worker: msg``."""
    where = " ".join(
        p
        for p in (
            d.get("task") or d.get("job") or "",
            f"a{d['attempt']}" if d.get("attempt") else "",
            f"#{d['item']}" if d.get("item") is not None else "",
        )
        if p
    )
    ts = str(d.get("ts", ""))[11:23]
    where = where + " " if where else ""
    line = f"{ts} {d.get('level', ''):<7} {where}{d.get('logger', '')}: {d.get('msg', '')}"
    if d.get("exc"):
        line += "\n" + str(d["exc"])
    return line


class HumanFormatter(logging.Formatter):
    """The terminal's format: the same fields as the JSON, on one readable line."""

    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return human_line(record_dict(record, self.redact))


_installed: list[logging.Handler] = []


def configure(
    level: int = logging.INFO,
    *,
    json_lines: bool | None = None,
    file: str | os.PathLike[str] | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Install slurmctl's handlers on the root logger (replacing the ones a previous call
    installed): stderr (JSON, or readable lines when stderr is a terminal and ``json_lines`` is
    not forced) and, with ``file`` or ``$SLURMCTL_LOG_FILE``, JSON lines appended to that file.
    Raises ConfigError if that file cannot be opened."""
    root = logging.getLogger()
    for h in _installed:
        root.removeHandler(h)
        with contextlib.suppress(Exception):
            h.close() if isinstance(h, logging.FileHandler) else None
    _installed.clear()
    redact = Redactor()
    stream = stream if stream is not None else sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    err = logging.StreamHandler(stream)
    err.setFormatter(JsonFormatter(redact) if json_lines else HumanFormatter(redact))
    _installed.append(err)
    path = file or os.environ.get(ENV_FILE)
    if path:
        try:
            fh = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            from slurmctl.errors import ConfigError

            raise ConfigError(
                f"cannot open the log file {path}: {exc.strerror}", hint="--log-file / $SLURMCTL_LOG_FILE"
            ) from None
        fh.setFormatter(JsonFormatter(redact))
        _installed.append(fh)
    for h in _installed:
        root.addHandler(h)
    root.setLevel(level)


# -- a task's own log --------------------------------------------------------------------------


class TaskLog(logging.Handler):
    """The log of one task attempt: every line logged in this process while it is installed
    (the worker's, the handler's through ``ctx.logger``, libraries'), as JSON lines flushed to
    ``live`` line by line (so a follower sees them at once), then gzipped for publication."""

    def __init__(self, live: Path, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.live = live
        live.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] | None = open(live, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.setFormatter(JsonFormatter())
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        f = self._f
        if f is None:
            return
        try:
            f.write(self.format(record) + "\n")
            f.flush()
            self.lines += 1
        except Exception:  # a full disk must not fail the task over a log line
            self.handleError(record)

    def install(self) -> TaskLog:
        root = logging.getLogger()
        root.addHandler(self)
        self._root_level: int | None = root.level
        if root.level > self.level:  # the task log's level wins for this task
            root.setLevel(self.level)
        return self

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        if getattr(self, "_root_level", None) is not None:  # the next task (a pilot's) starts as before
            root.setLevel(self._root_level)
            self._root_level = None
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
        super().close()

    def gzip_to(self, dest: Path) -> Path:
        """Close the live file and write its gzip to ``dest``, a scratch file to store with
        ``put_file`` (which makes the stored copy durable). Returns ``dest``."""
        import gzip
        import shutil

        self.close()
        with open(self.live, "rb") as src, gzip.GzipFile(dest, mode="wb", compresslevel=6, mtime=0) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
        return dest


def read_lines(data: bytes) -> list[dict[str, Any]]:
    """The records of a log (gzipped or not); a line that is not a JSON object is kept as a
    message of its own (``{"msg": line}``), a torn last line of a live log is dropped."""
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    out: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # a live log's line being written
    for raw in lines:
        if not raw.strip():
            continue
        try:
            d = json.loads(raw)
        except ValueError:
            d = None
        out.append(d if isinstance(d, dict) else {"msg": raw.decode("utf-8", "replace")})
    return out


class ItemLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.logger``: a logger whose lines carry the item in hand (``ctx.item_id``)."""

    def __init__(self, logger: logging.Logger, ctx: Any) -> None:
        super().__init__(logger, {})
        self.ctx = ctx

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("item", self.ctx.item_id)
        kwargs["extra"] = extra
        return msg, kwargs
