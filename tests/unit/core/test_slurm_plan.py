"""Submission text and array splitting, without a cluster (the cluster runs in tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurmctl.clusters import apply_profile, resolve
from slurmctl.config import load_config
from slurmctl.coordinator import prepare
from slurmctl.errors import ConfigError
from slurmctl.executors.slurm import SlurmExecutor, array_chunks, array_spec

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "sbatch"


def test_array_chunks_cap_the_index_not_just_the_count():
    chunks = array_chunks(list(range(2500)), 1001)
    assert [(off, len(rel), max(rel)) for off, rel in chunks] == [
        (0, 1001, 1000),
        (1001, 1001, 1000),
        (2002, 498, 497),
    ]
    # resubmitting a scattered few keeps every index below the limit
    chunks = array_chunks([5, 7, 1500, 1600, 2999], 1001)
    assert chunks == [(5, [0, 2]), (1500, [0, 100]), (2999, [0])]


def test_array_spec_compacts_and_throttles():
    assert array_spec([0, 1, 2, 3], None) == "0-3"
    assert array_spec([0, 2, 3, 4, 9], 5) == "0,2-4,9%5"


def _job(tmp_path: Path, executor: str, extra: str = ""):
    (tmp_path / "h.py").write_text("def handle(r, ctx):\n    return r\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(25)))
    (tmp_path / "job.yaml").write_text(
        "name: golden\ninput: {path: in.jsonl}\nhandler: {function: 'h:handle'}\nbatch: {items: 1}\n"
        "resources: {cpus: 2, mem_gb: 1.5, time_min: 30, partition: debug, account: proj, gres: 'gpu:a100:1',"
        " array_throttle: 4, sbatch_extra: ['--exclusive']}\n"
        f"executor: {executor}\n{extra}"
    )
    backend, job = prepare(
        load_config(tmp_path / "job.yaml"), root_override=str(tmp_path / "root"), job_id="golden-1"
    )
    ex = SlurmExecutor(backend, job, client=object())  # no Slurm command may run in this test
    ex._max_array = 10  # the controller's MaxArraySize, as `scontrol show config` would report it
    return ex


def _normalise(text: str, tmp_path: Path) -> str:
    import sys

    return text.replace(str(tmp_path), "<tmp>").replace(sys.executable, "<python>")


def test_array_mode_script_matches_golden(tmp_path):
    ex = _job(tmp_path, "{kind: slurm, mode: array, signal_lead_s: 90}")
    plans = ex.plan(ex.job.task_ids())
    assert [(p["offset"], p["array"]) for p in plans] == [(0, "0-9%4"), (10, "0-9%4"), (20, "0-4%4")]
    got = _normalise(plans[1]["script"], tmp_path)
    assert got == (GOLDEN / "array_chunk.sbatch").read_text()


def test_pilot_mode_script_matches_golden(tmp_path):
    ex = _job(tmp_path, "{kind: slurm, mode: pilot, workers: 3}")
    (plan,) = ex.plan(ex.job.task_ids())
    assert plan["array"] == "0-2%4"
    assert _normalise(plan["script"], tmp_path) == (GOLDEN / "pilot.sbatch").read_text()


def test_user_template_and_its_errors(tmp_path):
    (tmp_path / "t.sbatch").write_text(
        "#!/bin/sh\n#SBATCH --array=${array}\n${sbatch_options}\nexec ${command}\n"
    )
    ex = _job(tmp_path, "{kind: slurm, mode: array, sbatch_template: t.sbatch}")
    script = ex.plan(["t0000000"])[0]["script"]
    assert script.startswith("#!/bin/sh\n#SBATCH --array=0%4\n#SBATCH --cpus-per-task=2\n")
    (tmp_path / "t.sbatch").write_text("#SBATCH --x=${nope}\n")
    with pytest.raises(ConfigError, match=r"\$\{nope\}"):
        ex.plan(["t0000000"])


def test_cluster_profiles(tmp_path, monkeypatch):
    f = tmp_path / "clusters.yaml"
    f.write_text(
        "default: a\nclusters:\n"
        "  a: {partition: batch, account: p1, root: /shared/x}\n"
        "  b: {slurm_bin: /opt/s}\n"
    )
    monkeypatch.setenv("SLURMCTL_CLUSTERS", str(f))
    name, prof = resolve(None)
    assert name == "a" and prof.partition == "batch"
    cfg = {"resources": {"partition": None, "account": "mine"}, "backend": {"kind": "local", "root": None}}
    merged = apply_profile(cfg, prof)
    assert merged["resources"]["partition"] == "batch"
    assert merged["resources"]["account"] == "mine"  # the job wins
    assert merged["backend"]["root"] == "/shared/x"
    with pytest.raises(ConfigError, match="unknown cluster 'c'"):
        resolve("c")
