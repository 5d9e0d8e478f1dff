"""Effective configuration: defaults < <root>/config/policy.json < ~/.slurm_scoreboard/config.yaml
< environment ``SLURM_SB_<KEY>`` < flags. Every value is validated; a bad one raises UsageError naming
the source (file and line, variable, or flag) and the expected form.

The standard library has no YAML parser: ``config.yaml`` may use the flat subset this file needs
(``key: value``, ``#`` comments, quoted strings, true/false, numbers, ``[a, b]`` lists); a ``.json``
config is accepted too.
"""

import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from . import layout
from .errors import UsageError
from .schemas import DEFAULT_FAILURE_STATES

# Bloom false-positive rate: only a size/speed knob, the exact id set decides (docs/scoreboard.md).
DEFAULT_BLOOM_FP_RATE = 0.35

DEFAULTS = {
    "root": "",
    "cluster": "",
    "poll_interval_sec": 600,
    "backfill_start": "2000-01-01",
    "backfill_months_per_poll": 1,
    "backfill_sleep_sec": 30.0,
    "failure_states": list(DEFAULT_FAILURE_STATES),
    "count_cancelled_as_failure": False,
    "rate_limit_per_min": 2.0,
    "sacct_timeout_sec": 600.0,
    "sacct_retries": 3,
    "backoff_base_sec": 30.0,
    "lag_sec": 120,
    "overlap_sec": 900,
    "bloom_fp_rate": DEFAULT_BLOOM_FP_RATE,
    "min_jobs_to_show": 3,
    "opt_out": [],
    "rollup_retention_months": 36,
    "home_dir": "/home",
    "min_uid": 1000,
    "sacct": "sacct",
    "stale_lock_sec": 6 * 3600,
}  # type: Dict[str, Any]

_INT = (
    "poll_interval_sec",
    "backfill_months_per_poll",
    "sacct_retries",
    "lag_sec",
    "overlap_sec",
    "min_jobs_to_show",
    "rollup_retention_months",
    "min_uid",
)
_FLOAT = (
    "backfill_sleep_sec",
    "rate_limit_per_min",
    "sacct_timeout_sec",
    "backoff_base_sec",
    "bloom_fp_rate",
    "stale_lock_sec",
)
_BOOL = ("count_cancelled_as_failure",)
_LIST = ("failure_states", "opt_out")
_DATE_RE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


def user_config_path() -> str:
    """Return ``~/.slurm_scoreboard/config.yaml`` (or ``config.json`` when only that exists)."""
    base = os.path.join(os.path.expanduser("~"), ".slurm_scoreboard")
    yaml_path = os.path.join(base, "config.yaml")
    json_path = os.path.join(base, "config.json")
    return json_path if not os.path.exists(yaml_path) and os.path.exists(json_path) else yaml_path


def _scalar(text: str) -> Any:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~", ""):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_flat_yaml(text: str, path: str) -> Dict[str, Tuple[Any, int]]:
    """Return ``{key: (value, line)}`` from the flat YAML subset. Raises UsageError with file:line. Pure."""
    out = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line.strip() == "---":
            continue
        if line[0].isspace() or ":" not in line:
            raise UsageError(
                f"{path}:{lineno}: expected 'key: value' at the start of the line, found {raw.strip()!r}",
                hint="the config is flat: no nesting; lists are written [a, b]",
            )
        key, _, value = line.partition(":")
        value = value.strip()
        if value.startswith("["):
            if not value.endswith("]"):
                raise UsageError(
                    f"{path}:{lineno}: {key.strip()}: a list must close with ']' on the same line"
                )
            inner = value[1:-1].strip()
            parsed = [_scalar(v) for v in inner.split(",")] if inner else []
        else:
            parsed = _scalar(value)
        out[key.strip()] = (parsed, lineno)
    return out


