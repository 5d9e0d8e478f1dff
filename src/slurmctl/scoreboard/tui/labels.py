"""Names the TUI shows for metrics and windows; XP formatting comes from ``scoreboard.humanize``.

The leaderboard files store raw numbers (hours, job counts); humanising happens only at display time.
"""

from .. import humanize
from ..schemas import TUI_METRICS, WINDOW_ALIASES

# Order matters: ``m`` cycles through the metrics in this order, ``w`` through the windows.
METRICS = tuple(TUI_METRICS)
WINDOWS = ("alltime", "30d", "365d")  # the TUI's spellings (flags, keys); files use rolling-30d etc.

WINDOW_TITLES = {"alltime": "All time", "30d": "Last 30 days", "365d": "Last 365 days"}  # type: Dict[str, str]


def file_window(window: str) -> str:
    """Return the window name used in file paths (``rolling-30d``) for a TUI window (``30d``). Pure."""
    return WINDOW_ALIASES.get(window, window)


def skill_name(metric: str) -> str:
    """Return the OSRS-style "Skill" title for ``metric`` (the metric itself if unknown). Pure."""
    return humanize.skill(metric)


def unit(metric: str) -> str:
    """Return the unit suffix shown after XP values of ``metric`` ("" if unknown). Pure."""
    return humanize.SKILLS.get(metric, ("", ""))[1]


def format_xp(value: float, metric: str) -> str:
    """Return the XP cell text for ``value`` of ``metric``, e.g. ``1.23e3 GPU-h``. Pure."""
    return humanize.xp(metric, value)
