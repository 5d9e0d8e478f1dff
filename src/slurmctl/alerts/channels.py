"""Where notifications go: email (SMTP), a Slack-compatible webhook, a PagerDuty Events
v2-compatible webhook, a command. Standard library only.

``send`` tries a notification ``retries`` times with a doubling backoff and returns None or the
last error as text; it never raises (a failing channel must not stop the runner). Secrets (the
webhook URL, the SMTP password, the routing key) are read from their environment variable or file
at each send, never stored, and removed from any error text.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from slurmctl.alerts.config import (
    Channel,
    CommandChannel,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
)

log = logging.getLogger("slurmctl.alerts")


class DeliveryError(Exception):
    """One attempt to deliver failed (the message names no secret)."""


def secret(env: str | None, file: str | None, what: str) -> str:
    """The secret held by the environment variable ``env`` or the file ``file``."""
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise DeliveryError(f"{what}: the environment variable {env} is not set")
        return value
    if file:
        try:
            value = Path(file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise DeliveryError(f"{what}: cannot read {file}: {exc.strerror}") from None
        if not value:
            raise DeliveryError(f"{what}: {file} is empty")
        return value
    return ""


def subject(alert: dict[str, Any]) -> str:
    what = "FIRING" if alert["event"] == "trigger" else "RESOLVED"
    return f"[slurmctl] {what} {alert['condition']}: job {alert['job']}"


def text(alert: dict[str, Any]) -> str:
    """The human text of an alert (email body, Slack message)."""
    lines = [subject(alert), "", alert["summary"]]
    lines.append(f"since: {alert['since']}")
    if alert["event"] == "resolve":
        lines.append(f"resolved: {alert['at']}")
    if alert.get("top_error"):
        lines.append(f"top error: {alert['top_error']}")
    lines.append(f"next: {alert['command']}")
    return "\n".join(lines)


def _post(url: str, body: dict[str, Any], timeout_s: float, secrets: list[str]) -> None:
    data = json.dumps(body).encode()
    try:
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        raise DeliveryError(_clean(f"HTTP {exc.code} {exc.reason}", secrets)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DeliveryError(_clean(f"cannot post: {getattr(exc, 'reason', exc)}", secrets)) from None


def _clean(message: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            message = message.replace(s, "<secret>")
    return message


def _email(ch: EmailChannel, alert: dict[str, Any]) -> None:
    password = secret(ch.password_env, ch.password_file, f"channel {ch.name}")
    msg = EmailMessage()
    msg["Subject"] = subject(alert)
    msg["From"] = ch.sender
    msg["To"] = ", ".join(ch.to)
    msg["X-Slurmctl-Alert"] = alert["key"]
    msg.set_content(text(alert) + "\n\n" + json.dumps(alert, indent=2) + "\n")
    try:
        with smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout_s) as smtp:
            if ch.starttls:  # the server's certificate is verified (system CAs, $SSL_CERT_FILE)
                smtp.starttls(context=ssl.create_default_context())
            if ch.username:
                smtp.login(ch.username, password)
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(_clean(f"SMTP {ch.host}:{ch.port}: {exc}", [password])) from None


def _slack(ch: SlackChannel, alert: dict[str, Any]) -> None:
    url = secret(ch.url_env, ch.url_file, f"channel {ch.name}")
    _post(url, {"text": text(alert), "slurmctl": alert}, ch.timeout_s, [url])


def _pagerduty(ch: PagerDutyChannel, alert: dict[str, Any]) -> None:
    key = secret(ch.routing_key_env, ch.routing_key_file, f"channel {ch.name}")
    body: dict[str, Any] = {
        "routing_key": key,
        "event_action": alert["event"],
        "dedup_key": alert["dedup_key"],
    }
    if alert["event"] == "trigger":
        body["payload"] = {
            "summary": alert["summary"][:1024],
            "source": alert["host"],
            "severity": alert["severity"],
            "timestamp": alert["at"],
            "component": alert["job"],
            "group": alert["rule"],
            "custom_details": alert,
        }
    _post(ch.url, body, ch.timeout_s, [key])


def _command(ch: CommandChannel, alert: dict[str, Any]) -> None:
    try:
        p = subprocess.run(
            ch.argv,
            input=json.dumps(alert).encode(),
            capture_output=True,
            timeout=ch.timeout_s,
            close_fds=True,
        )
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"{ch.argv[0]}: no exit within {ch.timeout_s:g} s (killed)") from None
    except OSError as exc:
        raise DeliveryError(f"{ch.argv[0]}: cannot run: {exc.strerror}") from None
    if p.returncode != 0:
        tail = p.stderr.decode(errors="replace").strip()[-200:]
        raise DeliveryError(f"{ch.argv[0]} exited {p.returncode}" + (f": {tail}" if tail else ""))


_SENDERS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "email": _email,
    "slack": _slack,
    "pagerduty": _pagerduty,
    "command": _command,
}


def send(
    ch: Channel,
    alert: dict[str, Any],
    *,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Deliver ``alert`` on ``ch``: up to ``retries`` attempts, waiting ``backoff_s`` x 2^k
    between them. Returns None once delivered, else the last error. Never raises."""
    error = "not tried"
    for attempt in range(retries):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        try:
            _SENDERS[ch.kind](ch, alert)
            return None
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # a bug must not stop the runner either
            error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "alert %s (%s) on channel %s: attempt %d failed: %s",
            alert["key"],
            alert["event"],
            ch.name,
            attempt + 1,
            error,
        )
    return error


def host() -> str:
    return socket.gethostname()
