"""``slurmctl doctor`` checks beyond Slurm's (those are in slurmctl.slurm.doctor)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from slurmctl.slurm.doctor import Finding, Severity
from slurmctl.storage.open import default_root


def check_backend_root(root: str | os.PathLike[str] | None) -> Finding:
    """Can this user create, fsync and rename files under the backend root?"""
    path = Path(root).expanduser() if root else default_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return Finding(
            "backend root",
            Severity.ERROR,
            f"cannot write under {path}: {exc.strerror}",
            hint="set --root / SLURMCTL_ROOT (or backend.root) to a writable directory on shared storage",
        )
    return Finding("backend root", Severity.OK, f"{path} is writable")
