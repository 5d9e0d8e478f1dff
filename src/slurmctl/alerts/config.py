"""The ``alerts:`` block: rules, channels, cadence (docs/alerts.md).

It comes from the job file's ``alerts:`` block and from the user's alert file
(``$SLURMCTL_ALERTS``, else ``~/.config/slurmctl/alerts.yaml``), which holds the same keys: the
job's keys win over the file's, key by key (``rules`` rule by rule). Secrets — webhook URLs, SMTP
passwords, PagerDuty routing keys — are never written in either: a channel names an environment
variable (``*_env``) or a file (``*_file``) that holds them, read when a notification is sent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slurmctl.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StallRule(_Strict):
    enabled: bool = True
    factor: float = Field(2.0, gt=0, description="stalled after factor x the p95 task time without progress")
    min_s: float = Field(300.0, gt=0, description="... and never before this many seconds")


class ErrorSpikeRule(_Strict):
    enabled: bool = True
    window_s: float = Field(300.0, gt=0, description="failures counted over this window")
    ratio: float = Field(0.5, gt=0, le=1, description="share of outcomes in the window that failed")
    min_failures: int = Field(10, ge=1, description="failed items (or failed task attempts) at least")


class RateLimitRule(_Strict):
    enabled: bool = True
    ratio: float = Field(0.9, gt=0, le=1, description="share of the limit's tokens taken")
    for_s: float = Field(600.0, gt=0, description="... for this long")


class ResourcesRule(_Strict):
    enabled: bool = True
    disk_ratio: float = Field(0.9, gt=0, le=1, description="the backend root or scratch this full")


class InfrastructureRule(_Strict):
    enabled: bool = True


class Rules(_Strict):
    stall: StallRule = Field(default_factory=StallRule)
    error_spike: ErrorSpikeRule = Field(default_factory=ErrorSpikeRule)
    rate_limit: RateLimitRule = Field(default_factory=RateLimitRule)
    resources: ResourcesRule = Field(default_factory=ResourcesRule)
    infrastructure: InfrastructureRule = Field(default_factory=InfrastructureRule)


class _Channel(_Strict):
    name: str | None = Field(None, description="default: the kind (kind-2, kind-3 for more of one kind)")
    timeout_s: float = Field(10.0, gt=0, description="one attempt's time limit")


def _one_source(value: str | None, env: str | None, file: str | None, what: str, inline: bool) -> None:
    given = [x for x in (value if inline else None, env, file) if x]
    if len(given) != 1:
        how = f"{what}, {what}_env or {what}_file" if inline else f"{what}_env or {what}_file"
        raise ValueError(f"set exactly one of {how}")


class EmailChannel(_Channel):
    kind: Literal["email"]
    host: str = "localhost"
    port: int = Field(25, gt=0, lt=65536)
    starttls: bool = Field(False, description="upgrade the connection with STARTTLS before logging in")
    username: str | None = None
    password_env: str | None = Field(None, description="environment variable holding the SMTP password")
    password_file: str | None = Field(None, description="file holding the SMTP password")
    sender: str = Field("slurmctl@localhost", alias="from")
    to: list[str] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SlackChannel(_Channel):
    kind: Literal["slack"]
    url_env: str | None = Field(None, description="environment variable holding the webhook URL")
    url_file: str | None = Field(None, description="file holding the webhook URL")

    @model_validator(mode="after")
    def _source(self) -> SlackChannel:
        _one_source(None, self.url_env, self.url_file, "url", inline=False)
        return self


class PagerDutyChannel(_Channel):
    kind: Literal["pagerduty"]
    url: str = Field("https://events.pagerduty.com/v2/enqueue", description="Events API v2 endpoint")
    routing_key_env: str | None = None
    routing_key_file: str | None = None

    @model_validator(mode="after")
    def _source(self) -> PagerDutyChannel:
        _one_source(None, self.routing_key_env, self.routing_key_file, "routing_key", inline=False)
        return self


class CommandChannel(_Channel):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1, description="run with the alert as JSON on stdin")


Channel = Annotated[
    EmailChannel | SlackChannel | PagerDutyChannel | CommandChannel, Field(discriminator="kind")
]


class AlertsConfig(_Strict):
    enabled: bool = True
    interval_s: float = Field(30.0, ge=0.1, description="the runner and the watch loop evaluate this often")
    repeat_s: float = Field(3600.0, gt=0, description="a condition still firing is sent again after this")
    resolve_after_s: float = Field(
        300.0, ge=0, description="a condition resolves once it has not held for this long (or the job ended)"
    )
    retries: int = Field(3, ge=1, description="attempts per notification in one evaluation")
    backoff_s: float = Field(1.0, ge=0, description="wait before the 2nd attempt, doubling after")
    rules: Rules = Field(default_factory=Rules)
    channels: list[Channel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> AlertsConfig:
        seen: dict[str, int] = {}
        for ch in self.channels:
            if ch.name is None:
                seen[ch.kind] = seen.get(ch.kind, 0) + 1
                ch.name = ch.kind if seen[ch.kind] == 1 else f"{ch.kind}-{seen[ch.kind]}"
        names = [ch.name for ch in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must differ (found {names})")
        return self


def user_file() -> Path:
    """The user's alert file: ``$SLURMCTL_ALERTS``, else ``~/.config/slurmctl/alerts.yaml``."""
    return Path(os.environ.get("SLURMCTL_ALERTS") or Path.home() / ".config" / "slurmctl" / "alerts.yaml")


def _read_user_file() -> dict[str, Any] | None:
    path = user_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the alert file: {exc}") from exc
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of alert settings (docs/alerts.md)")
    return data


def merged(job_block: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job's ``alerts:`` block over the user's alert file (None: neither exists)."""
    user = _read_user_file()
    if user is None and job_block is None:
        return None
    out = dict(user or {})
    for key, value in (job_block or {}).items():
        if key == "rules" and isinstance(value, dict) and isinstance(out.get("rules"), dict):
            out["rules"] = {**out["rules"], **value}
        else:
            out[key] = value
    return out


def resolve(job_config: dict[str, Any]) -> AlertsConfig | None:
    """The alert settings of a job (its stored config), or None when neither the job file nor the
    user's alert file has any. Raises ConfigError (exit 2) for invalid settings."""
    raw = merged(job_config.get("alerts"))
    if raw is None:
        return None
    try:
        return AlertsConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"alerts.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"invalid alert settings: {problems}", hint=f"see docs/alerts.md (user file: {user_file()})"
        ) from None