def _coerce(key: str, value: Any, where: str) -> Any:
    def bad(expected: str) -> UsageError:
        return UsageError(f"{where}: {key}: expected {expected}, found {value!r}")

    if key in _BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad("true or false")
    if key in _INT:
        if isinstance(value, bool):
            raise bad("an integer")
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise bad("an integer") from None
        if (
            v < 0
            or (key == "rollup_retention_months" and v < 36)
            or (key == "backfill_months_per_poll" and v < 1)
        ):
            raise bad("a larger integer (retention >= 36 months, months per poll >= 1, others >= 0)")
        return v
    if key in _FLOAT:
        if isinstance(value, bool):
            raise bad("a number")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
        if v <= 0 or (key == "bloom_fp_rate" and not 0.03 <= v < 1):
            raise bad("a positive number (bloom_fp_rate in [0.03, 1))")
        return v
    if key in _LIST:
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value) if v]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of names")
        return [v.strip() for v in value]
    if not isinstance(value, str):
        raise bad("a string")
    if key == "backfill_start" and not _DATE_RE.match(value):
        raise bad("YYYY-MM-DD or YYYY-MM")
    if key == "cluster" and value and value != layout.ALL and not layout.valid_cluster(value):
        raise bad("a cluster name (letters, digits, _ . -)")
    return value


class Config:
    """Resolved settings: ``values[key]`` and ``sources[key]`` (where each value came from)."""

    def __init__(self, values: Dict[str, Any], sources: Dict[str, str]) -> None:
        self.values = values
        self.sources = sources

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def failure_states(self) -> List[str]:
        """Return the state words counted as failures (CANCELLED added when configured)."""
        states = [s.upper() for s in self.values["failure_states"]]
        if self.values["count_cancelled_as_failure"] and "CANCELLED" not in states:
            states.append("CANCELLED")
        return states


def load(
    flags: Optional[Dict[str, Any]] = None,
    environ: Optional[Dict[str, str]] = None,
    config_path: Optional[str] = None,
) -> Config:
    """Return the effective Config. Reads the user config and the root's policy.json.

    Raises UsageError (bad value, with its source) or FormatError-like UsageError for unreadable files.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    values = dict(DEFAULTS)
    sources = {k: "default" for k in DEFAULTS}
    layers = []  # type: List[Tuple[str, Dict[str, Tuple[Any, str]]]]
    path = config_path or user_config_path()
    file_layer = {}
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc}") from exc
        if path.endswith(".json"):
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise UsageError(f"{path}: invalid JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise UsageError(f"{path}: expected a JSON object")
            file_layer = {k: (v, f"{path}") for k, v in data.items()}
        else:
            file_layer = {k: (v, f"{path}:{line}") for k, (v, line) in parse_flat_yaml(text, path).items()}
    env_layer = {}
    for key in DEFAULTS:
        var = "SLURM_SB_" + key.upper()
        if var in environ:
            env_layer[key] = (environ[var], "$" + var)
    flag_layer = {k: (v, "--" + k.replace("_", "-")) for k, v in flags.items()}
    # root first: policy.json lives under it
    root = ""
    for layer in (file_layer, env_layer, flag_layer):
        if "root" in layer:
            root = str(layer["root"][0])
    policy_layer = {}
    if root:
        ppath = layout.policy_file(root)
        if os.path.exists(ppath):
            try:
                with open(ppath, encoding="utf-8") as fh:
                    data = json.load(fh)
            except (OSError, ValueError) as exc:
                raise UsageError(
                    f"{ppath}: cannot read policy: {exc}", hint="fix the JSON or remove the file"
                ) from exc
            if not isinstance(data, dict):
                raise UsageError(f"{ppath}: expected a JSON object")
            policy_layer = {k: (v, ppath) for k, v in data.items()}
    layers = [("policy", policy_layer), ("file", file_layer), ("env", env_layer), ("flags", flag_layer)]
    for _name, layer in layers:
        for key, (value, where) in layer.items():
            if key not in DEFAULTS:
                if _name == "flags":
                    continue
                raise UsageError(
                    f"{where}: unknown setting {key!r}", hint="known: " + ", ".join(sorted(DEFAULTS))
                )
            values[key] = _coerce(key, value, where)
            sources[key] = where
    if values["root"]:
        values["root"] = os.path.abspath(os.path.expanduser(values["root"]))
    return Config(values, sources)


def read_optout(root: str) -> List[str]:
    """Return the usernames in ``<root>/config/optout.txt`` (lower-case; empty when absent)."""
    try:
        with open(layout.optout_file(root), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    return [ln.split("#", 1)[0].strip().lower() for ln in lines if ln.split("#", 1)[0].strip()]
