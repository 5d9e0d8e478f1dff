"""The channels against real receivers on 127.0.0.1: an SMTP server (aiosmtpd), an HTTP server,
a command; retries with backoff; a failing channel returns its error (never raises); secrets are
read from the environment or a file and never appear in an error."""

from __future__ import annotations

import sys

from slurmctl.alerts.channels import send
from slurmctl.alerts.config import AlertsConfig
from tests.alert_servers import Auth, free_port, hook_argv, hook_lines, http_server, self_signed, smtp_server

ALERT = {
    "event": "trigger",
    "key": "j1/stall",
    "dedup_key": "slurmctl/j1/stall",
    "job": "j1",
    "condition": "stall",
    "rule": "stall",
    "severity": "critical",
    "summary": "job j1: no progress for 400 s",
    "since": "2026-12-07T22:00:00Z",
    "at": "2026-12-07T22:07:00Z",
    "resolved_at": None,
    "top_error": "3x ValueError: bad <n> [permanent] — fix the handler",
    "command": "slurmctl status j1",
    "host": "node1",
}


def channel(block: dict):
    return AlertsConfig.model_validate({"channels": [block]}).channels[0]


def no_sleep(_s: float) -> None:
    pass


def test_email_reaches_a_real_smtp_server() -> None:
    with smtp_server() as (port, box):
        ch = channel({"kind": "email", "host": "127.0.0.1", "port": port, "to": ["ops@example.org"]})
        assert send(ch, ALERT) is None
    assert len(box.messages) == 1
    m = box.messages[0]
    assert m["Subject"] == "[slurmctl] FIRING stall: job j1"
    assert m["To"] == "ops@example.org" and m["X-Slurmctl-Alert"] == "j1/stall"
    assert box.alerts() == [ALERT]
    body = m.get_payload(decode=True).decode()
    assert "next: slurmctl status j1" in body and "top error: 3x ValueError" in body


def test_email_with_starttls_and_a_login_verifies_the_certificate(tmp_path, monkeypatch) -> None:
    cert, key = self_signed(tmp_path)
    (tmp_path / "pw").write_text("s3cret-PW\n")
    block = {
        "kind": "email",
        "starttls": True,
        "username": "alerts",
        "password_file": str(tmp_path / "pw"),
        "to": ["ops@example.org"],
    }
    with smtp_server(tls=(cert, key), auth=Auth("alerts", "s3cret-PW")) as (port, box):
        ch = channel(block | {"host": "127.0.0.1", "port": port})
        error = send(ch, ALERT, retries=1)  # the certificate is not trusted: refused
        assert error is not None and "CERTIFICATE_VERIFY_FAILED" in error and "s3cret" not in error
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert send(ch, ALERT, retries=1) is None
        (tmp_path / "pw").write_text("wrong")
        error = send(ch, ALERT, retries=1)
        assert error is not None and "535" in error
    assert box.alerts() == [ALERT]


def test_slack_and_pagerduty_webhooks(monkeypatch) -> None:
    with http_server() as (url, posts):
        monkeypatch.setenv("SLACK_URL", f"{url}/slack/T0-SECRET")
        monkeypatch.setenv("PD_KEY", "rk-SECRET")
        slack = channel({"kind": "slack", "url_env": "SLACK_URL"})
        pd = channel({"kind": "pagerduty", "url": f"{url}/pd", "routing_key_env": "PD_KEY"})
        assert send(slack, ALERT) is None
        assert send(pd, ALERT) is None
        assert send(pd, ALERT | {"event": "resolve"}) is None
    (s,) = posts.get("/slack/T0-SECRET")
    assert s["text"].startswith("[slurmctl] FIRING stall: job j1") and s["slurmctl"] == ALERT
    trigger, resolve = posts.get("/pd")
    assert trigger["routing_key"] == "rk-SECRET" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "slurmctl/j1/stall"
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "node1"
    assert resolve == {
        "routing_key": "rk-SECRET",
        "event_action": "resolve",
        "dedup_key": "slurmctl/j1/stall",
    }


def test_a_webhook_failing_twice_is_retried_with_backoff(tmp_path) -> None:
    (tmp_path / "url").write_text("")
    waits: list[float] = []
    with http_server() as (url, posts):
        (tmp_path / "url").write_text(f"{url}/hook\n")
        posts.fail["/hook"] = 2
        ch = channel({"kind": "slack", "url_file": str(tmp_path / "url")})
        assert send(ch, ALERT, retries=3, backoff_s=0.5, sleep=waits.append) is None
        assert len(posts.get("/hook")) == 1 and waits == [0.5, 1.0]
        posts.fail["/hook"] = 5
        error = send(ch, ALERT, retries=3, backoff_s=0.5, sleep=no_sleep)
    assert error == "HTTP 500 Internal Server Error"


def test_failures_are_returned_without_secrets(monkeypatch, tmp_path) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("SLACK_URL", f"http://127.0.0.1:{port}/T0-SECRET")
    error = send(channel({"kind": "slack", "url_env": "SLACK_URL"}), ALERT, sleep=no_sleep)
    assert error is not None and "refused" in error and "SECRET" not in error
    monkeypatch.setenv("SLACK_URL", "not-a-url-T0-SECRET")
    error = send(channel({"kind": "slack", "url_env": "SLACK_URL"}), ALERT, sleep=no_sleep)
    assert error is not None and "SECRET" not in error
    monkeypatch.delenv("SLACK_URL")
    error = send(channel({"kind": "slack", "url_env": "SLACK_URL"}), ALERT, sleep=no_sleep)
    assert error == "channel slack: the environment variable SLACK_URL is not set"
    monkeypatch.setenv("SMTP_PASSWORD", "pw-SECRET")
    email = {"kind": "email", "host": "127.0.0.1", "port": port, "to": ["a@b"], "username": "u"}
    error = send(channel(email | {"password_env": "SMTP_PASSWORD"}), ALERT, sleep=no_sleep)
    assert error is not None and error.startswith(f"SMTP 127.0.0.1:{port}:") and "SECRET" not in error


def test_the_command_hook_gets_the_alert_on_stdin_and_is_timed_out(tmp_path) -> None:
    out = tmp_path / "hook.jsonl"
    assert send(channel({"kind": "command", "argv": hook_argv(out)}), ALERT) is None
    assert hook_lines(out) == [ALERT]
    slow = channel(
        {"kind": "command", "argv": [sys.executable, "-c", "import time; time.sleep(30)"], "timeout_s": 0.5}
    )
    assert send(slow, ALERT, retries=1) == f"{sys.executable}: no exit within 0.5 s (killed)"
    failing = channel({"kind": "command", "argv": [sys.executable, "-c", "import sys; sys.exit('nope')"]})
    assert send(failing, ALERT, retries=1) == f"{sys.executable} exited 1: nope"
    missing = channel({"kind": "command", "argv": ["/nonexistent/hook"]})
    assert send(missing, ALERT, retries=1) == "/nonexistent/hook: cannot run: No such file or directory"
