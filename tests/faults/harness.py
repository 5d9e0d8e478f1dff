"""Helpers of the fault-injection suite: a small job with a call-counting handler, the CLI as a user
runs it, the documented recovery loop, the exactly-once and handler-call checks, and small file
systems (tmpfs, or a loop-mounted image) for ENOSPC and outages.

Nothing here imports slurmctl: the suite reads what the docs say is on disk (docs/architecture.md,
"On-disk layout": ``<root>/state/jobs/<job>.json``, ``<root>/state/tasks/<job>/t*.json``, the
checkpoint at ``$SLURMCTL_SCRATCH/slurmctl/<job>/<task>/a<N>/checkpoint.sqlite``), so it keeps
testing the same contract while the code behind it changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")

# The handler: one O_APPEND write of "<item id>\n" per call, before any work, so a call that a
# SIGKILL interrupts is still counted. PAD makes rows big where a test needs the store to fill up.
HANDLER = """\
import os
import time

LOG = {log!r}
DELAY = {delay!r}
PAD = "x" * {pad}
_fd = None


def handle(record, ctx):
    global _fd
    if _fd is None:
        _fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, b"%d\\n" % record["n"])
    if DELAY:
        time.sleep(DELAY)
    return {{"n": record["n"], "pad": PAD}} if PAD else {{"n": record["n"]}}
"""


@dataclass
class Result:
    """A finished command: argv, exit code, stdout, stderr."""

    argv: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n  exit {self.code}\n  stdout: {self.out[-2000:]}"
            f"\n  stderr: {self.err[-3000:]}"
        )


@dataclass
class Replay:
    """The seed of a test's random choices and how to replay it; ``str()`` goes in assertion messages."""

    seed: int
    nodeid: str
    rng: random.Random = field(init=False)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def note(self, what: str) -> None:
        """Record a fault injected (shown with the seed when an assertion fails, and printed)."""
        self.notes.append(what)
        print(what)

    def __str__(self) -> str:
        faults = "".join(f"\n    {n}" for n in self.notes[-30:])
        return (
            f"[seed {self.seed}; replay: SLURMCTL_FAULT_SEED={self.seed} .venv/bin/pytest '{self.nodeid}']"
            f"\n  faults injected:{faults or ' none'}"
        )


