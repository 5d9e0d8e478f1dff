"""CommandRunner: retry classification, backoff, call counting, errors.

The "Slurm commands" here are small real executables on a temporary PATH (real subprocesses), so
exit codes, stderr and timeouts are exercised end to end.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path

import pytest

from slurmctl.errors import SchedulerQueryError, SubmissionError
from slurmctl.slurm.client import SlurmClient
from slurmctl.slurm.runner import CommandRunner, RetryPolicy, is_transient

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "slurm"


def fake_command(
    bin_dir: Path, name: str, *, fail_times: int, stderr: str, stdout: str = "", rc: int = 1
) -> Path:
    """Write an executable ``name`` that fails ``fail_times`` times (stderr, exit rc) then prints stdout.

    Each run appends its argv to ``<name>.log`` so tests can see exactly what ran.
    """
    counter = bin_dir / f"{name}.count"
    counter.write_text("0")
    script = bin_dir / name
    script.write_text(
        f"""#!/bin/sh
echo "$@" >> "{bin_dir}/{name}.log"
n=$(cat "{counter}")
echo $((n + 1)) > "{counter}"
if [ "$n" -lt {fail_times} ]; then
  printf '%s\\n' '{stderr}' >&2
  exit {rc}
fi
printf '%s' '{stdout}'
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def runner_for(bin_dir: Path, **kw) -> tuple[CommandRunner, list[float]]:
    sleeps: list[float] = []
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")
    return CommandRunner(env=env, sleep=sleeps.append, **kw), sleeps


def test_socket_timed_out_twice_then_success_is_retried(tmp_path):
    fake_command(
        tmp_path,
        "squeue",
        fail_times=2,
        stderr="squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation",
        stdout="61_1\x1f63\x1f61\x1f1\x1fCOMPLETED\x1fNone\x1f2026-11-23T10:44:22\x1f2026-11-23T10:44:23"
        "\x1f0:03\x1fUNLIMITED\x1fvm\x1fgold-live\n",
    )
    runner, sleeps = runner_for(tmp_path, retry=RetryPolicy(attempts=5, initial=0.5, factor=2, max_delay=8))
    rows = SlurmClient(runner).squeue(["61"])
    assert [r.job_id for r in rows] == ["61_1"]
    assert sleeps == [0.5, 1.0]  # exponential backoff between the three attempts
    assert runner.calls == Counter({"squeue": 1})  # one logical call...
    assert runner.executions == Counter({"squeue": 3})  # ...three processes
    assert len((tmp_path / "squeue.log").read_text().splitlines()) == 3


def test_transient_failure_gives_up_after_attempts_with_clear_error(tmp_path):
    fake_command(tmp_path, "sacct", fail_times=99, stderr="sacct: error: Unable to contact slurm controller")
    runner, sleeps = runner_for(tmp_path, retry=RetryPolicy(attempts=3, initial=1, factor=3, max_delay=2))
    with pytest.raises(SchedulerQueryError) as err:
        SlurmClient(runner).sacct(["1"])
    assert sleeps == [1, 2]  # capped at max_delay
    assert "after 3 attempts" in str(err.value) and "Unable to contact" in str(err.value)
    assert "scontrol ping" in str(err.value)  # the hint says what to check


def test_definitive_error_is_not_retried(tmp_path):
    fake_command(
        tmp_path,
        "sbatch",
        fail_times=99,
        stderr="sbatch: error: Batch job submission failed: Invalid partition name specified",
    )
    runner, sleeps = runner_for(tmp_path)
    with pytest.raises(SubmissionError) as err:
        SlurmClient(runner).sbatch(wrap="true", options={"partition": "nosuch"})
    assert sleeps == []
    assert runner.executions["sbatch"] == 1
    e = err.value
    assert e.returncode == 1 and "Invalid partition" in e.stderr
    assert e.command[0] == "sbatch" and "--partition=nosuch" in e.command and "--parsable" in e.command


