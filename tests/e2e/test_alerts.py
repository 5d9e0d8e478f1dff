"""Alerts end to end, with real receivers on 127.0.0.1 (aiosmtpd, an HTTP server, a command hook):

- a local job whose handler fails 20 items and then hangs (an error spike, then a stall) raises
  exactly one alert per condition on every channel, then one resolve each once it ends;
- 1,000 failing tasks, looked at by racing evaluators as they fail, raise one alert, not 1,000;
- ``slurmctl alerts check`` exits 12 while a condition fires, 0 once it resolved; ``alerts list``
  shows the deliveries; no secret reaches a log, the alert record or an output.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

from slurmctl.alerts.config import resolve
from slurmctl.alerts.evaluate import Evaluator
from slurmctl.coordinator import load_job
from slurmctl.lifecycle import Lifecycle, job_status
from slurmctl.storage.local import local_backend
from tests.alert_servers import hook_argv, hook_lines, http_server, smtp_server
from tests.e2e.cli import slurmctl, write_job

HANDLER = """
import pathlib, time

def handle(record, ctx):
    n = record["n"]
    if n < 20:
        raise ValueError(f"bad record {n}")
    if n == 20:
        gate = pathlib.Path(record["gate"])
        while not gate.exists():
            time.sleep(0.05)
    return {"n": n}
"""

SLACK_SECRET = "T0K3N-SLACK-SECRET"
PD_SECRET = "rk-PD-SECRET"


def channels_yaml(smtp_port: int, url: str, hook: Path) -> str:
    return (
        "  channels:\n"
        f"    - {{kind: email, host: 127.0.0.1, port: {smtp_port}, to: [ops@example.org], from: s@x.org}}\n"
        "    - {kind: slack, url_env: TEST_SLACK_URL}\n"
        f"    - {{kind: pagerduty, url: '{url}/pd', routing_key_env: TEST_PD_KEY}}\n"
        f"    - {{kind: command, argv: {json.dumps(hook_argv(hook))}}}\n"
    )


def wait_for(what, timeout: float = 60.0, show=lambda: None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what.__doc__ or what}; {show()}")


def runner_gone(pid: int) -> bool:
    """the runner has exited"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def by_channel(box, posts, hook: Path) -> dict[str, list[tuple[str, str]]]:
    """(condition, event) of everything each receiver got, in arrival order."""
    pd = [(p["dedup_key"].rsplit("/", 1)[1], p["event_action"]) for p in posts.get("/pd")]
    return {
        "email": [(a["condition"], a["event"]) for a in box.alerts()],
        "slack": [
            (p["slurmctl"]["condition"], p["slurmctl"]["event"]) for p in posts.get(f"/slack/{SLACK_SECRET}")
        ],
        "pagerduty": pd,
        "command": [(a["condition"], a["event"]) for a in hook_lines(hook)],
    }


