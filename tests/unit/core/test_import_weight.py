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
            "import slurmctl.cli.fast, slurmctl.cli.common, slurmctl.status, slurmctl.storage.local",
        ),
    ],
)
def test_light_paths_do_not_import_heavy_libraries(what: str, code: str) -> None:
    heavy = sorted(set(HEAVY) & _loaded_after(code))
    assert not heavy, f"{what} imports {heavy}"


def test_the_probe_sees_heavy_imports() -> None:
    # the check above can fail: the full CLI does import typer and rich, the coordinator pydantic
    assert {"typer", "rich"} <= _loaded_after("import slurmctl.cli.main")
    assert "pydantic" in _loaded_after("import slurmctl.coordinator")