def test_sbatch_timeout_does_not_submit_twice_when_the_job_exists(tmp_path):
    # sbatch "times out" but the controller did create the job: before retrying, the client finds
    # the job by its submission token (in --comment) and returns it instead of submitting again.
    sbatch = tmp_path / "sbatch"
    sbatch.write_text(
        f"""#!/bin/sh
for a in "$@"; do case "$a" in --comment=*) echo "${{a#--comment=}}" > "{tmp_path}/token";; esac; done
echo run >> "{tmp_path}/sbatch.log"
echo 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation' >&2
exit 1
"""
    )
    squeue = tmp_path / "squeue"
    squeue.write_text(f"""#!/bin/sh\nprintf '4242\\037%s\\n' "$(cat "{tmp_path}/token")"\n""")
    for p in (sbatch, squeue):
        p.chmod(0o755)
    runner, _ = runner_for(tmp_path)
    assert SlurmClient(runner).sbatch(wrap="true") == "4242"
    assert (tmp_path / "sbatch.log").read_text().count("run") == 1
    assert runner.calls == Counter({"sbatch": 1, "squeue": 1})


def test_our_timeout_counts_as_transient(tmp_path):
    slow = tmp_path / "sinfo"
    slow.write_text("#!/bin/sh\nexec sleep 5\n")
    slow.chmod(0o755)
    runner, sleeps = runner_for(tmp_path, timeout=0.3, retry=RetryPolicy(attempts=2, initial=0.1))
    with pytest.raises(SchedulerQueryError, match=r"no answer in 0\.3 s"):
        SlurmClient(runner).sinfo()
    assert sleeps == [0.1]


def test_missing_command_says_so(tmp_path):
    runner = CommandRunner(env={"PATH": str(tmp_path)})
    with pytest.raises(SchedulerQueryError, match="scontrol: command not found"):
        SlurmClient(runner).config()


def test_squeue_invalid_job_id_means_gone_not_error(tmp_path):
    # Recorded: `squeue -j <one purged id>` exits 1 with this text; it is an answer, not a failure.
    stderr = (GOLDEN / "squeue_single_invalid.stderr").read_text().strip()
    rc = int((GOLDEN / "squeue_single_invalid.rc").read_text())
    fake_command(tmp_path, "squeue", fail_times=99, stderr=stderr, rc=rc)
    runner, sleeps = runner_for(tmp_path)
    assert SlurmClient(runner).squeue(["99999"]) == []
    assert sleeps == [] and runner.executions["squeue"] == 1


def test_shared_counter_across_runners(tmp_path):
    fake_command(tmp_path, "scontrol", fail_times=0, stderr="", stdout="Slurmctld(primary) at vm is UP\n")
    shared: Counter[str] = Counter()
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ.get('PATH', '')}")
    a = SlurmClient(CommandRunner(env=env, calls=shared))
    b = SlurmClient(CommandRunner(env=env, calls=shared))
    assert a.ping().up and b.ping().up
    assert shared == Counter({"scontrol": 2})


def test_environment_is_pinned(tmp_path):
    fake_command(tmp_path, "sinfo", fail_times=0, stderr="", stdout="")
    envdump = tmp_path / "sinfo"
    envdump.write_text(f'#!/bin/sh\nenv > "{tmp_path}/env"\n')
    runner = CommandRunner(
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "SLURM_TIME_FORMAT": "relative", "SQUEUE_FORMAT": "%i"}
    )
    SlurmClient(runner).sinfo()
    env = (tmp_path / "env").read_text()
    assert "SLURM_TIME_FORMAT=standard" in env and "SQUEUE_FORMAT" not in env


@pytest.mark.parametrize(
    ("stderr", "transient"),
    [
        ("squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation", True),
        ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", True),
        ("scontrol: error: Unable to contact slurm controller (connect failure)", True),
        ("sacct: error: slurm_persist_conn_open_without_init: failed to open: Connection refused", True),
        ("error: Transport endpoint is not connected", True),
        ((GOLDEN / "squeue_single_invalid.stderr").read_text(), False),
        ((GOLDEN / "sbatch_invalid_partition.stderr").read_text(), False),
        ((GOLDEN / "sbatch_array_too_big.stderr").read_text(), False),
        ('sacct: error: Invalid field requested: "NoSuchField"', False),
        ("sbatch: unrecognized option '--bogus'", False),
        ("something else entirely", False),
    ],
)
def test_transient_classification(stderr, transient):
    assert is_transient(1, stderr) is transient


def test_success_is_never_transient():
    assert not is_transient(0, "Socket timed out")
