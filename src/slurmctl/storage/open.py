"""Open the backend a job config (or a CLI flag) names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from slurmctl.errors import ConfigError
from slurmctl.storage.base import Backend


def default_root() -> Path:
    return Path(os.environ.get("SLURMCTL_ROOT") or "~/.slurmctl").expanduser()


def open_backend(
    spec: dict[str, Any] | None, root_override: str | None = None, *, check: bool = False
) -> Backend:
    """The backend of the job's ``backend:`` block ``spec``; ``root_override`` is ``--root``
    (local only). ``check``: commands pass True so that a remote backend's first contact fails
    within seconds with a clear message, before anything is created (the aws backend's
    :mod:`slurmctl.storage.aws.preflight`); workers leave it False, for a cheap start.
    Raises ConfigError for a bad block; with ``check``, StorageError for an unusable backend."""
    spec = dict(spec or {"kind": "local"})
    kind = spec.get("kind", "local")
    if kind == "local":
        from slurmctl.storage.local import local_backend

        root = root_override or spec.get("root") or default_root()
        return local_backend(Path(root))
    if kind == "aws":
        from slurmctl.storage.aws import aws_backend

        return aws_backend({k: v for k, v in spec.items() if k != "root"}, check=check)
    raise ConfigError(f"backend.kind {kind!r} is not available", hint="use kind: local or kind: aws")
