"""StatusWatcher: backoff schedule, one command per poll, squeue -> sacct fallback, sacct window.

squeue and sacct are small real executables on a temporary PATH that replay a scripted sequence of
outputs in the exact format Slurm 22.05 prints (see tests/golden/slurm/).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from slurmctl.slurm.client import SlurmClient
from slurmctl.slurm.jobids import TaskRanges
from slurmctl.slurm.runner import CommandRunner
from slurmctl.slurm.states import JobState
from slurmctl.slurm.watcher import BackoffSchedule, StatusWatcher, WatchTimeoutError

S = "\x1f"


def test_backoff_schedule_grows_caps_and_resets():
    sched = BackoffSchedule(initial=1.0, factor=1.5, cap=30.0)
    interval = None
    seen = []
    for _ in range(12):
        interval = sched.next(interval, changed=False)
        seen.append(round(interval, 3))
    assert seen[:5] == [1.0, 1.5, 2.25, 3.375, 5.062]
    assert seen[-1] == 30.0 and max(seen) == 30.0
    assert sched.next(30.0, changed=True) == 1.0


def qline(job_id: str, raw: int, state: str, task: str = "N/A") -> str:
    parent = job_id.split("_")[0]
    return S.join(
        [
            job_id,
            str(raw),
            parent,
            task,
            state,
            "None",
            "2026-11-23T10:44:22",
            "N/A",
            "0:00",
            "UNLIMITED",
            "",
            "w",
        ]
    )


def aline(job_id: str, raw: int, state: str, exit_code: str = "0:0") -> str:
    return S.join([job_id, str(raw), state, exit_code])


def replay(bin_dir: Path, name: str, outputs: list[str]) -> None:
    """An executable that prints outputs[n] on its n-th run (the last one forever) and logs its argv."""
    for i, out in enumerate(outputs):
        (bin_dir / f"{name}.{i}").write_text(out)
    (bin_dir / name).write_text(
        f"""#!/bin/sh
