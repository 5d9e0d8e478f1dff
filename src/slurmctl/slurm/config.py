"""``scontrol show config`` parsed into a dict and into the typed facts slurmctl acts on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slurmctl.errors import SchedulerQueryError
from slurmctl.slurm.values import is_no_value

_LINE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9_\[\]/]*)\s*=\s?(?P<value>.*)$")
_LEADING_INT = re.compile(r"^\s*(\d+)")


def parse_show_config(stdout: str) -> dict[str, str]:
    """Return {key: value} for every "Key = value" line of ``scontrol show config``.

    Skips the "Configuration data as of ..." header and the "Slurmctld(primary) at host is UP"
    trailer. Values keep Slurm's spelling ("300 sec", "(null)"). Raises SchedulerQueryError when
    no key is found at all (the command printed something else). Pure.
    """
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("Configuration data as of") or not line.strip():
            continue
        m = _LINE.match(line)
        if m:
            out[m.group("key")] = m.group("value").strip()
    if not out:
        raise SchedulerQueryError(f"scontrol show config printed no settings: {stdout[:200]!r}")
    return out


def _int(raw: dict[str, str], key: str) -> int | None:
    value = raw.get(key)
    if value is None or is_no_value(value):
        return None
    m = _LEADING_INT.match(value)  # "300 sec", "10 sec", "1001"
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class SlurmConfig:
    """The controller settings that change how slurmctl submits and polls."""

    raw: dict[str, str]
    cluster_name: str | None
    version: str | None
    max_array_size: int | None
    """Largest array index + 1 (sbatch -a 0-N needs N < MaxArraySize): arrays are split to fit."""
    max_job_count: int | None
    """Jobs (each array task counts once started) slurmctld holds in memory before refusing more."""
    min_job_age: int | None
    """Seconds a finished job stays visible to squeue; after that only sacct knows it."""
    message_timeout: int | None
    accounting_storage_type: str | None
    accounting_storage_tres: str | None
    select_type_parameters: str | None
    def_mem_per_cpu: int | None
    """MB; None means UNLIMITED (each job then gets the whole node's memory under CR_*_Memory)."""

    @property
    def accounting_enabled(self) -> bool:
        """True when jobs are recorded in slurmdbd, i.e. sacct can see them after MinJobAge."""
        return self.accounting_storage_type == "accounting_storage/slurmdbd"

    @classmethod
    def from_output(cls, stdout: str) -> SlurmConfig:
        """Build from ``scontrol show config`` output. Raises SchedulerQueryError. Pure."""
        raw = parse_show_config(stdout)

        def text(key: str) -> str | None:
            value = raw.get(key)
            return None if value is None or is_no_value(value) else value

        def_mem = text("DefMemPerCPU")
        return cls(
            raw=raw,
            cluster_name=text("ClusterName"),
            version=text("SLURM_VERSION"),
            max_array_size=_int(raw, "MaxArraySize"),
            max_job_count=_int(raw, "MaxJobCount"),
            min_job_age=_int(raw, "MinJobAge"),
            message_timeout=_int(raw, "MessageTimeout"),
            accounting_storage_type=text("AccountingStorageType"),
            accounting_storage_tres=text("AccountingStorageTRES"),
            select_type_parameters=text("SelectTypeParameters"),
            def_mem_per_cpu=_int(raw, "DefMemPerCPU") if def_mem and def_mem.upper() != "UNLIMITED" else None,
        )
