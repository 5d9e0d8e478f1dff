"""Start-up weight is a feature: an array element that runs one short task is mostly Python
start-up, and `status` runs in loops. These paths must not import the heavy libraries (pydantic
alone was ~0.2 s of every worker's start-up; typer 0.29 imports pydantic too)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pydantic", "typer", "rich", "polars", "pyarrow", "boto3", "yaml")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


@pytest.mark.parametrize(
    "what, code",
    [
        (
            "worker start-up (python -m slurmctl.worker)",
            "import slurmctl.worker.entry, slurmctl.worker.runtime\n"
            "import slurmctl.storage.open, slurmctl.storage.local",
        ),
        (
            "status fast path (slurmctl status JOB --json)",
            "import slurmctl.cli.fast, slurmctl.status, slurmctl.storage.local",
        ),
        (
            "status (human view: rich, but no typer/pydantic)",
            "import slurmctl.cli.fast, slurmctl.cli.common, slurmctl.status, slurmctl.storage.local",
        ),
    ],
)
def test_light_paths_do_not_import_heavy_libraries(what: str, code: str) -> None:
    heavy = sorted(set(HEAVY) & _loaded_after(code))
    assert not heavy, f"{what} imports {heavy}"


# Modules the status fast path must not import, even while it runs (not just at import time):
# the heavy libraries above, and the modules only submission and the AWS backend need.
STATUS_MUST_NOT_LOAD = ("msgspec", "slurmctl.storage.open", "slurmctl.coordinator")


def test_status_fast_path_run_loads_only_what_it_needs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`slurmctl status JOB --json` on a real (small) job, under ``-X importtime``: every module
    the process imported, from start to exit, is listed — none of the heavy ones may be."""
    import os

    from slurmctl.model.progress import entry
    from slurmctl.storage.local import local_backend

    state = local_backend(tmp_path).state
    state.create("jobs", "j1", {"job_id": "j1", "name": "n", "state": "running", "total_items": 3})
    entries = {}
    for i, st in enumerate(("succeeded", "running", "queued")):
        value = {"state": st, "items_total": 1, "items_done": int(st == "succeeded")}
        state.create("tasks", f"j1/t{i:07d}", value)
        entries[f"t{i:07d}"] = entry(1, value)
    state.create("progress", "j1/g00000", {"entries": entries})
    env = dict(os.environ, SLURMCTL_ROOT=str(tmp_path))
    env.pop("SLURMCTL_NO_FAST_PATH", None)
    runs = (("json", ["--json"]), ("human view", []))
    for run, flags in runs:
        p = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "slurmctl", "status", "j1", *flags],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        if flags:
            assert json.loads(p.stdout)["task_states"]["running"] == 1
        else:  # the plain-text table, without rich
            assert "running=1" in p.stdout and "items          1/3 done, 0 failed" in p.stdout
        loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if "import time:" in line}
        assert "slurmctl.status" in loaded  # the probe sees the run's imports
        bad = sorted(m for m in loaded if m in STATUS_MUST_NOT_LOAD or m.split(".")[0] in HEAVY)
        assert not bad, f"{run}: `status --json` imported {bad}"


def test_the_probe_sees_heavy_imports() -> None:
    # the check above can fail: the full CLI does import typer and rich, the coordinator pydantic
    assert {"typer", "rich"} <= _loaded_after("import slurmctl.cli.main")
    assert "pydantic" in _loaded_after("import slurmctl.coordinator")