echo "$@" >> "{bin_dir}/{name}.log"
n=$(cat "{bin_dir}/{name}.n" 2>/dev/null || echo 0)
echo $((n + 1)) > "{bin_dir}/{name}.n"
f="{bin_dir}/{name}.$n"
[ -f "$f" ] || f="{bin_dir}/{name}.{len(outputs) - 1}"
cat "$f"
"""
    )
    (bin_dir / name).chmod(0o755)


@pytest.fixture
def client(tmp_path) -> SlurmClient:
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ.get('PATH', '')}")
    return SlurmClient(CommandRunner(env=env))


def test_one_command_per_poll_and_fallback_to_sacct_for_purged_tasks(tmp_path, client):
    pending = qline("70_[0-3%2]", 70, "PENDING", "0-3%2")
    replay(
        tmp_path,
        "squeue",
        [
            pending,
            pending,
            pending,
            "\n".join(
                [
                    qline("70_0", 71, "COMPLETED", "0"),
                    qline("70_1", 72, "RUNNING", "1"),
                    qline("70_[2-3%2]", 70, "PENDING", "2-3%2"),
                ]
            ),
            # Task 1 was RUNNING and is gone without us seeing it end; task 2 too: ask sacct.
            "\n".join([qline("70_0", 71, "COMPLETED", "0"), qline("70_3", 70, "RUNNING", "3")]),
            "\n".join([qline("70_3", 70, "COMPLETED", "3")]),
        ],
    )
    replay(
        tmp_path,
        "sacct",
        [
            "\n".join(
                [
                    aline("70_0", 71, "COMPLETED"),
                    aline("70_1", 72, "COMPLETED"),
                    aline("70_2", 73, "FAILED", "1:0"),
                    aline("70_3", 70, "RUNNING"),
                ]
            )
        ],
    )
    submitted = datetime(2026, 11, 23, 10, 44, 22).astimezone()
    w = StatusWatcher(client, ["70"], submitted_at=submitted, expected_tasks={"70": 4})
    runner = client.runner
    sources, intervals = [], []
    for _ in range(7):
        before = sum(runner.executions.values())
        snap = w.poll()
        assert sum(runner.executions.values()) == before + 1  # exactly one Slurm command per poll
        sources.append(snap.source)
        intervals.append(w.interval)
        if snap.finished:
            break
    assert sources == ["squeue", "squeue", "squeue", "squeue", "squeue", "sacct", "squeue"]
    assert intervals == [1.0, 1.5, 2.25, 1.0, 1.0, 1.0, 1.0]
    assert snap.finished
    assert dict(w.jobs["70"].task_states()) == {
        0: JobState.COMPLETED,
        1: JobState.COMPLETED,
        2: JobState.FAILED,
        3: JobState.COMPLETED,
    }
    assert runner.calls == Counter({"squeue": 6, "sacct": 1})
    # squeue: one call for the array parent, with -t all (finished tasks stay listed MinJobAge seconds)
    assert (tmp_path / "squeue.log").read_text().splitlines()[0].startswith("-h -t all -j 70 -o")
    # sacct: allocations only, an explicit window from submission minus 5 minutes to now.
    sacct_args = (tmp_path / "sacct.log").read_text().split()
    start = (submitted - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    assert sacct_args[sacct_args.index("-S") + 1] == start
    assert sacct_args[sacct_args.index("-E") + 1] == "now"
    assert "-X" in sacct_args and sacct_args[sacct_args.index("-j") + 1] == "70"


def test_many_jobs_still_one_command(tmp_path, client):
    lines = [qline(f"{j}_[0-999]", j, "PENDING", "0-999") for j in range(100, 110)]
    replay(tmp_path, "squeue", ["\n".join(lines)])
    w = StatusWatcher(client, [str(j) for j in range(100, 110)], submitted_at=datetime.now().astimezone())
    snap = w.poll()
    assert client.runner.executions == Counter({"squeue": 1})
    assert snap.counts() == Counter({JobState.PENDING: 10_000})
    assert (tmp_path / "squeue.log").read_text().split()[4] == ",".join(str(j) for j in range(100, 110))


def test_job_gone_from_squeue_goes_to_sacct_and_stays_until_known(tmp_path, client):
    # squeue: "Invalid job id specified" (exit 1) = purged; sacct lags first, then knows.
    (tmp_path / "squeue").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n"
    )
    (tmp_path / "squeue").chmod(0o755)
    replay(tmp_path, "sacct", ["", aline("80", 80, "TIMEOUT")])
    w = StatusWatcher(client, ["80"], submitted_at=datetime.now().astimezone())
    assert w.poll().source == "squeue"
    s2 = w.poll()
    assert s2.source == "sacct" and not s2.finished
    s3 = w.poll()
    assert s3.source == "sacct" and s3.finished
    assert w.jobs["80"].state is JobState.TIMEOUT


def test_wait_sleeps_the_backoff_and_times_out_with_counts(tmp_path, client):
    replay(tmp_path, "squeue", [qline("90", 90, "PENDING")])
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    w = StatusWatcher(
        client, ["90"], submitted_at=datetime.now().astimezone(), clock=lambda: now[0], sleep=sleep
    )
    with pytest.raises(WatchTimeoutError, match=r"not finished after 10 s \(pending=1\)"):
        w.wait(timeout=10)
    assert slept == [1.0, 1.5, 2.25, 3.375, 1.875]  # the last sleep is cut to the deadline


def test_expected_tasks_accept_counts_ranges_and_lists():
    from slurmctl.slurm.watcher import _as_ranges

    assert list(_as_ranges(3)) == [0, 1, 2]
    assert list(_as_ranges([5, 1, 2, 3])) == [1, 2, 3, 5]
    assert _as_ranges(TaskRanges.parse("0-9:3")) == TaskRanges.parse("0-9:3")
    with pytest.raises(ValueError):
        _as_ranges(0)


def test_watch_ids_must_be_array_parents(client):
    with pytest.raises(ValueError, match="plain numeric"):
        StatusWatcher(client, ["70_1"], submitted_at=datetime.now().astimezone())


def test_a_pending_range_that_ended_before_starting_is_finished(tmp_path, client):
    """scancel of a pending array: Slurm prints its unstarted elements as one bracketed row with the
    final state. They are ended, not pending for ever (a watcher waiting on them never returned)."""
    replay(tmp_path, "squeue", [qline("80_[0-3]", 80, "CANCELLED", "0-3")])
    submitted = datetime(2026, 11, 23, 10, 44, 22).astimezone()
    w = StatusWatcher(client, ["80"], submitted_at=submitted, expected_tasks={"80": 4})
    snap = w.poll()
    assert snap.finished
    assert dict(w.jobs["80"].task_states()) == dict.fromkeys(range(4), JobState.CANCELLED)
