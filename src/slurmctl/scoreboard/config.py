"""Effective configuration: defaults < <root>/config/policy.json < ~/.slurm_scoreboard/config.yaml
< environment ``SLURM_SB_<KEY>`` < flags. Every value is validated; a bad one raises UsageError naming
the source (file and line, variable, or flag) and the expected form.

The standard library has no YAML parser: ``config.yaml`` may use the flat subset this file needs
(``key: value``, ``#`` comments, quoted strings, true/false, numbers, ``[a, b]`` lists); a ``.json``
config, or a ``config.yaml`` whose first non-blank character is ``{``, is read as JSON. Files are UTF-8
(a BOM is allowed). ``policy.json`` may hold ``{"clusters": {"<name>": {<setting>: value}}}``: the
effective cluster's section is applied on top of the site-wide keys.
"""

import codecs
import datetime
import json
import math
import os
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import layout
from .errors import FormatError, UsageError
from .schemas import DEFAULT_FAILURE_STATES

# Bloom false-positive rate: only a size/speed knob, the exact id set decides (docs/scoreboard.md).
DEFAULT_BLOOM_FP_RATE = 0.4  # k = 1

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
    # A closed month is read whole once more this long after its end: job records that reached
    # slurmdbd late (slurmctld queues them while slurmdbd is unreachable). 0: never.
    "recheck_after_sec": 2 * 86400,
    "bloom_fp_rate": DEFAULT_BLOOM_FP_RATE,
    "min_jobs_to_show": 3,
    "opt_out": [],
    "rollup_retention_months": 36,
    "home_dir": "/home",
    "min_uid": 1000,
    "sacct": "sacct",
    "stale_lock_sec": 6 * 3600,
}  # type: Dict[str, Any]

