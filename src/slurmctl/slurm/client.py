"""A typed client over the Slurm commands; every call goes through one CommandRunner."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from slurmctl.errors import SchedulerQueryError
from slurmctl.slurm.accounting import DEFAULT_SACCT_FIELDS, AcctRow, parse_sacct
from slurmctl.slurm.accounting import SEP as SACCT_SEP
from slurmctl.slurm.config import SlurmConfig, parse_show_config
from slurmctl.slurm.jobids import parse_submitted_id
from slurmctl.slurm.queue import SQUEUE_FORMAT, QueueRow, parse_squeue
from slurmctl.slurm.runner import NO_RETRY, CommandResult, CommandRunner, RetryPolicy
from slurmctl.slurm.values import parse_duration

SubmitOptions = Mapping[str, str | int | bool | None] | Sequence[str]

# squeue -j <one id> exits 1 with this text once the job has left slurmctld's memory (MinJobAge after
# it ended). With several ids it exits 0 and prints only the known ones. Either way: "not in queue".
_GONE = "Invalid job id specified"
# Every state ``sacct -s`` accepts (22.05): naming them all selects jobs by any state in the window.
SACCT_ALL_STATES = ("BF", "CA", "CD", "DL", "F", "NF", "OOM", "PD", "PR", "R", "RQ", "RS", "RV", "S", "TO")


@dataclass(frozen=True)
class PingResult:
    up: bool
    text: str


@dataclass(frozen=True)
class NodeRow:
    """One node of ``sinfo -N``: name, partition, state, CPUs, memory (MB), gres, reason."""

    name: str
    partition: str
    state: str
    cpus: int
    memory_mb: int
    gres: str
    reason: str


def _render_options(options: SubmitOptions) -> list[str]:
    """{"array": "0-9", "job-name": "x", "hold": True} -> ["--array=0-9", "--job-name=x", "--hold"]."""
    if isinstance(options, Mapping):
        out = []
        for key, value in options.items():
            flag = "--" + key.lstrip("-").replace("_", "-")
            if value is None or value is False:
                continue
            out.append(flag if value is True else f"{flag}={value}")
        return out
    return [str(o) for o in options]


def _join_ids(job_ids: Iterable[str | int]) -> str:
    ids = [str(j).strip() for j in job_ids if str(j).strip()]
    if not ids:
        raise ValueError("no job ids given")
    for j in ids:
        if not j.replace("_", "").replace("+", "").replace(".", "").isalnum():
            raise ValueError(f"not a Slurm job id: {j!r}")
    return ",".join(ids)


_ENDED_ID = ("Job has already finished", "Invalid job id specified", "slurm_suspend error: No error")


def _only_ended_ids(result: CommandResult) -> bool:
    """Whether every complaint of a failed ``scontrol hold|release`` is about an id that ended or
    that slurmctld no longer knows (Slurm 22.05 prints one line per such id and a summary line)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return bool(lines) and all(any(text in line for text in _ENDED_ID) for line in lines)


def _fmt_time(when: datetime | str) -> str:
    if isinstance(when, str):
        return when
    # sacct reads local time without an offset.
    local = when.astimezone() if when.tzinfo else when
    return local.strftime("%Y-%m-%dT%H:%M:%S")


