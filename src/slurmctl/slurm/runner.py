"""Run Slurm commands: timeout, retry of transient failures, and a count of every call.

Every Slurm command slurmctl runs goes through one :class:`CommandRunner`, so that

* transient controller trouble (a busy or restarting slurmctld answers "Socket timed out" or
  "Unable to contact slurm controller") is retried with exponential backoff instead of failing a
  run of a million tasks, while a definitive error (bad option, invalid partition) fails at once;
* ``runner.calls`` counts calls per command name, which is how tests prove that the status watcher
  costs one Slurm command per poll however many tasks it watches.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from slurmctl.errors import SchedulerError, SchedulerQueryError, SubmissionError

# Texts that mean "the controller (or slurmdbd) could not be reached right now": the same command may
# succeed a moment later. Slurm prints them with exit code 1, the same code as a definitive error, so
# the text is all we have.
TRANSIENT_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"Socket timed out",
        r"Unable to contact slurm controller",
        r"slurm_load_jobs error",
        r"slurm_load_partitions",
        r"Connection refused",
        r"Transport endpoint is not connected",
        r"Zero Bytes were transmitted or received",
        r"Communication connection failure",
        r"Resource temporarily unavailable",
        r"Slurm temporarily unable to accept job",
        r"backup controller in standby mode",
        r"Problem talking to the database",
        r"Unable to establish .*connection",
        r"Connection reset by peer",
        r"Slurmctld is busy",
    )
)

# Texts that mean "this will fail the same way every time". They win over TRANSIENT_PATTERNS: e.g.
# "slurm_load_jobs error: Invalid job id specified" is what squeue prints when every requested job
# has left the controller's memory (MinJobAge), and retrying it only wastes time.
DEFINITIVE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\binvalid\b",
        r"unrecognized option",
        r"unknown option",
        r"illegal option",
        r"invalid option",
        r"requires an argument",
        r"Batch job submission failed: (?!Socket timed out|Slurm temporarily)",
        r"Access/permission denied",
        r"not supported",
        r"Requested node configuration is not available",
        r"QOSMax",
    )
)


def is_transient(returncode: int, stderr: str, stdout: str = "") -> bool:
    """Return True when a failed command's output says a retry may succeed.

    A definitive text anywhere wins over a transient one. Pure; idempotent.
    """
    if returncode == 0:
        return False
    text = f"{stderr}\n{stdout}"
    if any(p.search(text) for p in DEFINITIVE_PATTERNS):
        return False
    return any(p.search(text) for p in TRANSIENT_PATTERNS)


@dataclass(frozen=True)
class CommandResult:
    """What one command returned (after retries)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    attempts: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: delays initial, initial*factor, ... capped at max_delay, at most attempts runs."""

    attempts: int = 5
    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 8.0

    def delays(self) -> list[float]:
        """Return the sleeps between consecutive attempts (attempts - 1 of them). Pure."""
        out: list[float] = []
        delay = self.initial
        for _ in range(max(self.attempts - 1, 0)):
            out.append(min(delay, self.max_delay))
            delay *= self.factor
        return out


NO_RETRY = RetryPolicy(attempts=1)

# Variables that change what Slurm commands print. We parse their output, so pin them: a user with
# SLURM_TIME_FORMAT=relative in their shell must not break the parser.
PINNED_ENV: Mapping[str, str] = {"SLURM_TIME_FORMAT": "standard"}
UNSET_ENV: tuple[str, ...] = (
    "SQUEUE_FORMAT",
    "SQUEUE_FORMAT2",
    "SQUEUE_SORT",
    "SACCT_FORMAT",
    "SINFO_FORMAT",
)


@dataclass
class CommandRunner:
    """Runs Slurm commands with a timeout and retries, and counts them.

    ``calls`` counts logical calls per command name (``Counter({"sbatch": 1, "squeue": 3})``);
    ``executions`` counts processes started, retries included. Pass the same Counter to several
    runners (or share one runner) to account for all Slurm traffic of a component.
    """

    timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    calls: Counter[str] = field(default_factory=Counter)
    executions: Counter[str] = field(default_factory=Counter)
    env: Mapping[str, str] | None = None
    sleep: Callable[[float], None] = time.sleep

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        for name in UNSET_ENV:
            env.pop(name, None)
        env.update(PINNED_ENV)
        return env

    def _execute(self, argv: Sequence[str], input_text: str | None) -> CommandResult:
        name = os.path.basename(argv[0])
        self.executions[name] += 1
        start = time.monotonic()
        try:
            proc = subprocess.run(
                list(argv),
                input=input_text,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=self._environment(),
                check=False,
            )
        except FileNotFoundError as exc:
            raise SchedulerQueryError(
                f"{name}: command not found",
                hint="install the Slurm client commands or put them on PATH (`slurmctl doctor` checks this)",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            # Our own timeout counts as transient: the controller may just be overloaded.
            return CommandResult(
                tuple(argv),
                124,
                _text(exc.stdout),
                _text(exc.stderr) + f"\nslurmctl: {name}: no answer in {self.timeout:g} s (Socket timed out)",
                seconds=time.monotonic() - start,
            )
        return CommandResult(
            tuple(argv), proc.returncode, proc.stdout, proc.stderr, seconds=time.monotonic() - start
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        check: bool = True,
        retry: RetryPolicy | None = None,
        before_retry: Callable[[CommandResult], CommandResult | None] | None = None,
        accept: Callable[[CommandResult], bool] | None = None,
    ) -> CommandResult:
        """Run ``argv``; retry transient failures with backoff; return the final result.

        ``accept(result)`` may declare a non-zero exit acceptable (e.g. squeue's "Invalid job id"
        meaning "no such job any more"); accepted results are returned without retry. Before each
        retry ``before_retry(failed)`` may return a result to use instead (sbatch uses it to find a
        submission that did reach the controller despite a timeout).

        Raises SubmissionError (sbatch) or SchedulerQueryError (anything else) when ``check`` and the
        command still fails. Idempotent only if the command is.
        """
        if not argv:
            raise ValueError("empty command")
        name = os.path.basename(argv[0])
        self.calls[name] += 1
        policy = retry or self.retry
        delays = policy.delays()
        attempt = 0
        while True:
            attempt += 1
            result = self._execute(argv, input_text)
            result = CommandResult(
                result.argv, result.returncode, result.stdout, result.stderr, attempt, result.seconds
            )
            if result.ok or (accept is not None and accept(result)):
                return result
            if attempt > len(delays) or not is_transient(result.returncode, result.stderr, result.stdout):
                break
            self.sleep(delays[attempt - 1])
            if before_retry is not None:
                replacement = before_retry(result)
                if replacement is not None:
                    return replacement
        if check:
            raise command_error(result)
        return result


def command_error(result: CommandResult) -> SchedulerError:
    """Return the error for a failed command: SubmissionError for sbatch, else SchedulerQueryError. Pure."""
    name = os.path.basename(result.argv[0])
    transient = is_transient(result.returncode, result.stderr, result.stdout)
    attempts = f" after {result.attempts} attempts" if result.attempts > 1 else ""
    if name == "sbatch":
        return SubmissionError(
            f"sbatch failed{attempts}",
            command=list(result.argv),
            stdout=result.stdout,
            stderr=result.stderr,
            returncode=result.returncode,
            hint=(
                "the Slurm controller is unreachable or overloaded; check `scontrol ping` and retry"
                if transient
                else "fix the job options named in stderr (partition, time limit, memory, array size)"
            ),
        )
    detail = result.stderr.strip() or result.stdout.strip() or "(no output)"
    return SchedulerQueryError(
        f"{name} failed{attempts} (exit code {result.returncode}): {detail}"
        f"\n  command: {' '.join(result.argv)}",
        hint=(
            "the Slurm controller or slurmdbd is unreachable; check `scontrol ping` / `sacctmgr show cluster`"
            if transient
            else None
        ),
    )


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value