_WEEK = 7 * 24 * 3600  # cap of sleeps and timeouts (threading.Timer fails above TIMEOUT_MAX)
# Numeric settings: key -> (whole numbers only, the check of a finite value, what is expected).
_NUMBERS = {
    "poll_interval_sec": (
        True,
        lambda v: 1 <= v <= _WEEK,
        "a whole number of seconds from 1 to 604800 (7 days)",
    ),
    "backfill_months_per_poll": (True, lambda v: 1 <= v <= 1200, "a whole number of months from 1 to 1200"),
    "sacct_retries": (True, lambda v: 0 <= v <= 20, "a whole number of retries from 0 to 20"),
    "lag_sec": (True, lambda v: 0 <= v <= _WEEK, "a whole number of seconds from 0 to 604800 (7 days)"),
    "overlap_sec": (True, lambda v: 0 <= v <= _WEEK, "a whole number of seconds from 0 to 604800 (7 days)"),
    "recheck_after_sec": (
        True,
        lambda v: 0 <= v <= 31 * 86400,
        "a whole number of seconds from 0 (never) to 2678400 (31 days)",
    ),
    "min_jobs_to_show": (True, lambda v: v >= 0, "a whole number of jobs >= 0"),
    "rollup_retention_months": (
        True,
        lambda v: v >= 36,
        "a whole number of months >= 36 (the 365-day window needs the daily sums)",
    ),
    "min_uid": (True, lambda v: 0 <= v <= 2**32 - 1, "a UID from 0 to 4294967295"),
    "backfill_sleep_sec": (
        False,
        lambda v: 0 < v <= _WEEK,
        "a number of seconds > 0 and at most 604800 (7 days)",
    ),
    "rate_limit_per_min": (
        False,
        lambda v: v > 0,
        "a number of sacct calls per minute, finite and > 0 (e.g. 2 or 0.5)",
    ),
    "sacct_timeout_sec": (
        False,
        lambda v: 0 < v <= _WEEK,
        "a number of seconds > 0 and at most 604800 (7 days)",
    ),
    "backoff_base_sec": (
        False,
        lambda v: 0 < v <= _WEEK,
        "a number of seconds > 0 and at most 604800 (7 days)",
    ),
    "bloom_fp_rate": (
        False,
        lambda v: 0.03 <= v < 1,
        "a number from 0.03 up to (not including) 1",
    ),
    "stale_lock_sec": (
        False,
        lambda v: 0 < v <= _WEEK,
        "a number of seconds > 0 and at most 604800 (7 days)",
    ),
}  # type: Dict[str, Tuple[bool, Callable[[float], bool], str]]
_BOOL = ("count_cancelled_as_failure",)
_LIST = ("failure_states", "opt_out")
_OPTIONAL = ("root", "cluster")  # an empty value leaves these unset
_DATE_RE = re.compile(r"^([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Slurm's terminal job states (what failure_states may name); REQUEUED is an earlier run, not an end.
JOB_STATES = (
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
)
# Flags of slurm-sb whose spelling is not "--" + the key with dashes (cli.py).
_FLAG_NAMES = {"rate_limit_per_min": "--rate-limit"}
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t"}


def user_config_path() -> str:
    """Return ``~/.slurm_scoreboard/config.yaml`` (or ``config.json`` when only that exists)."""
    base = os.path.join(os.path.expanduser("~"), ".slurm_scoreboard")
    yaml_path = os.path.join(base, "config.yaml")
    json_path = os.path.join(base, "config.json")
    return json_path if not os.path.exists(yaml_path) and os.path.exists(json_path) else yaml_path


def _scalar(text: str) -> Any:
    t = text.strip()
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


def _token(text: str, i: int, stops: str, where: str) -> Tuple[Any, int]:
    """Return ``(value, end)`` of the scalar at ``text[i:]``: a quoted string ('' is a quote inside
    single quotes; double quotes take the escapes in ``_ESCAPES``), else plain text up to a character
    in ``stops`` or a comment (``#`` at the start or after whitespace). Pure."""
    quote = text[i : i + 1]
    if quote in ("'", '"'):
        out = []
        j = i + 1
        while j < len(text):
            c = text[j]
            if c == quote and quote == "'" and text.startswith("'", j + 1):
                out.append("'")
                j += 2
            elif c == quote:
                return "".join(out), j + 1
            elif c == "\\" and quote == '"':
                if text[j + 1 : j + 2] not in _ESCAPES:
                    raise UsageError(
                        f"{where}: unknown escape {text[j : j + 2]!r} in a double-quoted value",
                        hint="write \\\\ for a backslash, or use single quotes (no escapes)",
                    )
                out.append(_ESCAPES[text[j + 1]])
                j += 2
            else:
                out.append(c)
                j += 1
        raise UsageError(f"{where}: the value has no closing {quote} on this line")
    j = i
    while (
        j < len(text) and text[j] not in stops and not (text[j] == "#" and (j == 0 or text[j - 1].isspace()))
    ):
        j += 1
    return _scalar(text[i:j]), j


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _flow_value(text: str, where: str) -> Tuple[Any, int]:
    """Return ``(value, end)`` of the value after ``key:``: a scalar or a flat ``[a, b]`` list. Pure."""
    i = _skip(text, 0)
    if not text.startswith("[", i):
        return _token(text, i, "", where)
    items = []  # type: List[Any]
    i = _skip(text, i + 1)
    while not text.startswith("]", i):
        start = i
        item, i = _token(text, i, ",[]{}", where)
        i = _skip(text, i)
        if i == start or not (text.startswith(",", i) or text.startswith("]", i)):
            if i >= len(text) or text[i] == "#":
                raise UsageError(f"{where}: a list must close with ']' on the same line")
            raise UsageError(
                f"{where}: malformed list at {text[i:].strip()!r}",
                hint="lists are flat, [a, b]; quote an entry that contains , [ ] { } or #",
            )
        items.append(item)
        i = _skip(text, i + 1) if text.startswith(",", i) else i
    return items, i + 1


def parse_flat_yaml(text: str, path: str) -> Dict[str, Tuple[Any, int]]:
    """Return ``{key: (value, line)}`` from the flat YAML subset. Raises UsageError with file:line. Pure."""
    out = {}  # type: Dict[str, Tuple[Any, int]]
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#") or raw.strip() == "---":
            continue
        key, _, rest = raw.partition(":")
        key = key.strip()
        if raw[0].isspace() or ":" not in raw or not _KEY_RE.match(key):
            raise UsageError(
                f"{path}:{lineno}: expected 'key: value' at the start of the line, found {raw.strip()!r}",
                hint="the config is flat: no nesting; lists are written [a, b]",
            )
        where = f"{path}:{lineno}: {key}"
        value, end = _flow_value(rest, where)
        tail = rest[end:].strip()
        if tail and not tail.startswith("#"):
            raise UsageError(
                f"{where}: unexpected {tail!r} after the value",
                hint="quote a value that contains quotes or ' #'; a comment starts with ' #'",
            )
        if key in out:
            raise UsageError(
                f"{where}: duplicate key (also set on line {out[key][1]})", hint="keep one of the two lines"
            )
        out[key] = (value, lineno)
    return out


def _read_text(path: str) -> str:
    """Return the UTF-8 text of ``path`` (a leading BOM dropped). Raises UsageError naming file and line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UsageError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {col})",
            hint="save the file as UTF-8",
        ) from exc


def _parse_json(text: str, path: str) -> Dict[str, Any]:
    """Return the JSON object in ``text``. Raises UsageError (file:line of a syntax error, duplicate keys)."""

    def pairs(items: List[Tuple[str, Any]]) -> Dict[str, Any]:
        obj = {}  # type: Dict[str, Any]
        for k, v in items:
            if k in obj:
                raise UsageError(f"{path}: duplicate key {k!r}", hint="keep one of the two")
            obj[k] = v
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object {{...}}")
    return data


def _number(value: Any) -> Any:
    """Return ``value`` as an int or float (numeric strings too), or None when it is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    for convert in (int, float):
        try:
            return convert(value)
        except (TypeError, ValueError):
            pass
    return None


def _coerce(key: str, value: Any, where: str) -> Any:
    def bad(expected: str, hint: Optional[str] = None) -> UsageError:
        found = "an empty value" if value is None else repr(value)
        return UsageError(f"{where}: {key}: expected {expected}, found {found}", hint=hint)

    if key in _BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad("true or false")
    if key in _NUMBERS:
        whole, ok, expected = _NUMBERS[key]
        v = _number(value)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            raise bad(expected)
        if whole and v != int(v):
            raise bad(expected, hint=f"{key} takes whole numbers; a fraction is not rounded")
        v = int(v) if whole else float(v)
        if not ok(v):
            raise bad(expected)
        return v
    if key in _LIST:
        if isinstance(value, str):  # environment: "A,B" or "[A, B]"
            text = value.strip()
            text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            value = [v for v in re.split(r"[,\s]+", text) if v]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise bad("a list of names, [a, b]")
        value = [v.strip() for v in value]
        if key == "failure_states":
            unknown = [v for v in value if v.upper() not in JOB_STATES]
            if unknown:
                raise UsageError(
                    f"{where}: failure_states: {unknown[0]!r} is not a terminal Slurm job state",
                    hint="allowed (any case): " + ", ".join(JOB_STATES),
                )
            value = [v.upper() for v in value]
        return value
    if key == "home_dir" and value is None:
        return ""  # `home_dir:` with no value: discovery off, as with ""
    if not isinstance(value, str):
        raise bad("a string")
    if key == "backfill_start" and not _real_date(value):
        raise bad("YYYY-MM-DD or YYYY-MM naming a real calendar date, e.g. 2019-01-01")
    if key == "cluster" and value and value != layout.ALL and not layout.valid_cluster(value):
        raise bad("a cluster name (letters, digits, _ . -)")
    return value


def _real_date(text: str) -> bool:
    """True for ``YYYY-MM-DD`` or ``YYYY-MM`` naming a real calendar day or month. Pure."""
    m = _DATE_RE.match(text)
    try:
        return bool(m) and bool(datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)))
    except ValueError:
        return False