def test_stall_and_error_spike_alert_once_per_channel_then_resolve(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gate = tmp_path / "gate"
    hook = tmp_path / "hook.jsonl"
    (tmp_path / "h.py").write_text(HANDLER)
    with open(tmp_path / "in.jsonl", "w") as f:
        for i in range(40):
            f.write(json.dumps({"n": i, "gate": str(gate)}) + "\n")
    with smtp_server() as (smtp_port, box), http_server() as (url, posts):
        job = write_job(
            tmp_path,
            "name: alerting\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
            "batch: {items: 40}\nretry: {max_attempts: 1, items: false}\n"
            "executor: {kind: local, max_parallel: 1, lease_s: 3}\n"
            "alerts:\n  interval_s: 0.3\n  resolve_after_s: 3\n  backoff_s: 0.1\n"
            "  rules:\n    stall: {min_s: 5}\n    error_spike: {window_s: 30, ratio: 0.5, min_failures: 10}\n"
            + channels_yaml(smtp_port, url, hook),
        )
        env = {"TEST_SLACK_URL": f"{url}/slack/{SLACK_SECRET}", "TEST_PD_KEY": PD_SECRET}
        r = slurmctl("submit", str(job), root=root, env=env)
        assert r.code == 0, r.err
        job_id = r.out.strip().splitlines()[-1]

        def both_fired():
            """a trigger of each condition on every channel"""
            seen = by_channel(box, posts, hook)
            want = {("error_spike", "trigger"), ("stall", "trigger")}
            return all(want <= set(v) for v in seen.values())

        wait_for(both_fired, show=lambda: by_channel(box, posts, hook))
        r = slurmctl("alerts", "check", job_id, root=root, env=env)
        assert r.code == 12, r.out + r.err  # firing, and already notified: nothing sent again
        assert "FIRING error_spike" in r.out and "FIRING stall" in r.out and " sent " not in r.out
        gate.write_text("go")
        backend = local_backend(root)
        wait_for(
            lambda: job_status(backend, job_id).state.value == "succeeded",
            show=lambda: job_status(backend, job_id),
        )
        pid = job_status(backend, job_id).runner_pid
        wait_for(lambda: runner_gone(pid))

        def both_resolved():
            """a resolve of each condition on every channel"""
            seen = by_channel(box, posts, hook)
            return all(len(v) == 4 for v in seen.values())

        wait_for(both_resolved, show=lambda: by_channel(box, posts, hook))
        time.sleep(1.0)  # nothing more arrives
        seen = by_channel(box, posts, hook)
        pd_posts = posts.get("/pd")
    for name, got in seen.items():
        assert sorted(got) == [
            ("error_spike", "resolve"),
            ("error_spike", "trigger"),
            ("stall", "resolve"),
            ("stall", "trigger"),
        ], name
        for cond in ("error_spike", "stall"):
            assert got.index((cond, "trigger")) < got.index((cond, "resolve")), name
    mails = {(a["condition"], a["event"]): a for a in box.alerts()}
    spike = mails[("error_spike", "trigger")]
    assert spike["job"] == job_id and re.search(r" (\d+) of \1 item\(s\) handled failed", spike["summary"])
    assert spike["command"] == f"slurmctl analyze-errors {job_id}" and spike["since"].endswith("Z")
    assert mails[("stall", "trigger")]["summary"].startswith(f"job {job_id}: no progress for ")
    assert all(p["routing_key"] == PD_SECRET for p in pd_posts)
    # no secret in the runner's log, the alert record, or `alerts list`
    log = (root / "jobs" / job_id / "logs" / "runner.log").read_text()
    record = (root / "state" / "alerts" / job_id / "alerts.json").read_text()
    listed = slurmctl("alerts", "list", job_id, "--json", root=root)
    assert listed.code == 0, listed.err
    for text in (log, record, listed.out):
        assert SLACK_SECRET not in text and PD_SECRET not in text
    conds = json.loads(listed.out)["conditions"]
    assert {k: c["state"] for k, c in conds.items()} == {"error_spike": "resolved", "stall": "resolved"}
    r = slurmctl("alerts", "check", job_id, root=root, env=env)
    assert r.code == 0 and r.out.strip() == f"{job_id}: ok", r.out + r.err


def test_a_thousand_failing_tasks_raise_one_alert(tmp_path: Path) -> None:
    root = tmp_path / "root"
    hook = tmp_path / "hook.jsonl"
    (tmp_path / "h.py").write_text("def handle(record, ctx):\n    return record\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(1000)))
    with http_server() as (url, posts):
        job = write_job(
            tmp_path,
            "name: storm\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n"
            "batch: {items: 1}\nretry: {max_attempts: 3}\n"
            "alerts:\n  rules:\n    error_spike: {window_s: 600, min_failures: 10}\n"
            "  channels:\n    - {kind: slack, url_env: TEST_SLACK_URL}\n"
            f"    - {{kind: command, argv: {json.dumps(hook_argv(hook))}}}\n",
        )
        os.environ["TEST_SLACK_URL"] = f"{url}/slack/{SLACK_SECRET}"
        try:
            r = slurmctl("submit", str(job), "--dry-run", root=root)  # partitioned, no worker runs
            assert r.code == 0, r.err
            job_id = r.out.strip().splitlines()[-1]
            backend = local_backend(root)
            config = load_job(backend, job_id).config
            cfg = resolve(config)
            assert cfg is not None
            lc = Lifecycle.of(backend, job_id, config)
            ids = [f"t{i:07d}" for i in range(1000)]
            lc.queue(ids)
            errors: list[BaseException] = []

            def look() -> None:
                try:
                    Evaluator(backend, job_id, cfg, config).run_once()
                except BaseException as exc:  # reported below
                    errors.append(exc)

            statuses = lc.tasks()
            for start in range(0, 1000, 100):
                # one progress write per group and one sync, as the lifecycle's bulk moves
                with backend.deferred_sync(), lc._batched():
                    for st in statuses[start : start + 100]:
                        lc.start_failed(st.task_id, st, "worker pid 4242 exited 1 before claiming the task")
                racers = [threading.Thread(target=look) for _ in range(3)]  # evaluators racing
                for t in racers:
                    t.start()
                for t in racers:
                    t.join()
            assert errors == []
            slack = posts.get(f"/slack/{SLACK_SECRET}")
            assert [(p["slurmctl"]["condition"], p["slurmctl"]["event"]) for p in slack] == [
                ("error_spike", "trigger")
            ]
            assert [(a["condition"], a["event"]) for a in hook_lines(hook)] == [("error_spike", "trigger")]
            alert = slack[0]["slurmctl"]
            assert "task attempt(s) failed, 0 task(s) succeeded" in alert["summary"]
            top = "100x exit:1: worker pid <n> exited <n> before claiming the task"
            assert alert["top_error"].startswith(top)
            r = slurmctl("alerts", "check", "--all", root=root)
            assert r.code == 12 and f"{job_id}: FIRING error_spike" in r.out, r.out + r.err
            r = slurmctl("alerts", "list", job_id, root=root)
            assert r.code == 0 and "FIRING   error_spike" in r.out and "slack: trigger sent" in r.out, r.out
            r = slurmctl("cancel", job_id, "--yes", root=root)
            assert r.code == 0, r.err
            r = slurmctl("alerts", "check", "--all", root=root)  # the job ended: its alert resolves
            assert r.code == 0 and f"{job_id}: sent resolve error_spike on slack" in r.out, r.out + r.err
            assert len(posts.get(f"/slack/{SLACK_SECRET}")) == 2 and len(hook_lines(hook)) == 2
            r = slurmctl("alerts", "check", "--all", root=root)  # nothing live, nothing firing
            assert r.code == 0 and r.out == "", r.out + r.err
        finally:
            del os.environ["TEST_SLACK_URL"]


def test_alerts_check_refuses_bad_input(tmp_path: Path) -> None:
    root = tmp_path / "root"
    r = slurmctl("alerts", "check", root=root)
    assert r.code == 2 and "name the jobs to check, or --all" in r.err
    r = slurmctl("alerts", "check", "nope", root=root)
    assert r.code == 5 and "no job 'nope'" in r.err
    r = slurmctl("alerts", "list", "nope", root=root)
    assert r.code == 5
    (tmp_path / "h.py").write_text("def handle(record, ctx):\n    return record\n")
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')
    job = write_job(tmp_path, "name: quiet\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\n")
    r = slurmctl("submit", str(job), "--dry-run", root=root)
    job_id = r.out.strip().splitlines()[-1]
    user = tmp_path / "alerts.yaml"
    user.write_text("channels: [{kind: slack}]\n")  # no url_env / url_file
    r = slurmctl("alerts", "check", job_id, root=root, env={"SLURMCTL_ALERTS": str(user)})
    assert (
        r.code == 2
        and "alerts.channels.0.slack: Value error, set exactly one of url_env or url_file" in r.err
    )
    assert str(user) in r.err
    user.write_text("enabled: false\n")
    r = slurmctl("alerts", "check", job_id, root=root, env={"SLURMCTL_ALERTS": str(user)})
    assert r.code == 0 and r.out == f"{job_id}: alerts are off (alerts.enabled: false)\n", r.out + r.err
    user.write_text("- not a mapping\n")
    r = slurmctl("alerts", "check", job_id, root=root, env={"SLURMCTL_ALERTS": str(user)})
    assert r.code == 2 and "expected a mapping of alert settings" in r.err
