"""One exit-code table (errors.py's docstring), each code with one meaning."""

from __future__ import annotations

import re
import subprocess
import sys

import slurmctl.errors as errors
from slurmctl.ratelimit.errors import RateLimitTimeout


def table() -> dict[int, str]:
    rows = re.findall(r"^\s+(\d+)\s+(\w+)\s+\S", errors.__doc__ or "", re.M)
    codes = [int(c) for c, _ in rows]
    assert len(codes) == len(set(codes)), f"a code appears twice in the table: {sorted(codes)}"
    return {int(c): name for c, name in rows}


def test_every_code_is_in_the_table_once_with_its_meaning():
    t = table()
    named = {
        errors.EXIT_OK: "EXIT_OK",
        errors.EXIT_FAILED: "EXIT_FAILED",
        errors.ConfigError.exit_code: "ConfigError",
        errors.InputError.exit_code: "InputError",
        errors.HandlerError.exit_code: "HandlerError",
        errors.StateError.exit_code: "StateError",
        errors.StorageError.exit_code: "StorageError",
        errors.SchedulerError.exit_code: "SchedulerError",
        errors.ResultsError.exit_code: "ResultsError",
        errors.EXIT_ITEMS_FAILED: "EXIT_ITEMS_FAILED",
        RateLimitTimeout.exit_code: "RateLimitTimeout",
        errors.EXIT_LEASE_LOST: "EXIT_LEASE_LOST",
        errors.EXIT_ALERTS_FIRING: "EXIT_ALERTS_FIRING",
        errors.EXIT_UNDELIVERED: "EXIT_UNDELIVERED",
        errors.AuthError.exit_code: "AuthError",
        errors.EXIT_INTERNAL: "EXIT_INTERNAL",
        errors.EXIT_RESUME: "EXIT_RESUME",
        errors.EXIT_INTERRUPTED: "EXIT_INTERRUPTED",
    }
    assert len(named) == 18, "two meanings share one code"
    assert named == t


def test_the_worker_and_the_rate_limiter_have_codes_of_their_own():
    assert errors.EXIT_LEASE_LOST not in (errors.InputError.exit_code, errors.EXIT_FAILED)
    assert RateLimitTimeout.exit_code != errors.StorageError.exit_code


def test_exit_code_is_the_one_table() -> None:
    assert errors.exit_code(errors.JobNotFoundError("x")) == 5
    assert errors.exit_code(errors.ChecksumMismatchError("k", "a", "b")) == 6
    assert errors.exit_code(KeyboardInterrupt()) == errors.EXIT_INTERRUPTED == 130
    assert errors.exit_code(ZeroDivisionError()) == errors.EXIT_INTERNAL == 70
    message = errors.failure_message(errors.ConfigError("bad", hint="fix it"))
    assert message == "error: bad\n  hint: fix it"


def test_the_worker_reports_a_bug_with_its_traceback_on_stderr() -> None:
    # a backend spec that is not JSON is a bug of the executor that wrote it: exit 70, traceback in the log
    p = subprocess.run(
        [sys.executable, "-m", "slurmctl.worker", "--job", "j1", "--task", "t0", "--backend", "{nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 70, p.stderr
    assert p.stderr.startswith("internal error: JSONDecodeError")
    assert "Traceback (most recent call last)" in p.stderr
