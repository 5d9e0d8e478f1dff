"""Converters for sacct's field values: memory sizes, ReqMem, GPU counts from AllocTRES, states, users.

Slurm prints memory with 1024-based suffixes (K, M, G, T, P); with ``--noconvert`` MaxRSS/AveRSS are
bare byte counts and ReqMem keeps the unit it was requested in (``256M``). Everything here returns exact
integer bytes; base-10 MB is computed only for the public files (``schemas.to_metrics``).
"""

import datetime
from typing import Optional, Tuple

# Slurm's own unit base: K, M, G, T, P are powers of 1024 (src/common/slurm_protocol_api.c, convert_num_unit).
_MULT = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_MULT.update({k.lower(): v for k, v in list(_MULT.items())})


def mem_bytes(text: str) -> Optional[int]:
    """Return the bytes of a sacct memory value (``3297280``, ``1024K``, ``1.5G``, ``""`` → 0).

    Returns None when ``text`` is not a memory value. Pure.
    """
    s = text.strip()
    if not s:
        return 0
    unit = s[-1]
    mult = _MULT.get(unit)
    num = s[:-1] if mult else s
    if not mult:
        mult = 1
    try:
        if "." in num:
            value = float(num)
            if value < 0 or value != value:
                return None
            return round(value * mult)
        n = int(num)
    except ValueError:
        return None
    return n * mult if n >= 0 else None


def req_mem_bytes(text: str, alloc_cpus: int, nnodes: int) -> Optional[int]:
    """Return the job's total requested memory in bytes from a ReqMem value. Pure.

    Slurm >= 21.08 prints the job total with no suffix letter (``256M``); older releases append ``c``
    (per allocated CPU: ``4000Mc`` times AllocCPUS) or ``n`` (per node: ``64Gn`` times NNodes). Returns None
    when ``text`` is not a ReqMem value.
    """
    s = text.strip()
    if not s:
        return 0
    kind = s[-1]
    if kind in "cn" and len(s) > 1:
        base = mem_bytes(s[:-1])
        if base is None:
            return None
        return base * (max(alloc_cpus, 1) if kind == "c" else max(nnodes, 1))
    return mem_bytes(s)


def gpu_count(tres: str) -> Optional[int]:
    """Return the number of GPUs in an AllocTRES value; None when a GPU token is malformed. Pure.

    Real sacct lists a typed GPU twice, ``gres/gpu:a100=1`` *and* ``gres/gpu=1``, for ONE GPU: the
    untyped total wins when present; otherwise the typed counts are summed (a site that does not track
    the untyped TRES).
    """
    if "gres/gpu" not in tres:
        return 0
    total = None  # type: Optional[int]
    typed = 0
    for tok in tres.split(","):
        if not tok.startswith("gres/gpu"):
            continue
        name, sep, value = tok.partition("=")
        if not sep:
            return None
        try:
            n = int(value)
        except ValueError:
            return None
        if name == "gres/gpu":
            total = n
        elif name.startswith("gres/gpu:"):
            typed += n
    return total if total is not None else typed


def state_word(state: str) -> str:
    """Return the state without its detail: ``CANCELLED by 12345`` → ``CANCELLED``. Pure."""
    return state.split(" ", 1)[0].rstrip("+").upper()


def month_second(end: str) -> int:
    """Return the seconds from the start of End's month to ``YYYY-MM-DDTHH:MM:SS``. Pure.

    Raises ValueError when the time of day is not numeric. A day up to 31 gives < 2**22.
    """
    return (int(end[8:10]) - 1) * 86400 + int(end[11:13]) * 3600 + int(end[14:16]) * 60 + int(end[17:19])


def run_key(job_id: int, end: str) -> int:
    """Return the dedupe key of one earlier run of a requeued job: its JobIDRaw and End, as one int. Pure.

    Runs of one job share the JobIDRaw and differ in End (a run ends before the next one starts); the
    key is unique within End's month: ``job_id << 22 | seconds into the month``.
    """
    return job_id << 22 | month_second(end)


def normalize_user(name: str) -> str:
    """Return the username lower-cased, any ``@realm`` stripped: ``Alice@EXAMPLE.ORG`` → ``alice``. Pure."""
    return name.strip().split("@", 1)[0].lower()


def month_bounds(month: str) -> Tuple[str, str]:
    """Return sacct -S/-E values covering ``YYYY-MM`` inclusively: first second to last second. Pure.

    The end is the next month's start minus one second because sacct treats both ends as inclusive.
    """
    y, m = int(month[:4]), int(month[5:7])
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    last = datetime.datetime(ny, nm, 1) - datetime.timedelta(seconds=1)
    return f"{y:04d}-{m:02d}-01T00:00:00", last.strftime("%Y-%m-%dT%H:%M:%S")


def next_month(month: str) -> str:
    """Return the month after ``YYYY-MM``. Pure."""
    y, m = int(month[:4]), int(month[5:7])
    return f"{y + 1:04d}-01" if m == 12 else f"{y:04d}-{m + 1:02d}"


def month_index(month: str) -> int:
    """Return ``year*12 + month-1`` so months can be compared and subtracted. Pure."""
    return int(month[:4]) * 12 + int(month[5:7]) - 1