class SlurmClient:
    """sbatch, squeue, sacct, scancel, scontrol and sinfo as typed methods.

    ``runner`` is shared: pass one in to count this client's calls together with others'.
    ``bin_dir`` prefixes command names (clusters with Slurm under /opt/slurm/bin).
    """

    def __init__(self, runner: CommandRunner | None = None, *, bin_dir: str | os.PathLike[str] | None = None):
        self.runner = runner if runner is not None else CommandRunner()
        self.bin_dir = Path(bin_dir) if bin_dir else None

    def _cmd(self, name: str) -> str:
        return str(self.bin_dir / name) if self.bin_dir else name

    # ------------------------------------------------------------------ submission

    def sbatch(
        self,
        *,
        script_path: str | os.PathLike[str] | None = None,
        script_text: str | None = None,
        wrap: str | None = None,
        options: SubmitOptions = (),
        token: str | None = None,
    ) -> str:
        """Submit one batch job (or array) and return its job id ("123").

        Exactly one of script_path, script_text (sent on stdin) or wrap. Uses ``--parsable`` and
        accepts "123;cluster". sbatch that timed out may still have created the job, so before a retry
        we look for our submission token (in --comment, unless the caller set a comment; ``token``
        names it, default a random one) and return that job instead of submitting twice. Raises
        SubmissionError. Not idempotent.
        """
        given = [x is not None for x in (script_path, script_text, wrap)]
        if sum(given) != 1:
            raise ValueError("give exactly one of script_path, script_text, wrap")
        args = _render_options(options)
        if any(a == "--comment" or a.startswith("--comment=") for a in args):
            token = None
        else:
            token = token or f"slurmctl-submit-{uuid.uuid4().hex}"
            args.append(f"--comment={token}")
        argv = [self._cmd("sbatch"), "--parsable", *args]
        if wrap is not None:
            argv.append(f"--wrap={wrap}")
        elif script_path is not None:
            argv.append(os.fspath(script_path))

        def find_submitted(_failed: CommandResult) -> CommandResult | None:
            if token is None:
                return None
            job_id = self._find_by_comment(token)
            if job_id is None:
                return None
            return CommandResult(tuple(argv), 0, job_id + "\n", "", _failed.attempts)

        result = self.runner.run(argv, input_text=script_text, before_retry=find_submitted)
        return parse_submitted_id(result.stdout)

    def _find_by_comment(self, token: str) -> str | None:
        """Return the id of the job whose comment is ``token``, or None (also when squeue fails)."""
        argv = [self._cmd("squeue"), "-h", "-t", "all", "-u", str(os.getuid()), "-o", f"%F{SACCT_SEP}%k"]
        result = self.runner.run(argv, check=False, retry=NO_RETRY)
        if not result.ok:
            return None
        for line in result.stdout.splitlines():
            job_id, _, comment = line.partition(SACCT_SEP)
            if comment.strip() == token:
                return job_id.strip()
        return None

    def find_names_in_queue(self, names: Sequence[str]) -> dict[str, str]:
        """{job name: job id} of the jobs slurmctld still knows (any state, any user) among ``names``,
        in ONE ``squeue -h -t all --name=a,b,...`` call. Raises SchedulerQueryError. Idempotent."""
        if not names:
            return {}
        argv = [self._cmd("squeue"), "-h", "-t", "all", f"--name={','.join(names)}", "-o", f"%F{SACCT_SEP}%j"]
        found: dict[str, str] = {}
        for line in self.runner.run(argv).stdout.splitlines():
            job_id, _, name = line.partition(SACCT_SEP)
            if name.strip() in names:
                found.setdefault(name.strip(), job_id.strip())
        return found

    def find_names_in_accounting(self, names: Sequence[str], since: datetime) -> dict[str, str]:
        """{job name: job id} of the jobs among ``names`` that slurmdbd recorded since ``since`` (any
        user), in ONE bounded ``sacct -X -a -D --name=... -S since -E now -s <every state>`` call.
        The state list matters: without ``-s``, sacct 22.05 leaves out jobs that were never eligible
        (held, then cancelled); with it they are listed once they ended. A job still held is not
        listed either way (squeue lists it). Raises SchedulerQueryError. Idempotent."""
        if not names:
            return {}
        rows = self.sacct(
            name=",".join(names),
            start=since,
            end=datetime.now(UTC),
            states=SACCT_ALL_STATES,
            fields=("JobID", "JobIDRaw", "JobName"),
            allocations_only=True,
            all_users=True,
            duplicates=True,
        )
        found: dict[str, str] = {}
        for row in rows:
            name = row.fields.get("JobName", "")
            if name in names:
                found.setdefault(name, str(row.ref.job))
        return found

    # ------------------------------------------------------------------ queries

    def squeue(self, job_ids: Iterable[str | int], *, all_states: bool = True) -> list[QueueRow]:
        """Return queue rows for many jobs in ONE squeue call.

        ``all_states`` adds ``-t all`` so jobs that ended less than MinJobAge ago are listed with their
        final state. Jobs the controller no longer knows are simply absent (an empty list when none is
        known). Pending array tasks come as one row with ``ref.pending_tasks``. Raises
        SchedulerQueryError after retries. Idempotent.
        """
        argv = [self._cmd("squeue"), "-h", "-j", _join_ids(job_ids), "-o", SQUEUE_FORMAT]
        if all_states:
            argv[2:2] = ["-t", "all"]
        result = self.runner.run(argv, accept=lambda r: r.returncode == 1 and _GONE in r.stderr)
        if not result.ok:
            return []
        return parse_squeue(result.stdout)

    def sacct(
        self,
        job_ids: Iterable[str | int] | None = None,
        *,
        name: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        fields: Sequence[str] = DEFAULT_SACCT_FIELDS,
        allocations_only: bool = False,
        all_users: bool = False,
        duplicates: bool = False,
        states: Sequence[str] | None = None,
    ) -> list[AcctRow]:
        """Return accounting rows for many jobs in ONE ``sacct -P -n --noconvert`` call.

        ``start``/``end`` bound the query (-S/-E): always pass ``start`` when you can, since sacct
        otherwise scans from its default. ``allocations_only`` (-X) drops steps; ``duplicates`` (-D)
        keeps the records of requeued runs. Raises SchedulerQueryError after retries. Idempotent.
        """
        fields = list(fields)
        argv = [self._cmd("sacct"), "-P", "-n", "--noconvert", f"--delimiter={SACCT_SEP}"]
        argv += ["-o", ",".join(fields)]
        if job_ids is not None:
            argv += ["-j", _join_ids(job_ids)]
        if name is not None:
            argv += ["--name", name]
        if start is not None:
            argv += ["-S", _fmt_time(start)]
        if end is not None:
            argv += ["-E", _fmt_time(end)]
        if allocations_only:
            argv.append("-X")
        if all_users:
            argv.append("-a")
        if duplicates:
            argv.append("-D")
        if states:
            argv += ["-s", ",".join(states)]
        result = self.runner.run(argv)
        return parse_sacct(result.stdout, fields)

    def scancel(self, job_ids: Iterable[str | int], *, signal: str | None = None) -> None:
        """Cancel jobs (or signal them). Slurm 22.05 exits 0 even for unknown ids. Idempotent."""
        argv = [self._cmd("scancel")]
        if signal:
            argv += ["--signal", signal]
        argv += _join_ids(job_ids).split(",")
        self.runner.run(argv)

    def scontrol_requeue(self, job_id: str | int) -> None:
        """Requeue a job: it goes back to PENDING under the same id. Slurm delays its eligibility
        (EligibleTime about 2 minutes later on 22.05). Raises SchedulerQueryError (e.g. unknown id)."""
        self.runner.run([self._cmd("scontrol"), "requeue", _join_ids([job_id])])

    def scontrol_hold(self, job_ids: Iterable[str | int], *, release: bool = False) -> None:
        """Hold (or with ``release`` release) the pending jobs and array elements of ``job_ids`` in
        ONE ``scontrol hold|release`` call; running elements go on. Ids that have ended ("Job has
        already finished") or left slurmctld ("Invalid job id") are no error: scontrol still
        applies the call to the others and exits 1. Raises SchedulerQueryError otherwise."""
        argv = [self._cmd("scontrol"), "release" if release else "hold", _join_ids(job_ids)]
        self.runner.run(argv, accept=_only_ended_ids)

    def scontrol_show_config(self) -> dict[str, str]:
        """Return every ``scontrol show config`` setting as raw strings. Idempotent."""
        return parse_show_config(self.runner.run([self._cmd("scontrol"), "show", "config"]).stdout)

    def partition_max_time(self, name: str | None = None) -> int | None:
        """MaxTime of partition ``name`` (None: the default partition) in minutes, from ONE
        ``scontrol show partition -o``; None for UNLIMITED (or a partition it does not list).
        Raises SchedulerQueryError."""
        out = self.runner.run([self._cmd("scontrol"), "show", "partition", "-o"]).stdout
        return parse_partition_max_time(out, name)

    def config(self) -> SlurmConfig:
        """Return the typed controller settings (MaxArraySize, MinJobAge, ...). Idempotent."""
        return SlurmConfig.from_output(self.runner.run([self._cmd("scontrol"), "show", "config"]).stdout)

    def sinfo(self) -> list[NodeRow]:
        """Return one row per (node, partition). Raises SchedulerQueryError. Idempotent."""
        fmt = SACCT_SEP.join(["%N", "%P", "%T", "%c", "%m", "%G", "%E"])
        result = self.runner.run([self._cmd("sinfo"), "-h", "-N", "-o", fmt])
        rows = []
        for lineno, line in enumerate(result.stdout.splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split(SACCT_SEP, 6)
            if len(parts) != 7 or not parts[3].isdigit():
                raise SchedulerQueryError(f"sinfo:{lineno}: unexpected line {line[:200]!r}")
            mem = parts[4].rstrip("+")
            rows.append(
                NodeRow(
                    name=parts[0],
                    partition=parts[1].rstrip("*"),
                    state=parts[2],
                    cpus=int(parts[3]),
                    memory_mb=int(mem) if mem.isdigit() else 0,
                    gres=parts[5],
                    reason=parts[6],
                )
            )
        return rows

    def ping(self, *, retry: RetryPolicy = NO_RETRY) -> PingResult:
        """Return whether the controller answers ``scontrol ping``. Never raises for a down controller."""
        result = self.runner.run([self._cmd("scontrol"), "ping"], check=False, retry=retry)
        text = (result.stdout + result.stderr).strip()
        return PingResult(up=result.ok and "is UP" in result.stdout, text=text)


def parse_partition_max_time(stdout: str, name: str | None) -> int | None:
    """MaxTime in minutes of partition ``name`` (None: the one with ``Default=YES``) in ``scontrol
    show partition -o`` output; None for UNLIMITED or a partition not listed. Pure."""
    for line in stdout.splitlines():
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if (name is None and fields.get("Default") == "YES") or (
            name and fields.get("PartitionName") == name
        ):
            seconds = parse_duration(fields.get("MaxTime"))
            return None if seconds is None else max(1, int(seconds // 60))
    return None
