"""Parsers on output recorded from the real Slurm 22.05 dev cluster (tests/golden/slurm/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmctl.errors import SchedulerQueryError
from slurmctl.slurm.accounting import DEFAULT_SACCT_FIELDS, parse_sacct
from slurmctl.slurm.config import SlurmConfig, parse_show_config
from slurmctl.slurm.jobids import TaskRanges, parse_job_id, parse_submitted_id
from slurmctl.slurm.queue import parse_squeue
from slurmctl.slurm.states import JobState
from slurmctl.slurm.values import parse_duration, parse_exit_code, parse_size, parse_time, parse_tres

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "slurm"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


# ---------------------------------------------------------------- job ids


@pytest.mark.parametrize(
    ("text", "job", "task", "pending", "het", "step", "key"),
    [
        ("123", 123, None, None, None, None, "123"),
        ("16_21", 16, 21, None, None, None, "16_21"),
        ("16_[23-30%3]", 16, None, "23-30%3", None, None, "16_[23-30%3]"),
        ("24_[0-99%10]", 24, None, "0-99%10", None, None, "24_[0-99%10]"),
        ("7_[1,3,5-9:2]", 7, None, "1,3,5-9:2", None, None, "7_[1,3,5-9:2]"),
        ("21+1", 21, None, None, 1, None, "21+1"),
        ("15.batch", 15, None, None, None, "batch", "15"),
        ("23.extern", 23, None, None, None, "extern", "23"),
        ("23.0", 23, None, None, None, "0", "23"),
        ("55_2.batch", 55, 2, None, None, "batch", "55_2"),
        ("21+1.0", 21, None, None, 1, "0", "21+1"),
    ],
)
def test_job_id_forms(text, job, task, pending, het, step, key):
    ref = parse_job_id(text)
    assert ref.job == job
    assert ref.task == task
    assert (str(ref.pending_tasks) if ref.pending_tasks else None) == pending
    assert ref.het_offset == het
    assert ref.step == step
    assert ref.key == key


@pytest.mark.parametrize("bad", ["", "abc", "12_", "12_[5-1]", "12_[x]", "12 13"])
def test_bad_job_ids_raise_with_the_text(bad):
    with pytest.raises(SchedulerQueryError, match="job id"):
        parse_job_id(bad)


def test_task_ranges_expand_count_and_membership():
    r = TaskRanges.parse("[1,3,5-9:2%4]")
    assert list(r) == [1, 3, 5, 7, 9]
    assert len(r) == 5
    assert 7 in r and 6 not in r
    assert r.throttle == 4
    big = TaskRanges.parse("0-999999%10")
    assert len(big) == 1_000_000 and 999_999 in big and 1_000_000 not in big


def test_sbatch_parsable_forms():
    assert parse_submitted_id(golden("sbatch_parsable.txt")) == "61"
    assert parse_submitted_id(golden("sbatch_parsable_cluster.txt")) == "62"  # "62;dev"
    with pytest.raises(SchedulerQueryError):
        parse_submitted_id("sbatch: error: something\n")


# ---------------------------------------------------------------- squeue


def test_squeue_live_array_rows():
    rows = parse_squeue(golden("squeue_array_live.txt"))
    by_key = {r.ref.key: r for r in rows}
    assert by_key["61_3"].state is JobState.COMPLETED
    assert by_key["61_3"].raw_id == 65
    pending = by_key["61_[5-12%2]"]
    assert pending.state is JobState.PENDING
    assert pending.reason == "JobArrayTaskLimit"
    assert list(pending.ref.pending_tasks) == list(range(5, 13))
    assert pending.start is None  # "N/A"
    assert pending.time_limit_seconds is None  # UNLIMITED
    assert by_key["61_1"].elapsed_seconds == 3.0  # "0:03"


def test_squeue_het_held_cancelled_and_names():
    rows = parse_squeue(golden("squeue_pending_het_held.txt"))
    by_key = {r.ref.key: r for r in rows}
    assert by_key["21+0"].ref.het_offset == 0 and by_key["21+1"].raw_id == 22
    assert by_key["24_[0-99%10]"].reason == "JobHeldUser"
    assert by_key["20"].state is JobState.CANCELLED
    assert by_key["15"].state is JobState.TIMEOUT and by_key["15"].name == "gold-timeout"
    assert by_key["1"].time_limit_seconds == 60.0  # srun -t 1 prints as "1:00" (minutes:seconds)


def test_squeue_rejects_wrong_field_count_naming_the_line():
    with pytest.raises(SchedulerQueryError, match=r"squeue:2: expected 12 fields"):
        parse_squeue("\n".join([golden("squeue_array_live.txt").splitlines()[0], "61_1|63|COMPLETED"]))


# ---------------------------------------------------------------- sacct


def test_sacct_steps_states_exit_codes_and_tres():
    rows = parse_sacct(golden("sacct_steps.txt"), DEFAULT_SACCT_FIELDS)
    by_id = {r.job_id: r for r in rows}
    # Timeout: the allocation says TIMEOUT, its batch step CANCELLED by signal 15.
    assert by_id["15"].state is JobState.TIMEOUT
    assert by_id["15.batch"].state is JobState.CANCELLED and by_id["15.batch"].exit_code == (0, 15)
    assert by_id["15"].elapsed_seconds == 82
    # Exit 3 -> FAILED 3:0.
    assert by_id["17"].state is JobState.FAILED and by_id["17"].exit_code == (3, 0)
    # Over memory without cgroups: OverMemoryKill -> FAILED 0:9, the step "CANCELLED by 0".
    assert by_id["18"].state is JobState.FAILED and by_id["18"].exit_code == (0, 9)
    assert by_id["18.batch"].state_text == "CANCELLED by 0"
    assert by_id["18.batch"].state is JobState.CANCELLED
    assert by_id["18.batch"].max_rss_bytes > 64 * 1024 * 1024  # --noconvert: bytes
    # GPU job: gres in AllocTRES.
    assert by_id["19"].alloc_tres["gres/gpu:a100"] == "1"
    # Cancelled before start: Start is "None", NodeList "None assigned".
    assert by_id["20"].start is None and by_id["20"].end is not None
    # Steps 23.batch, 23.0, 23.1 and their parent.
    assert [r.job_id for r in rows if r.ref.job == 23] == ["23", "23.batch", "23.0", "23.1"]
    assert by_id["23.1"].fields["JobName"] == "sleep"
    # A job name containing "|" does not shift fields (we use 0x1f as the delimiter).
    assert by_id["56"].fields["JobName"] == "gold|pipe name"
    assert by_id["56"].state is JobState.COMPLETED
    # Array tasks with their own raw ids, one FAILED.
    assert by_id["55_2"].state is JobState.FAILED and by_id["55_2"].fields["JobIDRaw"] == "59"
    assert by_id["55_2.batch"].ref.task == 2 and by_id["55_2.batch"].is_step


def test_sacct_allocations_only_has_no_steps():
    rows = parse_sacct(golden("sacct_allocations.txt"), DEFAULT_SACCT_FIELDS)
    assert rows and not any(r.is_step for r in rows)
    array16 = [r for r in rows if r.ref.job == 16]
    assert sorted(r.ref.task for r in array16) == list(range(1, 31))


def test_sacct_requeued_and_pending_array():
    rows = parse_sacct(golden("sacct_requeued_pending.txt"), DEFAULT_SACCT_FIELDS)
    states = [(r.job_id, r.state) for r in rows]
    assert ("60", JobState.REQUEUED) in states and ("60", JobState.PENDING) in states
    held = rows[0]
    assert held.ref.pending_tasks is not None and len(held.ref.pending_tasks) == 100
    assert held.start is None and held.end is None  # "Unknown"


def test_sacct_bad_value_names_line_and_field():
    line = golden("sacct_steps.txt").splitlines()[0].split("\x1f")
    line[4] = "zero"  # ExitCode
    with pytest.raises(SchedulerQueryError, match=r"sacct:1: .*field ExitCode"):
        parse_sacct("\x1f".join(line), DEFAULT_SACCT_FIELDS)


# ---------------------------------------------------------------- scontrol show config


def test_show_config_typed_facts():
    cfg = SlurmConfig.from_output(golden("scontrol_show_config.txt"))
    assert cfg.max_array_size == 1001
    assert cfg.max_job_count == 200000
    assert cfg.min_job_age == 300
    assert cfg.message_timeout == 10
    assert cfg.def_mem_per_cpu == 256
    assert cfg.accounting_enabled
    assert cfg.cluster_name == "dev"
    assert cfg.version == "22.05.8"
    assert "gres/gpu:a100" in (cfg.accounting_storage_tres or "")
    raw = parse_show_config(golden("scontrol_show_config.txt"))
    assert raw["SlurmctldHost[0]"] == "vm"
    assert raw["AccountingStorageBackupHost"] == "(null)"


def test_show_config_rejects_other_output():
    with pytest.raises(SchedulerQueryError):
        parse_show_config("slurm_load_ctl_conf error: Unable to contact slurm controller\n")


# ---------------------------------------------------------------- values


def test_values():
    assert parse_time("Unknown") is None and parse_time("None") is None and parse_time("") is None
    assert parse_time("2026-11-23T10:41:08").hour == 10
    assert parse_duration("1-02:03:04") == 93784
    assert parse_duration("00:00.004") == pytest.approx(0.004)
    assert parse_duration("UNLIMITED") is None
    assert parse_duration("30") == 1800  # a bare time limit is minutes
    assert parse_exit_code("0:9") == (0, 9)
    assert parse_size("256M") == 256 << 20 and parse_size("434860032") == 434860032 and parse_size("") is None
    assert parse_tres("billing=1,cpu=1,gres/gpu:a100=1,mem=256M")["mem"] == "256M"
    with pytest.raises(ValueError):
        parse_duration("soon")
    with pytest.raises(ValueError):
        parse_exit_code("9")
