"""Alerts when things break: the backend root gone (moved away) raises infrastructure/backend on
the channels, resolved once it is back; a channel that cannot be reached makes `alerts check` exit
13 with the error, and the next look after the backoff delivers it (exit 12)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from slurmctl.alerts.config import resolve
from slurmctl.alerts.evaluate import Evaluator
from slurmctl.coordinator import load_job
from slurmctl.errors import StorageError
from slurmctl.storage.local import local_backend
from tests.alert_servers import free_port, hook_argv, hook_lines, http_server
from tests.e2e.cli import slurmctl, write_job


def dry_job(tmp: Path, alerts: str) -> tuple[Path, str]:
    root = tmp / "root"
    (tmp / "h.py").write_text("def handle(record, ctx):\n    return record\n")
    (tmp / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(4)))
    job = write_job(tmp, f"name: out\ninput: {{path: in.jsonl}}\nhandler: {{function: 'h:handle'}}\n{alerts}")
    r = slurmctl("submit", str(job), "--dry-run", root=root)  # partitioned, nothing runs
    assert r.code == 0, r.err
    return root, r.out.strip().splitlines()[-1]


def test_the_backend_gone_and_back(tmp_path: Path) -> None:
    hook = tmp_path / "hook.jsonl"
    root, job_id = dry_job(
        tmp_path, f"alerts:\n  channels: [{{kind: command, argv: {json.dumps(hook_argv(hook))}}}]\n"
    )
    backend = local_backend(root)
    config = load_job(backend, job_id).config
    cfg = resolve(config)
    assert cfg is not None
    ev = Evaluator(backend, job_id, cfg, config)
    assert ev.run_once().firing == []
    root.rename(tmp_path / "moved")
    for _ in range(3):  # one alert, however many looks
        with pytest.raises(StorageError, match=f"job {job_id} vanished from local:"):
            ev.run_once()
    (alert,) = hook_lines(hook)
    assert alert["condition"] == "infrastructure/backend" and alert["event"] == "trigger"
    assert "vanished" in alert["summary"] and alert["command"].startswith("slurmctl doctor")
    (tmp_path / "moved").rename(root)
    report = ev.run_once()
    assert report.firing == [] and report.sent == [("infrastructure/backend", "command", "resolve")]
    assert [a["event"] for a in hook_lines(hook)] == ["trigger", "resolve"]


def test_an_unreachable_channel_exits_13_then_delivers(tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet
    root, job_id = dry_job(
        tmp_path,
        "alerts:\n  backoff_s: 0.1\n  rules: {resources: {disk_ratio: 0.0001}}\n"
        "  channels: [{kind: slack, url_env: TEST_HOOK_URL}]\n",
    )
    env = {"TEST_HOOK_URL": f"http://127.0.0.1:{port}/hook"}
    r = slurmctl("alerts", "check", job_id, root=root, env=env)
    assert r.code == 13, r.out + r.err
    assert r.out.count(f"{job_id}: NOT DELIVERED disk/backend on slack: cannot post:") == 1, r.out
    assert "FIRING disk/backend" in r.out
    with http_server() as (url, posts):
        env = {"TEST_HOOK_URL": f"{url}/hook"}
        time.sleep(2.0)  # the first retry waits 2 s (backoff_s, at least 1 s, x 2)
        r = slurmctl("alerts", "check", job_id, root=root, env=env)
        assert r.code == 12, r.out + r.err
        assert f"{job_id}: sent trigger disk/backend on slack" in r.out
        got = sorted(p["slurmctl"]["condition"] for p in posts.get("/hook"))
        assert got == ["disk/backend", "disk/scratch"]
    r = slurmctl("alerts", "list", job_id, root=root)
    assert "slack: trigger sent" in r.out


def test_a_saturated_rate_limit_from_its_bucket_record(tmp_path: Path) -> None:
    """Real limiter, real bucket records: a worker taking every token of a 40/s limit for more than
    for_s raises rate_limit/api once; when it stops (and hands its lease back) the alert resolves."""
    from slurmctl.ratelimit.runtime import limits_for

    hook = tmp_path / "hook.jsonl"
    root, job_id = dry_job(
        tmp_path,
        "limits: {api: {rate: 40, burst: 1}}\n"
        "alerts:\n  resolve_after_s: 0.5\n"
        "  rules: {rate_limit: {ratio: 0.9, for_s: 1.5}, stall: {enabled: false}}\n"
        f"  channels: [{{kind: command, argv: {json.dumps(hook_argv(hook))}}}]\n",
    )
    backend = local_backend(root)
    config = load_job(backend, job_id).config
    cfg = resolve(config)
    assert cfg is not None
    api = limits_for(backend, job_id, config)["api"]
    ev = Evaluator(backend, job_id, cfg, config)

    def run(seconds: float) -> list[str]:
        fired = []
        end = time.monotonic() + seconds
        next_look = 0.0
        while time.monotonic() < end:
            api.acquire()
            if time.monotonic() >= next_look:
                fired += [k for k, _ in ev.run_once().firing]
                next_look = time.monotonic() + 0.1
        return fired

    assert "rate_limit/api" in run(3.0)  # every token
    api.close()
    end = time.monotonic() + 30
    while ev.run_once().firing and time.monotonic() < end:  # idle: for_s later it resolves
        time.sleep(0.1)
    events = [(a["condition"], a["event"]) for a in hook_lines(hook)]
    assert events == [("rate_limit/api", "trigger"), ("rate_limit/api", "resolve")]
    assert "rate limit api (40/s) saturated" in hook_lines(hook)[0]["summary"]
