"""Units: memory suffixes (Slurm's 1024 base), ReqMem forms, GPU TRES, states, users, months, humanise."""

import pytest
import sbhelpers  # noqa: F401  (puts src on sys.path)

from slurmctl.scoreboard import humanize, units
from slurmctl.scoreboard.schemas import to_metrics


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", 0),
        ("0", 0),
        ("3297280", 3297280),  # --noconvert: bare bytes
        ("1024K", 1024 * 1024),
        ("1K", 1024),
        ("1M", 1024**2),
        ("1G", 1024**3),
        ("1T", 1024**4),
        ("1.5G", 1610612736),
        ("2048k", 2048 * 1024),
        ("12Q", None),
        ("abc", None),
        ("-5", None),
    ],
)
def test_mem_bytes(text, expected):
    assert units.mem_bytes(text) == expected


def test_plan_examples_in_base_10_mb_after_slurm_base_conversion():
    # The plan's "1024K -> 1.024 MB" assumed K=1000; Slurm's K is 1024 bytes, so 1024K is 1.048576 MB.
    assert to_metrics([0] * 9 + [units.mem_bytes("1024K")])["sum_max_mem_mb"] == 1.048576
    assert to_metrics([0] * 9 + [units.mem_bytes("1G")])["sum_max_mem_mb"] == 1073.741824


@pytest.mark.parametrize(
    "text,cpus,nodes,expected",
    [
        ("4000Mc", 8, 1, 4000 * 1024**2 * 8),  # old: per CPU
        ("64Gn", 8, 2, 64 * 1024**3 * 2),  # old: per node
        ("256M", 8, 2, 256 * 1024**2),  # >= 21.08: the job's total, no suffix letter
        ("2G", 1, 1, 2 * 1024**3),
        ("", 4, 1, 0),
        ("0n", 4, 1, 0),
        ("xyzc", 4, 1, None),
    ],
)
def test_req_mem(text, cpus, nodes, expected):
    assert units.req_mem_bytes(text, cpus, nodes) == expected


@pytest.mark.parametrize(
    "tres,expected",
    [
        ("billing=1,cpu=1,mem=256M,node=1", 0),
        ("cpu=1,gres/gpu=4,node=1", 4),
        ("cpu=1,gres/gpu:a100=1,gres/gpu=1,node=1", 1),  # real sacct: ONE typed GPU is listed twice
        ("gres/gpu:a100=2,gres/gpu=2", 2),
        ("gres/gpu:a100=2,gres/gpu:v100=1", 3),  # typed only (site without the untyped TRES): summed
        ("gres/gpu:a100=2,gres/gpu=1", 1),  # the plan expected 3; the untyped total is authoritative
        ("gres/gpu=x", None),
        ("gres/gpumem=16G,cpu=1", None),
    ],
)
def test_gpu_count(tres, expected):
    assert units.gpu_count(tres) == expected


def test_state_and_user_normalisation():
    assert units.state_word("CANCELLED by 12345") == "CANCELLED"
    assert units.state_word("COMPLETED") == "COMPLETED"
    assert units.normalize_user("Alice@EXAMPLE.ORG") == "alice"
    assert units.normalize_user(" BOB ") == "bob"


def test_month_bounds_are_inclusive_and_cover_leap_february():
    assert units.month_bounds("2024-02") == ("2024-02-01T00:00:00", "2024-02-29T23:59:59")
    assert units.month_bounds("2026-12") == ("2026-12-01T00:00:00", "2026-12-31T23:59:59")
    assert units.next_month("2026-12") == "2027-01"


@pytest.mark.parametrize(
    "metric,value,text",
    [
        ("gpu_clock_hours", 1234.0, "1.23e3 GPU-h"),
        ("clock_hours", 999.0, "999 CPU-h"),
        ("clock_hours", 12.34, "12.3 CPU-h"),
        ("failed_jobs", 0, "0 jobs"),
        ("sum_max_mem_mb", 1.5e6, "1.50e6 MB"),  # 3 significant digits: fixed width
        ("elapsed_hours", 0.5, "0.5 h"),
    ],
)
def test_humanize_xp(metric, value, text):
    assert humanize.xp(metric, value) == text
