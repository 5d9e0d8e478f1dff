"""``aggregate.where: slurm`` without a cluster: a fake Slurm client that runs each submitted array
script with bash, element by element (so the rendered script and ``node_main`` really run), and
answers squeue from what they did. The output is byte-identical to the local merge; one sbatch per
level; only nodes that are not valid are submitted; a failed node is named and a re-run resumes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from slurmctl.aggregate import Settings, aggregate
from slurmctl.aggregate import plan as plans
from slurmctl.aggregate.node_main import main as node_main
from slurmctl.aggregate.slurm import merge_resources
from slurmctl.aggregate.synthetic import publish_job
from slurmctl.config.models import AggregateConfig
from slurmctl.errors import SchedulerError
from slurmctl.slurm.jobids import TaskRanges, parse_job_id
from slurmctl.slurm.states import JobState
from slurmctl.storage import keys
from slurmctl.storage.local import local_backend

CONFIG = {
    "handler": {"python_path": []},
    "resources": {"cpus": 1, "mem_gb": 2.0, "time_min": 30, "partition": "debug"},
    "aggregate": {"where": "slurm", "fan_in": 8, "resources": {"mem_gb": 0.5, "time_min": None}},
    "executor": {"kind": "slurm", "poll_min_s": 0.01, "poll_max_s": 0.05},
}


class FakeSlurm:
    """sbatch runs the script now, every element with bash; squeue reports their ends."""

    def __init__(self, max_array_size: int = 1001) -> None:
        self.calls: Counter[str] = Counter()
        self.scripts: list[str] = []
        self.states: dict[str, dict[int, JobState]] = {}
        self.max_array_size = max_array_size

    def sbatch(self, *, script_text: str) -> str:
        self.calls["sbatch"] += 1
        self.scripts.append(script_text)
        job = str(1000 + len(self.scripts))
        array = re.search(r"^#SBATCH --array=(\S+)$", script_text, re.M).group(1)  # type: ignore[union-attr]
        log = re.search(r"^#SBATCH --output=(\S+)$", script_text, re.M).group(1)  # type: ignore[union-attr]
        self.states[job] = {}
        for i in TaskRanges.parse(array.split("%")[0]):
            path = Path(log.replace("%A", job).replace("%a", str(i)))
            with open(path, "ab") as out:
                rc = subprocess.run(
                    ["bash", "-s"],
                    input=script_text.encode(),
                    stdout=out,
                    stderr=out,
                    env={**os.environ, "SLURM_ARRAY_TASK_ID": str(i)},
                    check=False,
                ).returncode
            self.states[job][i] = JobState.COMPLETED if rc == 0 else JobState.FAILED
        return job

    def squeue(self, job_ids, *, all_states: bool = True):
        self.calls["squeue"] += 1
        return [
            SimpleNamespace(ref=parse_job_id(f"{j}_{i}"), state=s)
            for j in job_ids
            for i, s in self.states[str(j)].items()
        ]

    def config(self):
        self.calls["scontrol"] += 1
        return SimpleNamespace(max_array_size=self.max_array_size)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published(tmp_path: Path, name: str, tasks: int = 70) -> Path:
    root = tmp_path / name
    publish_job(local_backend(root, fsync=False), "j", tasks, 3, config=CONFIG)
    return root


@pytest.mark.parametrize("fmt", ["parquet", "sqlite"])
def test_slurm_levels_give_the_local_output_one_sbatch_per_level(tmp_path, fmt):
    local_root, slurm_root = published(tmp_path, "local"), published(tmp_path, "slurm")
    local = aggregate(
        local_backend(local_root), "j", tmp_path / f"local.{fmt}", settings=Settings(fan_in=8, processes=2)
    )
    fake = FakeSlurm()
    settings = Settings.of_job(CONFIG)
    out = tmp_path / f"slurm.{fmt}"
    m = aggregate(local_backend(slurm_root), "j", out, settings=settings, client=fake)  # type: ignore[arg-type]
    assert m.levels == local.levels == [9, 2, 1] and m.nodes_run == 12
    assert sha(out) == sha(tmp_path / f"local.{fmt}") == m.output_sha256 == local.output_sha256
    assert fake.calls == Counter(sbatch=3, squeue=3, scontrol=1)  # one sbatch and one poll per level
    assert [re.search(r"--array=(\S+)", s).group(1) for s in fake.scripts] == ["0-8", "0-1", "0"]  # type: ignore[union-attr]
    # The merge array's resources: aggregate.resources over the job's.
    assert "#SBATCH --mem=512M\n#SBATCH --time=30\n#SBATCH --partition=debug" in fake.scripts[0]
    assert " --output " not in fake.scripts[0] and f" --output {out}" in fake.scripts[2]
    # A re-run submits nothing: every node is valid.
    again = FakeSlurm()
    assert aggregate(local_backend(slurm_root), "j", out, settings=settings, client=again).nodes_run == 0  # type: ignore[arg-type]
    assert again.calls["sbatch"] == 0


def test_a_failed_node_is_named_and_a_rerun_submits_only_what_is_not_done(tmp_path):
    root = published(tmp_path, "slurm")
    backend = local_backend(root)
    data = backend.objects.local_path(keys.result_data("j", "t0000013", 1))
    good = data.read_bytes()
    data.write_bytes(good.replace(b'"r39"', b'"R39"'))  # damaged: its sha256 no longer matches
    settings = Settings.of_job(CONFIG)
    fake = FakeSlurm()
    with pytest.raises(SchedulerError) as e:
        aggregate(backend, "j", tmp_path / "out.parquet", settings=settings, client=fake)  # type: ignore[arg-type]
    msg = str(e.value)
    assert "merge level 0: 1 of 9 node(s) failed on Slurm: n000001 (1001_1 failed)" in msg
    assert "aggregate-L00-1001_1.out: slurmctl: merge node L00/n000001: checksum mismatch for " in msg
    assert "t0000013" in msg and e.value.exit_code == 7, msg
    assert fake.calls["sbatch"] == 1  # level 1 is not submitted
    data.write_bytes(good)
    fake = FakeSlurm()
    m = aggregate(backend, "j", tmp_path / "out.parquet", settings=settings, client=fake)  # type: ignore[arg-type]
    assert m.nodes_run == 1 + 2 + 1
    assert [re.search(r"--array=(\S+)\n(?s:.*)--offset (\d+)", s).groups() for s in fake.scripts] == [  # type: ignore[union-attr]
        ("0", "1"),  # node 1 only: element 0, offset 1
        ("0-1", "0"),
        ("0", "0"),
    ]


def test_arrays_are_split_at_max_array_size(tmp_path):
    root = published(tmp_path, "slurm")
    fake = FakeSlurm(max_array_size=4)
    out = tmp_path / "out.jsonl"
    aggregate(local_backend(root), "j", out, settings=Settings.of_job(CONFIG), client=fake)  # type: ignore[arg-type]
    arrays = [re.search(r"--array=(\S+)\n", s).group(1) for s in fake.scripts]  # type: ignore[union-attr]
    offsets = [re.search(r"--offset (\d+)", s).group(1) for s in fake.scripts]  # type: ignore[union-attr]
    assert list(zip(arrays, offsets, strict=True)) == [
        ("0-3", "0"),
        ("0-3", "4"),
        ("0", "8"),
        ("0-1", "0"),
        ("0", "0"),
    ]


def test_node_main_refuses_bad_arguments(tmp_path, capsys, monkeypatch):
    root = published(tmp_path, "r", tasks=10)
    backend = local_backend(root)
    aggregate(backend, "j", tmp_path / "o.jsonl", settings=Settings(fan_in=8, processes=1))
    spec = json.dumps(backend.spec)
    real = plans.load(backend, "j").fingerprint  # type: ignore[union-attr]
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert node_main(["--backend", spec, "--job", "j", "--plan", real, "--level", "0"]) == 2
    assert node_main(["--backend", spec, "--job", "j", "--plan", real, "--level", "0", "--node", "5"]) == 2
    assert node_main(["--backend", spec, "--job", "j", "--plan", "other", "--level", "0", "--node", "0"]) == 8
    assert node_main(["--backend", spec, "--job", "j", "--plan", real, "--level", "1", "--node", "0"]) == 2
    err = capsys.readouterr().err
    assert "no node 5 at level 0" in err and "not the one this merge was submitted with" in err
    assert "the root node needs --output" in err and "Traceback" not in err
    # A valid node is left as it is.
    assert node_main(["--backend", spec, "--job", "j", "--plan", real, "--level", "0", "--node", "1"]) == 0


def test_config_accepts_where_slurm_and_resources():
    a = AggregateConfig.model_validate({"where": "slurm", "resources": {"mem_gb": 0.5}})
    assert a.where == "slurm" and a.resources is not None and a.resources.mem_gb == 0.5
    with pytest.raises(ValueError):
        AggregateConfig.model_validate({"where": "cloud"})
    assert merge_resources(CONFIG)["mem_gb"] == 0.5 and merge_resources(CONFIG)["time_min"] == 30


def test_an_interrupted_wait_cancels_the_levels_array(tmp_path):
    class Interrupted(FakeSlurm):
        def squeue(self, job_ids, *, all_states: bool = True):
            raise KeyboardInterrupt

        def scancel(self, job_ids):
            self.cancelled = list(job_ids)

    fake = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        aggregate(
            local_backend(published(tmp_path, "r", tasks=10)),
            "j",
            tmp_path / "o.jsonl",
            settings=Settings.of_job(CONFIG),
            client=fake,  # type: ignore[arg-type]
        )
    assert fake.calls["sbatch"] == 1 and fake.cancelled == ["1001"]
