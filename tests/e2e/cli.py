"""Run the real CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


def slurmctl(*args: str, root: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
    e = dict(os.environ, SLURMCTL_ROOT=str(root), **(env or {}))
    p = subprocess.run(
        [sys.executable, "-m", "slurmctl", *args], capture_output=True, text=True, env=e, timeout=timeout
    )
    return Result(p.returncode, p.stdout, p.stderr)


def submit_wait(
    job_file: Path, root: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[str, Result]:
    r = slurmctl("submit", str(job_file), "--wait", *extra, root=root, env=env, timeout=timeout)
    job_id = r.out.strip().splitlines()[-1] if r.out.strip() else ""
    return job_id, r


def write_job(tmp: Path, body: str, name: str = "job.yaml") -> Path:
    p = tmp / name
    p.write_text(body)
    return p


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
