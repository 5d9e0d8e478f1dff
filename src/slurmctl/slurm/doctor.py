"""The Slurm checks of ``slurmctl doctor``: each returns Findings with a severity and what to do."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from slurmctl.errors import SchedulerError
from slurmctl.slurm.client import SlurmClient
from slurmctl.slurm.config import SlurmConfig

REQUIRED_COMMANDS: tuple[str, ...] = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo")


class Severity(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One check's verdict. ``hint`` says what to do when it is not OK."""

    check: str
    severity: Severity
    message: str
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.severity is Severity.OK


def check_commands(names: Sequence[str] = REQUIRED_COMMANDS, *, path: str | None = None) -> list[Finding]:
    """Return one Finding per Slurm command: OK with its location, ERROR when not on PATH. Idempotent."""
    out = []
    for name in names:
        where = shutil.which(name, path=path)
        if where:
            out.append(Finding(f"command:{name}", Severity.OK, f"{name} is {where}"))
        else:
            out.append(
                Finding(
                    f"command:{name}",
                    Severity.ERROR,
                    f"{name} is not on PATH",
                    hint="run slurmctl on a login node with the Slurm client commands, or add their "
                    "directory (e.g. /opt/slurm/bin) to PATH",
                )
            )
    return out


def check_controller(client: SlurmClient) -> Finding:
    """Return OK when ``scontrol ping`` says the controller is UP, else ERROR. Idempotent."""
    try:
        ping = client.ping()
    except SchedulerError as exc:
        return Finding("controller", Severity.ERROR, f"scontrol ping failed: {exc.message}")
    if ping.up:
        return Finding("controller", Severity.OK, ping.text.splitlines()[0] if ping.text else "UP")
    return Finding(
        "controller",
        Severity.ERROR,
        f"slurmctld does not answer: {ping.text or 'no output'}",
        hint="check that slurmctld runs (on the dev cluster: scripts/dev-cluster status / up)",
    )


def check_max_array_size(config: SlurmConfig, *, wanted_tasks: int | None = None) -> Finding:
    """Report MaxArraySize: WARNING when small (arrays are split into many submissions), OK otherwise.

    ``wanted_tasks`` (optional): the size of the map about to run, to say how many arrays it needs.
    """
    size = config.max_array_size
    if size is None:
        return Finding(
            "max_array_size",
            Severity.WARNING,
            "scontrol show config has no MaxArraySize",
            hint="slurmctl assumes Slurm's default of 1001",
        )
    message = f"MaxArraySize = {size} (arrays hold task ids 0..{size - 1})"
    if wanted_tasks:
        arrays = -(-wanted_tasks // (size - 1 if size > 1 else 1))
        message += f"; {wanted_tasks} tasks need {arrays} array submission(s)"
    if size < 1001:
        return Finding(
            "max_array_size",
            Severity.WARNING,
            message,
            hint="a small MaxArraySize means many submissions; ask the admins, or use more items per task",
        )
    return Finding("max_array_size", Severity.OK, message)


def check_accounting(client: SlurmClient, config: SlurmConfig | None = None) -> Finding:
    """Return OK when accounting goes to slurmdbd and a bounded ``sacct`` query works. Idempotent.

    slurmctl needs sacct: finished tasks leave squeue after MinJobAge and only sacct knows how they ended.
    """
    if config is not None and not config.accounting_enabled:
        return Finding(
            "accounting",
            Severity.ERROR,
            f"AccountingStorageType is {config.accounting_storage_type or 'none'}, not slurmdbd",
            hint="without slurmdbd, tasks that ended more than MinJobAge ago cannot be checked; "
            "ask the admins to enable accounting",
        )
    try:
        client.sacct(start=datetime.now() - timedelta(minutes=1), fields=("JobID",), allocations_only=True)
    except SchedulerError as exc:
        return Finding(
            "accounting",
            Severity.ERROR,
            f"sacct does not work: {exc.message.splitlines()[0]}",
            hint="check slurmdbd (`sacctmgr show cluster`); on the dev cluster run scripts/dev-cluster up",
        )
    return Finding("accounting", Severity.OK, "sacct answers (accounting via slurmdbd)")


def check_scratch(path: str | os.PathLike[str] | None = None, *, min_free_bytes: int = 1 << 30) -> Finding:
    """Return OK when the scratch dir ($TMPDIR, else the system temp dir) has ``min_free_bytes`` free."""
    where = os.fspath(path) if path is not None else (os.environ.get("TMPDIR") or tempfile.gettempdir())
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return Finding(
            "scratch",
            Severity.ERROR,
            f"scratch dir {where} is not usable: {exc.strerror or exc}",
            hint="set TMPDIR to a writable directory with free space",
        )
    free_gib = usage.free / (1 << 30)
    message = f"scratch {where}: {free_gib:.1f} GiB free"
    if usage.free < min_free_bytes:
        return Finding(
            "scratch",
            Severity.WARNING,
            message + f" (< {min_free_bytes / (1 << 30):.1f} GiB)",
            hint="free space or point TMPDIR at a larger file system",
        )
    return Finding("scratch", Severity.OK, message)


def run_slurm_checks(client: SlurmClient | None = None, *, wanted_tasks: int | None = None) -> list[Finding]:
    """Run every Slurm check in dependency order and return all Findings. Never raises for a bad cluster.

    Checks that need the controller are skipped (not reported as failures) when it is down or the
    commands are missing, so the first error shown is the one to fix.
    """
    client = client or SlurmClient()
    findings = check_commands()
    findings.append(check_scratch())
    if any(not f.ok for f in findings if f.check.startswith("command:")):
        return findings
    controller = check_controller(client)
    findings.append(controller)
    if not controller.ok:
        return findings
    try:
        config = client.config()
    except SchedulerError as exc:
        findings.append(Finding("config", Severity.ERROR, f"scontrol show config failed: {exc.message}"))
        return findings
    findings.append(check_max_array_size(config, wanted_tasks=wanted_tasks))
    findings.append(check_accounting(client, config))
    return findings