def _unset(key: str, value: Any) -> bool:
    """True for an empty value of an optional string setting (root, cluster): it leaves the setting unset."""
    return key in _OPTIONAL and (value is None or (isinstance(value, str) and not value.strip()))


def _last(layers: List[Dict[str, Tuple[Any, str]]], key: str) -> Any:
    """Return the validated value of ``key`` from the highest layer that sets it, "" when none does."""
    out = ""
    for layer in layers:
        if key in layer and not _unset(key, layer[key][0]):
            out = _coerce(key, *layer[key])
    return out


def _policy_layers(path: str, cluster: str) -> List[Dict[str, Tuple[Any, str]]]:
    """Return the layers of ``policy.json``: its site-wide keys, then its ``clusters.<cluster>`` section
    when there is one. Empty when the file is absent. Raises UsageError for an unreadable file."""
    if not os.path.exists(path):
        return []
    data = _parse_json(_read_text(path), path)
    sections = data.pop("clusters", {})
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise UsageError(
            f"{path}: clusters: expected an object of per-cluster objects, found {sections!r}",
            hint='e.g. "clusters": {"hammer": {"rate_limit_per_min": 1}}',
        )
    layers = [{k: (v, path) for k, v in data.items()}]
    section = sections.get(cluster) if layout.valid_cluster(cluster) else None  # not for ALL
    if section:
        where = f"{path} clusters.{cluster}"
        for key in ("root", "cluster", "clusters"):
            if key in section:
                raise UsageError(f"{where}: {key} cannot be set per cluster")
        layers.append({k: (v, where) for k, v in section.items()})
    return layers


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
    warn: Optional[Callable[[str], None]] = None,
) -> Config:
    """Return the effective Config. Reads the user config and the root's policy.json.

    Raises UsageError (bad value or unreadable file, with its source). ``warn`` is for readers (the
    TUI): when given, a bad policy.json entry (or the whole file when it cannot be read) is passed to it
    and ignored, so the lower layer's value or the default is used; the poller leaves it None: an error.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    path = config_path or user_config_path()
    file_layer = {}  # type: Dict[str, Tuple[Any, str]]
    if os.path.exists(path):
        text = _read_text(path)
        if path.endswith(".json") or text.lstrip().startswith("{"):
            file_layer = {k: (v, path) for k, v in _parse_json(text, path).items()}
        else:
            file_layer = {k: (v, f"{path}:{line}") for k, (v, line) in parse_flat_yaml(text, path).items()}
    env_layer = {}
    for key in DEFAULTS:
        var = "SLURM_SB_" + key.upper()
        if var in environ:
            env_layer[key] = (environ[var], "$" + var)
    flag_layer = {k: (v, _FLAG_NAMES.get(k, "--" + k.replace("_", "-"))) for k, v in flags.items()}
    user_layers = [file_layer, env_layer, flag_layer]
    # root and cluster first: policy.json lives under the root and may have a section for the cluster
    root = _last(user_layers, "root")
    root = os.path.abspath(os.path.expanduser(root)) if root else ""
    policy_layers = []  # type: List[Dict[str, Tuple[Any, str]]]
    if root:
        try:
            policy_layers = _policy_layers(layout.policy_file(root), _last(user_layers, "cluster"))
        except UsageError as exc:
            if warn is None:
                raise
            warn(f"{exc.message} (file ignored)")
    values = dict(DEFAULTS)
    sources = {k: "default" for k in DEFAULTS}
    layers = [(layer, warn) for layer in policy_layers] + [(layer, None) for layer in user_layers]
    for layer, on_error in layers:
        for key, (value, where) in layer.items():
            if layer is flag_layer and key not in DEFAULTS:
                continue
            try:
                if key not in DEFAULTS:
                    raise UsageError(
                        f"{where}: unknown setting {key!r}", hint="known: " + ", ".join(sorted(DEFAULTS))
                    )
                if _unset(key, value):
                    continue
                values[key] = _coerce(key, value, where)
                sources[key] = where
            except UsageError as exc:
                if on_error is None:
                    raise
                on_error(f"{exc.message} (ignored)")
    if values["root"]:
        values["root"] = os.path.abspath(os.path.expanduser(values["root"]))
    return Config(values, sources)


def read_optout(root: str) -> List[str]:
    """Return the usernames in ``<root>/config/optout.txt`` (lower-case; empty when absent)."""
    path = layout.optout_file(root)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError as exc:  # not OSError: ignoring the list would show opted-out users
        raise FormatError(
            f"{path}: not UTF-8 text: {exc}", hint="save it as UTF-8, one user name a line"
        ) from exc
    except FileNotFoundError:
        return []
    except OSError as exc:  # a directory, no permission: failing closed, as for bad bytes
        raise FormatError(
            f"{path}: cannot read the opt-out list: {exc}",
            hint="make it a readable file, one name a line (the poller stops rather than show these users)",
        ) from exc
    return [ln.split("#", 1)[0].strip().lower() for ln in lines if ln.split("#", 1)[0].strip()]
