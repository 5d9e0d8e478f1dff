"""Start-up weight is a feature: an array element that runs one short task is mostly Python
start-up, and `status` runs in loops. These paths must not import the heavy libraries (pydantic
alone is ~0.1-0.2 s of a start-up on a 2-core VM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("pydantic", "typer", "rich", "polars", "pyarrow", "boto3", "yaml")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


def test_worker_start_up_does_not_import_heavy_libraries() -> None:
    heavy = sorted(
        set(HEAVY)
        & _loaded_after(
            "import slurmctl.worker.entry, slurmctl.worker.runtime\n"
            "import slurmctl.storage.open, slurmctl.storage.local"
        )
    )
    assert not heavy, f"worker start-up (python -m slurmctl.worker) imports {heavy}"


# Third-party libraries `slurmctl status` never imports: each costs 30-300 ms of a command whose
# budget on a 10k-task job is 0.3 s (docs/performance.md). The standard library, typer and rich
# are allowed. Nor does it load the modules only submission and the AWS backend need.
STATUS_NEVER_IMPORTS = (
    "pydantic",
    "boto3",
    "botocore",
    "pyarrow",
    "polars",
    "duckdb",
    "msgspec",
    "yaml",
    "jinja2",
    "fastapi",
    "sqlalchemy",
    "uvicorn",
)
STATUS_NEVER_LOADS = ("slurmctl.coordinator", "slurmctl.storage.aws")


def _imported_by(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m slurmctl ARGS``: the process and every module it imported,
    from start to exit."""
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "slurmctl", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    lines = [line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if "import time:" in line]
    return p, set(lines)


def test_status_imports_no_heavy_library(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`slurmctl status` on a real (small) job, every form: none of the heavy libraries loads."""
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
    spec = json.dumps({"kind": "local", "root": str(tmp_path)})
    runs = (["j1", "--json"], ["j1"], ["j1", "--backend", spec], ["nope"])
    for args in runs:
        p, loaded = _imported_by(["status", *args], env)
        assert p.returncode == (5 if args == ["nope"] else 0), p.stderr[-2000:]
        if "--json" in args:
            assert json.loads(p.stdout)["task_states"]["running"] == 1
        elif p.returncode == 0:
            assert "running=1" in p.stdout and "items          1/3 done, 0 failed" in p.stdout
        assert {"slurmctl", "typer", "slurmctl.status"} <= loaded  # the probe sees the run's imports
        heavy = sorted({m.split(".")[0] for m in loaded} & set(STATUS_NEVER_IMPORTS))
        heavy += sorted(loaded & set(STATUS_NEVER_LOADS))
        assert not heavy, f"`slurmctl status {' '.join(args)}` imported {heavy}"


def test_the_probes_see_heavy_imports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the checks above can fail: the coordinator imports pydantic, `slurmctl schema` too
    assert "pydantic" in _loaded_after("import slurmctl.coordinator")
    p, loaded = _imported_by(["schema"], dict(os.environ))
    assert p.returncode == 0, p.stderr[-2000:]
    assert "pydantic" in loaded
