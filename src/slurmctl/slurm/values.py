"""Field values as Slurm prints them: times, durations, exit codes, sizes, TRES lists.

Every parser is pure and returns None for Slurm's spellings of "no value" ("Unknown", "None",
"N/A", "(null)", "" ...) instead of raising, because those appear in ordinary output (a pending
job's Start is "Unknown", a cancelled-before-start job's Start is "None").
"""

from __future__ import annotations

import re
from datetime import datetime

NO_VALUE = frozenset({"", "unknown", "none", "n/a", "(null)", "invalid", "none assigned"})
UNLIMITED = frozenset({"unlimited", "infinite", "partition_limit"})

_DURATION = re.compile(r"^(?:(?P<days>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)$")
_MINUTES_ONLY = re.compile(r"^\d+$")
_SIZE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>[KMGTP]?)(?:[cn])?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def is_no_value(text: str | None) -> bool:
    """True for None and Slurm's placeholder spellings. Pure."""
    return text is None or text.strip().lower() in NO_VALUE


def parse_time(text: str | None) -> datetime | None:
    """Return a timezone-aware datetime for "2026-11-23T10:41:08", None for "Unknown"/"None"/"".

    Slurm prints local time without an offset (we pin SLURM_TIME_FORMAT=standard); the result
    carries the local offset. Raises ValueError for anything else that is not ISO-8601.
    """
    if is_no_value(text):
        return None
    assert text is not None
    return datetime.fromisoformat(text.strip()).astimezone()


def parse_duration(text: str | None) -> float | None:
    """Return seconds for "[D-]HH:MM:SS", "MM:SS", "MM:SS.mmm" (TotalCPU) or bare minutes (time limits).

    None for no value and for "UNLIMITED"/"INFINITE"/"Partition_Limit". Raises ValueError otherwise.
    """
    if is_no_value(text):
        return None
    assert text is not None
    value = text.strip()
    if value.lower() in UNLIMITED:
        return None
    if _MINUTES_ONLY.match(value):
        return float(int(value) * 60)
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"not a Slurm duration: {value!r}")
    days = int(m.group("days") or 0)
    hours = int(m.group("h") or 0)
    return days * 86400 + hours * 3600 + int(m.group("m")) * 60 + float(m.group("s"))


def parse_exit_code(text: str | None) -> tuple[int, int] | None:
    """Return (exit status, signal) for "3:0" / "0:9"; None for no value. Raises ValueError otherwise."""
    if is_no_value(text):
        return None
    assert text is not None
    code, sep, signal = text.strip().partition(":")
    if not sep or not code.isdigit() or not signal.isdigit():
        raise ValueError(f"not a Slurm exit code: {text!r}")
    return int(code), int(signal)


def parse_size(text: str | None) -> int | None:
    """Return bytes for "256M", "4G", "3239936" (sacct --noconvert prints MaxRSS in bytes), "64Mc".

    A bare number is bytes. None for no value. Raises ValueError otherwise.
    """
    if is_no_value(text):
        return None
    assert text is not None
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"not a Slurm size: {text!r}")
    return int(float(m.group("num")) * _UNITS[m.group("unit").upper()])


def parse_tres(text: str | None) -> dict[str, str]:
    """Return {"cpu": "1", "mem": "256M", "gres/gpu:a100": "1", ...} from a TRES list; {} for no value."""
    if is_no_value(text):
        return {}
    assert text is not None
    out: dict[str, str] = {}
    for item in text.strip().split(","):
        name, sep, value = item.partition("=")
        if sep and name:
            out[name.strip()] = value.strip()
    return out


def parse_int(text: str | None) -> int | None:
    """Return an int for "42"; None for no value or "N/A". Raises ValueError otherwise."""
    if is_no_value(text):
        return None
    assert text is not None
    return int(text.strip())
