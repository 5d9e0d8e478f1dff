"""Structured logs: the JSON line contract, secrets never written, levels, the terminal format,
``ctx.logger`` carrying the item, and a task log gzipped for publication."""

from __future__ import annotations

import gzip
import io
import json
import logging
import re

import pytest

from slurmctl.errors import ConfigError
from slurmctl.obs import logs

FIELDS = {"ts", "level", "logger", "msg", "job", "task", "attempt", "item", "worker", "host", "slurm_job_id"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def captured(monkeypatch):
    """The root logger configured to JSON lines into a buffer; the context restored after."""
    saved = dict(logs.CONTEXT)
    buf = io.StringIO()
    yield buf
    logs.CONTEXT.clear()
    logs.CONTEXT.update(saved)
    for h in list(logs._installed):
        logging.getLogger().removeHandler(h)
    logs._installed.clear()


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_json_line_carries_the_context(captured):
    logs.configure(logging.INFO, json_lines=True, stream=captured)
    logs.bind(job="j1", task="t0000003", attempt=2, worker="n1:42:slurm77", slurm_job_id="77")
    logging.getLogger("slurmctl.test").info("hello %s", "world")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("slurmctl.test").exception("it failed")
    first, second = lines(captured)
    assert set(first) == FIELDS
    assert TS.match(first["ts"])
    assert first["level"] == "info" and first["msg"] == "hello world" and first["logger"] == "slurmctl.test"
    assert (first["job"], first["task"], first["attempt"], first["item"]) == ("j1", "t0000003", 2, None)
    assert (first["worker"], first["slurm_job_id"]) == ("n1:42:slurm77", "77")
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_secrets_from_the_environment_are_redacted(captured, monkeypatch):
    secrets = {
        "MY_API_KEY": "k-1234567890",
        "SERVICE_SECRET": "s3cr3t-value",
        "GITHUB_TOKEN": "ghp_abcdefabcdef",
        "DB_PASSWORD": "hunter2hunter2",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEJr//////////wEaDEXAMPLE",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PLAIN_SETTING", "visible-value")
    logs.configure(logging.DEBUG, json_lines=True, stream=captured)
    log = logging.getLogger("slurmctl.test")
    log.info("calling with %s", " ".join(secrets.values()))
    log.info("key id AKIAIOSFODNN7EXAMPLE and visible-value")
    try:
        raise RuntimeError(f"auth failed for {secrets['DB_PASSWORD']}")
    except RuntimeError:
        log.exception("request failed with token %s", secrets["GITHUB_TOKEN"])
    text = captured.getvalue()
    for v in secrets.values():
        assert v not in text
    assert "AKIAIOSFODNN7EXAMPLE" not in text
    assert "visible-value" in text  # not a secret's name: kept
    assert text.count(logs.REDACTED) >= 9


def test_secrets_redacted_in_the_terminal_format_too(captured, monkeypatch):
    monkeypatch.setenv("X_TOKEN", "tok-999999")
    logs.configure(logging.INFO, json_lines=False, stream=captured)
    logs.bind(task="t0000001", attempt=1)
    logging.getLogger("slurmctl.test").warning("sent tok-999999")
    out = captured.getvalue()
    assert "tok-999999" not in out and logs.REDACTED in out
    assert "warning" in out and "t0000001 a1" in out and not out.startswith("{")


def test_level_flag_then_env_then_job_file(monkeypatch):
    monkeypatch.delenv(logs.ENV_LEVEL, raising=False)
    assert logs.resolve_level() == logging.INFO
    assert logs.resolve_level(None, "warning") == logging.WARNING
    monkeypatch.setenv(logs.ENV_LEVEL, "debug")
    assert logs.resolve_level(None, "warning") == logging.DEBUG
    assert logs.resolve_level("error", "warning") == logging.ERROR
    with pytest.raises(ConfigError, match="not a log level"):
        logs.resolve_level("loud")


def test_level_filters_lines(captured):
    logs.configure(logging.WARNING, json_lines=True, stream=captured)
    logging.getLogger("slurmctl.test").info("hidden")
    logging.getLogger("slurmctl.test").warning("shown")
    assert [d["msg"] for d in lines(captured)] == ["shown"]


def test_item_logger_fills_the_item(captured):
    class Ctx:
        item_id: int | None = None

    ctx = Ctx()
    logs.configure(logging.INFO, json_lines=True, stream=captured)
    log = logs.ItemLogger(logging.getLogger("slurmctl.handler"), ctx)
    ctx.item_id = 17
    log.info("one")
    ctx.item_id = 18
    log.info("two")
    assert [(d["msg"], d["item"]) for d in lines(captured)] == [("one", 17), ("two", 18)]


def test_task_log_writes_line_by_line_then_gzips(tmp_path, captured, monkeypatch):
    monkeypatch.setenv("SOME_KEY", "abcdef-secret")
    logs.configure(logging.INFO, json_lines=True, stream=captured)
    live = tmp_path / "live" / "t0000000.a1.jsonl"
    tl = logs.TaskLog(live, logging.INFO).install()
    logging.getLogger("slurmctl.worker").info("first abcdef-secret")
    assert json.loads(live.read_text())["msg"] == f"first {logs.REDACTED}"  # visible before the end
    logging.getLogger("other.library").warning("second")
    gz = tl.gzip_to(tmp_path / "a1.log.jsonl.gz")
    logging.getLogger("slurmctl.worker").info("after the close: not in the task log")
    records = logs.read_lines(gz.read_bytes())
    assert [d["msg"] for d in records] == [f"first {logs.REDACTED}", "second"]
    assert gzip.decompress(gz.read_bytes()) == live.read_bytes()


def test_read_lines_drops_a_torn_last_line():
    data = b'{"msg": "a"}\n{"msg": "b"}\n{"msg": "c'
    assert [d["msg"] for d in logs.read_lines(data)] == ["a", "b"]
    assert [d["msg"] for d in logs.read_lines(b"not json\n")] == ["not json"]


def test_file_destination_and_a_bad_path(tmp_path, captured, monkeypatch):
    monkeypatch.setenv("A_PASSWORD", "pw-123456")
    path = tmp_path / "cli.log"
    logs.configure(logging.INFO, json_lines=False, stream=captured, file=path)
    logging.getLogger("slurmctl.test").info("to both pw-123456")
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["msg"] == f"to both {logs.REDACTED}"  # JSON in the file, whatever stderr is
    assert "to both" in captured.getvalue()
    with pytest.raises(ConfigError, match="cannot open the log file"):
        logs.configure(logging.INFO, stream=captured, file=tmp_path / "missing" / "x.log")


def test_result_manifest_schema_2_is_read_and_newer_refused():
    from slurmctl.errors import StateError
    from slurmctl.model.core import Job
    from slurmctl.model.manifests import ResultManifest

    doc = {
        "job_id": "j",
        "task_id": "t0000000",
        "attempt": 1,
        "data_key": "k",
        "data_sha256": "s",
        "data_bytes": 1,
        "rows": 1,
        "items": 1,
        "items_ok": 1,
        "items_failed": 0,
        "first_item": 0,
        "batch_sha256": "b",
        "started_at": 0.0,
        "finished_at": 1.0,
        "handler_seconds": 0.0,
        "worker": "w",
        "log_key": "l",
        "log_sha256": "ls",
        "metrics_key": "m",
        "metrics_sha256": "ms",
    }
    m = ResultManifest.from_json(json.dumps({**doc, "schema_version": 2}))
    assert (m.schema_version, m.log_key, m.metrics_sha256) == (2, "l", "ms")
    assert json.loads(ResultManifest.from_json(json.dumps(doc)).to_json())["schema_version"] == 2
    with pytest.raises(StateError, match="reads up to 2"):
        ResultManifest.from_json(json.dumps({**doc, "schema_version": 3}))
    with pytest.raises(StateError, match="reads up to 1"):  # other documents stay at 1
        Job.from_json(json.dumps({"schema_version": 2}))


def test_a_debug_task_leaves_the_root_level_as_it_found_it(tmp_path, captured):
    """A pilot runs many tasks in one process: one task's debug level must not stay for the next
    (nor open library loggers' debug output into later tasks' logs)."""
    logs.configure(logging.WARNING, json_lines=True, stream=captured)
    before = logging.getLogger().level
    tl = logs.TaskLog(tmp_path / "t.a1.jsonl", logging.DEBUG).install()
    assert logging.getLogger().level == logging.DEBUG
    tl.close()
    assert logging.getLogger().level == before
