"""Clusters as named profiles, so jobs (and later workflows) can be routed by name.

A user file — ``$SLURMCTL_CLUSTERS`` or ``~/.config/slurmctl/clusters.yaml`` — names clusters::

    default: hpc1
    clusters:
      hpc1:
        slurm_bin: /opt/slurm/bin      # where sbatch & co live (default: PATH)
        partition: batch               # defaults for jobs that do not set them
        account: proj42
        root: /shared/slurmctl         # backend root for jobs routed here
      dev:
        partition: debug

A job selects one with ``executor.cluster``; the profile fills only what the job leaves unset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slurmctl.errors import ConfigError, ConfigValidationError, FieldProblem


class ClusterProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slurm_bin: str | None = Field(None, description="directory holding sbatch, squeue, sacct, ...")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    root: str | None = Field(None, description="backend root for jobs on this cluster")
    description: str | None = None


class ClusterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: str | None = None
    clusters: dict[str, ClusterProfile] = Field(default_factory=dict)


def profiles_path() -> Path:
    return Path(os.environ.get("SLURMCTL_CLUSTERS") or "~/.config/slurmctl/clusters.yaml").expanduser()


def load_profiles(path: Path | None = None) -> ClusterFile:
    """The profiles file, or an empty one if it does not exist. Raises ConfigError if malformed."""
    path = path or profiles_path()
    if not path.exists():
        return ClusterFile()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read cluster profiles: {exc}") from exc
    try:
        return ClusterFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            FieldProblem(".".join(str(x) for x in e["loc"]), e["msg"], repr(e.get("input"))[:60])
            for e in exc.errors()
        ]
        raise ConfigValidationError(str(path), problems) from None


def resolve(name: str | None, path: Path | None = None) -> tuple[str, ClusterProfile] | None:
    """The named profile (or the file's default when ``name`` is None); None if neither is set.
    Raises ConfigError for a name the file does not define."""
    profiles = load_profiles(path)
    name = name or profiles.default
    if name is None:
        return None
    if name not in profiles.clusters:
        known = ", ".join(sorted(profiles.clusters)) or "none"
        raise ConfigError(
            f"unknown cluster {name!r} (profiles in {path or profiles_path()}: {known})",
            hint="add it under `clusters:` in that file, or drop executor.cluster",
        )
    return name, profiles.clusters[name]


def apply_profile(cfg: dict[str, Any], profile: ClusterProfile) -> dict[str, Any]:
    """Fill the job config's unset resources and backend root from the profile (job wins)."""
    out = {**cfg, "resources": dict(cfg["resources"]), "backend": dict(cfg["backend"])}
    for key in ("partition", "account", "qos"):
        if out["resources"].get(key) is None and getattr(profile, key):
            out["resources"][key] = getattr(profile, key)
    if out["backend"].get("kind", "local") == "local" and not out["backend"].get("root") and profile.root:
        out["backend"]["root"] = profile.root
    return out
