"""Smoke checks of the benchmarks in bench/: each runs at a tiny size, exits 0, and prints its ratio lines
and RESULT records. Nothing here asserts a time (the machine is shared); the benchmarks themselves check
that their contenders produced the same output (rows, counts) and exit non-zero if not."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert p.returncode == 0, f"{script} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def results(stdout: str) -> list[dict]:
    records = [
        json.loads(line[len("RESULT ") :]) for line in stdout.splitlines() if line.startswith("RESULT ")
    ]
    return [r for r in records if "contender" in r]  # machine lines (CPUs, load) have none


def ratio_names(stdout: str) -> set[str]:
    return {line.split()[1] for line in stdout.splitlines() if line.startswith("RATIO ")}


def test_partition_vs_split_smoke():
    p = run_bench("partition_vs_split.py", "20000", "--repeat", "2", "--python-scanner")
    assert {
        "partition_vs_split",
        "partition_cpu_vs_split_cpu",
        "partition_copy_vs_split_sync",
        "partition_vs_python_scanner",
    } <= ratio_names(p.stdout)
    by = {r["contender"]: r for r in results(p.stdout)}
    assert {"split", "split+sync", "partition", "partition_copy", "partition_python"} <= set(by)
    assert by["partition"]["records"] == 20000 and by["partition"]["peak_rss_mib"] > 0


def test_worker_overhead_smoke():
    p = run_bench("worker_overhead.py", "3000", "--repeat", "1")
    assert {"worker_vs_bare", "worker_items_per_s_vs_200k", "worker_observability_on_vs_off"} <= ratio_names(
        p.stdout
    )
    by = {r["contender"]: r for r in results(p.stdout)}
    assert by["worker"]["items"] == by["bare"]["items"] == by["worker_observability_off"]["items"] == 3000
    assert by["worker"]["items_per_s"] > 0 and by["worker"]["peak_rss_mib"] > 0
    assert by["worker_observability_on"]["obs_s"]["min"] > 0  # the log and metrics code ran, and was timed


def test_worker_overhead_observability_only_smoke():
    p = run_bench("worker_overhead.py", "2000", "--repeat", "2", "--observability-only")
    assert {"worker_observability_on_vs_off", "worker_observability_on_vs_off_cpu"} <= ratio_names(p.stdout)
    by = {r["contender"]: r for r in results(p.stdout)}
    assert by["worker_observability_on"]["items"] == by["worker_observability_off"]["items"] == 2000
    assert "bare" not in by


def test_snapshot_traffic_smoke():
    p = run_bench("snapshot_traffic.py", "20000", "--items-per-s", "100")
    assert {"segments_vs_full_copy", "segments_vs_rows"} <= ratio_names(p.stdout)
    by = {r["contender"]: r for r in results(p.stdout)}
    assert by["segments"]["snapshots"] == by["full_copy"]["snapshots"] > 1
    # Segments ship each run once; whole copies ship the growing file at every snapshot.
    assert by["segments"]["bytes"] < by["full_copy"]["bytes"]


def test_status_10k_smoke():
    p = run_bench("status_10k.py", "60", "--repeat", "1")
    assert {
        "status_cli_local_vs_0.3s_target",
        "status_cli_local_vs_full_scan_end_to_end",
        "status_cli_aws_vs_2s_target",
        "status_cli_aws_requests_vs_20_target",
        "status_cli_aws_vs_full_scan_end_to_end",
    } <= ratio_names(p.stdout)
    by = {r["contender"]: r for r in results(p.stdout) if "contender" in r}
    assert {"progress_in_process_local", "full_scan_in_process_local", "full_scan_end_to_end_aws"} <= set(by)
    assert 0 < by["status_cli_aws"]["requests"] <= by["full_scan_end_to_end_aws"]["requests"]


def test_scoreboard_benches_smoke():
    """The scoreboard's three benchmarks at toy sizes: ingest checks its totals against the generator's
    ground truth (exit 1 if not), storage and TUI print their figures."""
    p = run_bench("scoreboard_ingest.py", "--jobs", "3000", "--users", "50", "--repeat", "2")
    assert "totals exact: True" in p.stdout and "ratio vs baseline" in p.stdout
    assert p.stdout.count("run ") == 2 and "median of 2" in p.stdout
    bad = subprocess.run(
        [sys.executable, str(BENCH / "scoreboard_ingest.py"), "--repeat", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--repeat" in bad.stderr
    p = run_bench("scoreboard_storage.py", "--jobs", "5000", "--users", "50", "--full-jobs", "500")
    assert "per cluster-month" in p.stdout
    p = run_bench("scoreboard_tui.py", "--users", "200", "--clusters", "2", "--repeat", "2")
    assert "target first paint <= 0.2 s" in p.stdout


def test_bad_size_is_a_clear_error_not_a_traceback():
    p = subprocess.run(
        [sys.executable, str(BENCH / "worker_overhead.py"), "0"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2
    assert "must be positive" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slurm
def test_slurm_vs_submitit_smoke(slurm_cluster):
    if importlib.util.find_spec("submitit") is None:
        pytest.fail(
            "submitit is not installed: pip install submitit==1.5.4 (a dev dependency)", pytrace=False
        )
    p = run_bench("slurm_vs_submitit.py", "600", "3", "--workers", "2", timeout=600)
    names = ratio_names(p.stdout)
    assert "submitit_vs_slurmctl_pilot_W=2_speedup" in names
    assert "submitit_vs_slurmctl_array_speedup" in names
    rows = {r["contender"]: r for r in results(p.stdout)}
    assert rows["submitit"]["client_commands"].get("sbatch") == 1  # the shims saw submitit's submission
    assert rows["slurmctl pilot W=2"]["client_commands"].get("sbatch") == 1


def test_analyze_errors_smoke():
    """20k failed items in 20 signatures: the script checks the groups are exact (exit 1 if not)."""
    p = run_bench("analyze_errors.py", "20000", "--tasks", "40", "--repeat", "1")
    assert {"analyze_vs_json_loads", "analyze_vs_5s_target"} <= ratio_names(p.stdout)
    assert {"analyze", "analyze_wall", "json_loads"} <= {r["contender"] for r in results(p.stdout)}


def test_retry_plan_smoke():
    """20k items in 200 tasks, 1 % failed: the script checks the plan holds exactly the transient items."""
    p = run_bench("retry_plan.py", "20000", "--tasks", "200", "--repeat", "1")
    assert {"plan_vs_read_errors", "plan_record_vs_read_errors", "plan_record_vs_5s_target"} <= ratio_names(
        p.stdout
    )
    assert {"plan", "plan_record", "read_errors"} <= {r["contender"] for r in results(p.stdout)}


def test_retry_roundtrip_smoke():
    """One job per contender: the script checks each retried item 0 once and the output exactly once."""
    p = run_bench("retry_roundtrip.py", "20", "--repeat", "1", "--busy-s", "0.5")
    names = ratio_names(p.stdout)
    assert {f"roundtrip_{c}_vs_submit_one_item" for c in ("idle", "busy", "queued")} <= names
    by = {r["contender"]: r for r in results(p.stdout)}
    assert {"idle", "busy", "queued", "submit_one_item"} <= set(by)
    assert by["idle"]["roundtrip"]["median"] > 0 and by["idle"]["items"] == 20


def test_retry_acceptance_smoke():
    """4,000 items, 1 % failing: the script checks every promise (exit 1 if one is broken)."""
    p = run_bench("retry_acceptance.py", "4000", "--items-per-task", "500", "--base-s", "0.2")
    assert p.stdout.count("CHECK ") == 8 and "error" not in p.stderr
    (r,) = results(p.stdout)
    assert (r["items"], r["transient"], r["permanent"]) == (4000, 20, 20)


def test_aggregate_scale_smoke():
    p = run_bench("aggregate_scale.py", "--tasks", "120", "--rows", "5", "--fan-in", "8", "--processes", "1")
    assert {"slurmctl_vs_fastest_baseline", "slurmctl_vs_polars", "slurmctl_vs_duckdb"} <= ratio_names(
        p.stdout
    )
    by = {r["contender"]: r for r in results(p.stdout)}
    assert set(by) == {"slurmctl", "polars", "duckdb"}
    assert by["slurmctl"]["rows"] == 600 and by["slurmctl"]["levels"] == [15, 2, 1]


def test_dashboard_scale_smoke():
    p = run_bench("dashboard_scale.py", "200", "--repeat", "1", "--no-browser")
    assert {"dashboard_vs_status", "dashboard_vs_analyze_errors"} <= ratio_names(p.stdout)
    by = {r["contender"]: r for r in results(p.stdout)}
    assert by["dashboard"]["file_bytes"] > 0 and by["status"]["tasks"] == 200
