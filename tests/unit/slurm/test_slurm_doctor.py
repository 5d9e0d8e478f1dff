"""Doctor checks that need no cluster: commands on PATH, MaxArraySize, scratch space."""

from __future__ import annotations

from pathlib import Path

from slurmctl.slurm.config import SlurmConfig
from slurmctl.slurm.doctor import Severity, check_commands, check_max_array_size, check_scratch

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "slurm"


def test_missing_commands_are_errors_with_a_hint(tmp_path):
    (tmp_path / "sbatch").write_text("#!/bin/sh\n")
    (tmp_path / "sbatch").chmod(0o755)
    findings = {f.check: f for f in check_commands(("sbatch", "sacct"), path=str(tmp_path))}
    assert findings["command:sbatch"].ok
    assert findings["command:sacct"].severity is Severity.ERROR
    assert "PATH" in findings["command:sacct"].hint


def test_max_array_size_from_recorded_config():
    config = SlurmConfig.from_output((GOLDEN / "scontrol_show_config.txt").read_text())
    ok = check_max_array_size(config, wanted_tasks=1_000_000)
    assert ok.ok and "1001" in ok.message and "1000 array submission" in ok.message
    small = SlurmConfig.from_output("MaxArraySize            = 101\n")
    assert check_max_array_size(small).severity is Severity.WARNING


def test_scratch(tmp_path):
    assert check_scratch(tmp_path, min_free_bytes=1).ok
    assert check_scratch(tmp_path, min_free_bytes=1 << 62).severity is Severity.WARNING
    assert check_scratch(tmp_path / "missing").severity is Severity.ERROR
