"""Display-time formatting of raw metric values ("XP"): ``1.23e3 GPU-h``. Stored files keep raw numbers."""

import math

# metric -> (OSRS-style "Skill" title, unit shown after the value)
SKILLS = {
    "jobs": ("Jobs", "jobs"),
    "gpu_jobs": ("GPU Jobs", "jobs"),
    "failed_jobs": ("Failed Jobs", "jobs"),
    "elapsed_hours": ("Wall Hours", "h"),
    "clock_hours": ("CPU Hours", "CPU-h"),
    "gpu_elapsed_hours": ("GPU Wall Hours", "h"),
    "gpu_clock_hours": ("GPU Hours", "GPU-h"),
    "sum_req_mem_mb": ("Memory Requested", "MB"),
    "sum_avg_mem_mb": ("Memory Average", "MB"),
    "sum_max_mem_mb": ("Memory Peak", "MB"),
}  # type: Dict[str, Tuple[str, str]]


def number(value: float) -> str:
    """Return ``value`` with 3 significant digits: ``0``, ``0.5``, ``12.3``, ``999``, ``1.23e3``. Pure.

    From 1000 up (in magnitude) the form is ``<mantissa>e<exponent>`` so every cell has the same width.
    Never raises: NaN and infinities come out as ``nan``, ``inf`` and ``-inf``.
    """
    # The loaders refuse non-finite and non-numeric values; still, a display must never crash on one.
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float
        return "-inf" if value < 0 else "inf"
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return str(v)  # "nan", "inf" or "-inf"
    if v == 0:
        return "0"
    if abs(v) >= 999.5:
        mant, exp = f"{v:.2e}".split("e")
        return f"{mant}e{int(exp)}"
    text = f"{v:.3g}"
    if "e" in text:  # tiny values: keep them short rather than 1.23e-05
        return f"{round(v, 3):.3g}" if abs(v) >= 0.0005 else "<0.001"
    return text


def xp(metric: str, value: float) -> str:
    """Return the humanised value of ``metric`` with its unit, e.g. ``xp("gpu_clock_hours", 1234)`` →
    ``"1.23e3 GPU-h"``. Unknown metrics get no unit. Pure."""
    unit = SKILLS.get(metric, ("", ""))[1]
    text = number(value)
    return f"{text} {unit}" if unit else text


def skill(metric: str) -> str:
    """Return the "Skill" title of ``metric`` (the metric name itself when unknown). Pure."""
    return SKILLS.get(metric, (metric, ""))[0]


def count(n: int, noun: str, plural: str = "") -> str:
    """Return ``"1 file"``, ``"2 files"`` (``plural``: the plural form when not ``noun + "s"``). Pure."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