def new_replay(nodeid: str) -> Replay:
    """A Replay seeded from $SLURMCTL_FAULT_SEED, or a fresh random seed."""
    env = os.environ.get("SLURMCTL_FAULT_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(2**31)
    print(f"fault seed {seed} (replay: SLURMCTL_FAULT_SEED={seed} .venv/bin/pytest '{nodeid}')")
    return Replay(seed, nodeid)


@dataclass
class FaultJob:
    """A job file over ``n`` items ``{"n": i}`` (item id = i) with the call-counting handler."""

    dir: Path
    root: Path
    scratch: Path
    n: int
    items_per_task: int
    replay: Replay
    job_id: str = ""
    pids: set[int] = field(default_factory=set)  # runner and worker pids seen: ended at teardown

    @property
    def job_file(self) -> Path:
        return self.dir / "job.yaml"

    @property
    def calls_log(self) -> Path:
        return self.dir / "calls.log"

    @property
    def tasks(self) -> int:
        return -(-self.n // self.items_per_task)

    def task_items(self, task_id: str) -> range:
        """Item ids of task ``t<index>`` (the partitioner cuts batches of ``items_per_task`` in order)."""
        i = int(task_id.lstrip("t"))
        return range(i * self.items_per_task, min(self.n, (i + 1) * self.items_per_task))

    # -- the CLI --------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, SLURMCTL_ROOT=str(self.root), SLURMCTL_SCRATCH=str(self.scratch))
        env.update(extra)
        return env

    def cli(self, *args: str, timeout: float = 120) -> Result:
        """``slurmctl ARGS`` in the job's directory, as a user runs it. Fails the test on a timeout
        (a command that hangs is a fault the suite reports), naming the command and the seed."""
        argv = [sys.executable, "-m", "slurmctl", *args]
        return run(argv, self.env(), self.dir, timeout, self.replay, self.state_summary)

    def worker(self, task_id: str, timeout: float = 120) -> Result:
        """``python -m slurmctl.worker`` for one task, exactly as the local executor starts it."""
        spec = json.dumps({"kind": "local", "root": str(self.root)})
        argv = [sys.executable, "-m", "slurmctl.worker", "--backend", spec, "--job", self.job_id]
        return run([*argv, "--task", task_id], self.env(), self.dir, timeout, self.replay, self.state_summary)

    def submit(self, *extra: str, timeout: float = 120) -> Result:
        """``slurmctl submit job.yaml``; sets ``job_id`` from the first stderr line ("job ID: ...")."""
        r = self.cli("submit", str(self.job_file), *extra, timeout=timeout)
        self.job_id = self.job_id or job_id_of(r)
        return r

    # -- what is on disk -------------------------------------------------------------------------
    def job_record(self) -> dict:
        """The job record's value; {} if it cannot be read (absent, or the root is away)."""
        return read_record(self.root / "state" / "jobs" / f"{self.job_id}.json")

    def task_records(self) -> dict[str, dict]:
        """Task id -> task record value, for the records that can be read now."""
        d = self.root / "state" / "tasks" / self.job_id
        try:
            names = sorted(p for p in os.listdir(d) if p.startswith("t") and p.endswith(".json"))
        except OSError:
            return {}
        recs = {name[:-5]: read_record(d / name) for name in names}
        return {k: v for k, v in recs.items() if v}

    def state_summary(self) -> str:
        """One line per task (state, attempt, owner, error) and the job's state, for failure messages."""
        job = self.job_record()
        lines = [f"job {self.job_id}: {job.get('state')} message={job.get('message')!r}"]
        for tid, t in self.task_records().items():
            lines.append(
                f"  {tid}: {t.get('state')} attempt={t.get('attempt')} owner={t.get('owner')} "
                f"exit={t.get('exit_code')} error={str(t.get('error'))[:300]!r}"
            )
        return "\n".join(lines)

    def checkpoint(self, task_id: str, attempt: int) -> Path:
        task_dir = self.scratch / f"slurmctl-{os.getuid()}" / self.job_id / task_id
        return task_dir / f"a{attempt}" / "checkpoint.sqlite"

    def calls(self) -> Counter[int]:
        """Handler calls per item id, from the O_APPEND log."""
        if not self.calls_log.exists():
            return Counter()
        return Counter(int(line) for line in self.calls_log.read_text().split())

    def remember_pids(self) -> None:
        """Note the runner and worker pids the records name on this host (ended at teardown)."""
        host = socket.gethostname()
        job = self.job_record()
        if job.get("runner_pid") and job.get("runner_host") == host:
            self.pids.add(int(job["runner_pid"]))
        for t in self.task_records().values():
            pid = owner_pid(t.get("owner"), host)
            if pid:
                self.pids.add(pid)

    def end_leftovers(self) -> None:
        """SIGKILL the processes of this job the test caused that still run (by pid, only if their
        command line still names this job), so no test leaves work running behind it."""
        self.remember_pids()
        for pid in sorted(self.pids):
            if self.job_id and self.job_id in proc_cmdline(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def make_job(
    tmp: Path,
    replay: Replay,
    *,
    n: int,
    items_per_task: int,
    delay_s: float = 0.0,
    pad: int = 0,
    max_parallel: int = 2,
    staging: str = "auto",
    record_pad: int = 0,
    root: Path | None = None,
    scratch: Path | None = None,
    extra: str = "",
) -> FaultJob:
    """Write the input (``record_pad`` bytes of padding per record), the handler (``pad`` bytes of
    padding per row, ``delay_s`` per call) and job.yaml in ``tmp``; returns the FaultJob (not
    submitted)."""
    job = FaultJob(
        dir=tmp,
        root=root or tmp / "root",
        scratch=scratch or tmp / "scratch",
        n=n,
        items_per_task=items_per_task,
        replay=replay,
    )
    job.root.mkdir(parents=True, exist_ok=True)
    job.scratch.mkdir(parents=True, exist_ok=True)
    (tmp / "h.py").write_text(HANDLER.format(log=str(job.calls_log), delay=delay_s, pad=pad))
    blob = f', "blob": "{"y" * record_pad}"' if record_pad else ""
    (tmp / "in.jsonl").write_text("".join(f'{{"n": {i}{blob}}}\n' for i in range(n)))
    job.job_file.write_text(
        "name: fault\n"
        f"input: {{path: in.jsonl, staging: {staging}}}\n"
        "handler: {function: 'h:handle'}\n"
        f"batch: {{items: {items_per_task}}}\n"
        "output: {format: jsonl}\n"
        f"executor: {{kind: local, max_parallel: {max_parallel}}}\n" + extra
    )
    return job


def run(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    timeout: float,
    replay: Replay,
    describe: Callable[[], str] | None = None,
) -> Result:
    """Run a command to its end; a timeout fails the test (the process group is killed first),
    with ``describe()`` (the job's records) in the message."""
    p = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        state = describe() if describe else ""
        pytest.fail(
            f"{' '.join(argv[2:])} did not end within {timeout:.0f} s\n  stderr: {err[-2000:]}\n"
            f"{state}\n{replay}",
            pytrace=False,
        )
    return Result([Path(argv[0]).name, *argv[1:]], p.returncode, out, err)


def job_id_of(r: Result) -> str:
    """The job id ``submit`` says first on stderr ("job ID: partitioning ..."), else its last stdout line."""
    for line in r.err.splitlines():
        if line.startswith("job ") and ":" in line:
            return line.split()[1].rstrip(":")
    lines = r.out.strip().splitlines()
    return lines[-1] if lines else ""


def read_record(path: Path) -> dict:
    """A state record's value, or {} if it is absent or unreadable right now."""
    try:
        return json.loads(path.read_bytes())["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def owner_pid(owner: str | None, host: str) -> int | None:
    """The pid of a task record's ``owner`` (``host:pid[:slurmJOB]``) if it runs on ``host``."""
    if not owner:
        return None
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != host or not parts[1].isdigit():
        return None
    return int(parts[1])


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(
    pred: Callable[[], bool], timeout: float, what: str, replay: Replay, poll: float = 0.02
) -> None:
    """Poll ``pred`` until true; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{replay}", pytrace=False)
        time.sleep(poll)


def committed_ids(path: Path) -> set[int] | None:
    """Item ids the checkpoint at ``path`` has committed (the union of its runs), read without
    writing to it; an empty set if there is no checkpoint; None if it cannot be read."""
    if not path.exists():
        return set()
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            runs = db.execute("select first_id, last_id from chunks").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return {i for first, last in runs for i in range(first, last + 1)}


def assert_clean(r: Result, replay: Replay, *, codes: tuple[int, ...] | None = None) -> None:
    """A command's outcome a user can act on: no traceback, no internal error (exit 70), and (with
    ``codes``) one of the expected exit codes."""
    text = r.out + r.err
    assert "Traceback" not in text, f"a traceback reached the user\n{r}\n{replay}"
    assert r.code != 70 and "internal error" not in text, f"exit 70 / internal error\n{r}\n{replay}"
    if codes is not None:
        assert r.code in codes, f"exit {r.code}, expected one of {codes}\n{r}\n{replay}"


def recover(job: FaultJob, *, rounds: int = 3, watch_timeout: float = 90) -> list[Result]:
    """The documented recovery: ``status JOB --watch`` until the job ends; if it did not succeed,
    ``resubmit JOB`` and watch again, at most ``rounds`` times. Fails the test if the job is not
    ``succeeded`` by then (a state no documented command recovers). Returns the commands run."""
    history: list[Result] = []
    for _ in range(rounds):
        w = job.cli("status", job.job_id, "--watch", timeout=watch_timeout)
        history.append(w)
        job.remember_pids()
        assert_clean(w, job.replay)
        if job.job_record().get("state") == "succeeded":
            return history
        r = job.cli("resubmit", job.job_id)
        history.append(r)
        assert_clean(r, job.replay, codes=(0,))
    shown = "\n".join(str(h) for h in history)
    pytest.fail(
        f"job not succeeded after {rounds} rounds of `status --watch` + `resubmit`: no documented "
        f"command recovers it\n{job.state_summary()}\n{shown}\n{job.replay}",
        pytrace=False,
    )


def assert_exactly_once(job: FaultJob) -> None:
    """``results JOB -o out.jsonl`` exits 0 and holds every item exactly once."""
    out = job.dir / "out.jsonl"
    r = job.cli("results", job.job_id, "-o", str(out))
    assert_clean(r, job.replay, codes=(0,))
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    ids = Counter(row["_item_id"] for row in rows)
    missing = sorted(set(range(job.n)) - set(ids))
    twice = sorted(i for i, c in ids.items() if c > 1)
    extra = sorted(set(ids) - set(range(job.n)))
    assert not missing and not twice and not extra, (
        f"output not exactly once: {len(missing)} missing {missing[:10]}, {len(twice)} twice "
        f"{twice[:10]}, {len(extra)} unknown {extra[:10]}\n{job.state_summary()}\n{job.replay}"
    )
    assert all(row["n"] == row["_item_id"] for row in rows), f"rows and item ids disagree\n{job.replay}"


def assert_calls(job: FaultJob, allowed_extra: Mapping[int, int] | None = None) -> None:
    """Every item handled at least once and at most ``1 + allowed_extra.get(item, 0)`` times."""
    allowed_extra = allowed_extra or {}
    calls = job.calls()
    never = [i for i in range(job.n) if calls[i] == 0]
    over = {i: c for i, c in calls.items() if c > 1 + allowed_extra.get(i, 0)}
    by_task = Counter(f"t{i // job.items_per_task:07d}" for i in over)
    assert not never and not over, (
        f"handler calls out of bounds: {len(never)} item(s) never handled {never[:10]}; "
        f"{len(over)} item(s) handled more often than 1 + their uncommitted kills, per task "
        f"{dict(sorted(by_task.items()))}, e.g. {dict(list(sorted(over.items()))[:8])}"
        f"\n{job.state_summary()}\n{job.replay}"
    )


def assert_logs_clean(job: FaultJob) -> None:
    """The job's runner log (the runner's and its workers' stderr) holds no traceback and no
    internal error: every failure a fault caused was reported with a message and a documented code."""
    log = job.root / "jobs" / job.job_id / "logs" / "runner.log"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return
    bad = [
        line
        for line in text.splitlines()
        if "Traceback" in line or "internal error" in line or re.search(r"exited 70\b", line)
    ]
    assert not bad, (
        f"{len(bad)} line(s) of {log} show a traceback or an internal error (exit 70) instead of a "
        "documented failure:\n  " + "\n  ".join(b[:400] for b in bad[:8]) + f"\n{job.replay}"
    )


# -- root, mounts, small file systems --------------------------------------------------------------


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail under CI=true (CI must run every fault)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"fault suite cannot run this case: {reason}", pytrace=False)
    pytest.skip(reason)


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def small_fs(mountpoint: Path, size_bytes: int) -> Iterator[str]:
    """Mount a file system of ``size_bytes`` at ``mountpoint``: tmpfs, or else an ext4 image on a
    loop device. Yields its kind ("tmpfs" or "loop"); unmounts on exit (lazily if still busy).
    Skips (fails under CI=true) when neither can be mounted, saying why."""
    if os.geteuid() != 0:
        unavailable("needs root to mount a small file system (tmpfs or a loop image)")
    if shutil.which("mount") is None:
        unavailable("no mount(8) on PATH")
    mountpoint.mkdir(parents=True, exist_ok=True)
    r = _sh("mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mountpoint))
    kind, image = "tmpfs", None
    if r.returncode != 0:
        tmpfs_err = r.stderr.strip()
        image = mountpoint.with_name(mountpoint.name + ".img")
        with open(image, "wb") as f:
            f.truncate(max(size_bytes, 2 << 20))
        mk = _sh("mkfs.ext4", "-q", "-F", str(image))
        r = _sh("mount", "-o", "loop", str(image), str(mountpoint)) if mk.returncode == 0 else mk
        if r.returncode != 0:
            image.unlink()
            unavailable(f"mount -t tmpfs refused ({tmpfs_err}); loop image refused ({r.stderr.strip()})")
        kind = "loop"
    try:
        yield kind
    except BaseException:
        # Keep what was on it (logs, records) beside it for the failure's analysis; the filler is
        # the only big file and is left out.
        with contextlib.suppress(OSError):
            shutil.copytree(
                mountpoint, mountpoint.with_name(mountpoint.name + ".kept"),
                ignore=shutil.ignore_patterns(".filler"), symlinks=True,
            )  # fmt: skip
        raise
    finally:
        if _sh("umount", str(mountpoint)).returncode != 0:
            _sh("umount", "-l", str(mountpoint))
        if image is not None:
            image.unlink(missing_ok=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the file system of directory ``path`` until about ``leave_bytes`` stay free (a filler
    file, written in chunks; returns its path: unlink it to free the space)."""
    filler = path / ".filler"
    want = free_bytes(path) - leave_bytes
    chunk = b"\0" * (256 << 10)
    with open(filler, "ab") as f:
        while want > 0:
            try:
                f.write(chunk[: min(len(chunk), want)])
                f.flush()
            except OSError:
                break
            want -= min(len(chunk), want)
    return filler


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` read-only for everyone while the block runs: a read-only bind mount of it
    onto itself (opening a file for writing there fails with EROFS, as on a file system that went
    read-only; files already open keep working). Removed on exit, lazily if busy. Skips (fails
    under CI=true) when bind mounts are refused."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        unavailable("needs root and mount(8) for a read-only bind mount")
    r = _sh("mount", "--bind", str(directory), str(directory))
    if r.returncode != 0:
        unavailable(f"mount --bind refused: {r.stderr.strip()}")
    try:
        r = _sh("mount", "-o", "remount,bind,ro", str(directory))
        assert r.returncode == 0, f"mount -o remount,bind,ro {directory}: {r.stderr}"
        yield
    finally:
        if _sh("umount", str(directory)).returncode != 0:
            _sh("umount", "-l", str(directory))
