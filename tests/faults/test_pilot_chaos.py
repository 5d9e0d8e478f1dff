"""Pilot chaos on real Slurm (issue 12, acceptance "Pilot chaos on real Slurm").

A pilot job (two pilots claiming tasks under leases) is submitted without ``--wait``. While both
pilots hold tasks, one worker is ``kill -9``'d (its pid from its task record's ``owner``) and the
other pilot is ``scancel``'d (SIGTERM: it finishes its item, commits, snapshots, re-queues its task
and exits 75); then a user runs only documented commands: ``slurmctl resubmit JOB`` and
``slurmctl status JOB --watch``. What the product promises (docs/architecture.md, Worker:
"Checkpoint" and "Signals"; src/slurmctl/lifecycle.py):

* the job succeeds and ``results`` holds every item exactly once;
* exactly ONE pilot submission beyond the first (counted by an ``sbatch`` shim on PATH), made only
  once every earlier pilot had ended;
* a handler call repeats only for items of the task the killed worker held that its checkpoint had
  not committed when it died (commits every 1 s / 5,000 items); the scancelled pilot checkpoints
  cleanly, so none of its items repeats;
* the kill costs its task one failed attempt (``failures``), the scancel costs nothing.

``bench/pilot_chaos.py`` runs the same scenario (``run_chaos``) N times in a row.

A second test lets the pilots run into their time limit under ``submit --wait``: the SIGUSR1 lead
makes each worker checkpoint and exit 75, the watcher resubmits only when every pilot has ended,
and no item is handled twice.

Timing is random and seeded: every assertion message prints the seed and how to replay it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from tests.faults.harness import (
    FaultJob,
    Replay,
    Result,
    alive,
    committed_ids,
    make_job,
    owner_pid,
    wait_until,
)

pytestmark = pytest.mark.slurm

# Logs one line per sbatch call ("<unix time> <context> <args>", context: the Slurm job it runs in,
# or "client") with one O_APPEND write, then runs the real sbatch.
SBATCH_SHIM = """#!/bin/sh
printf '%s %s %s\\n' "$(date +%s.%N)" "${{SLURM_JOB_ID:-client:$PPID}}" "$*" >> {log}
exec {real} "$@"
"""

# The chaos job: 8 tasks of 10 items at 0.2 s per item (2 s per task, ~8 s for two pilots), so
# both faults land while the pilots hold tasks, and a checkpoint commit (every 1 s) leaves about
# 5 items uncommitted at a kill.
CHAOS_ITEMS = 80
CHAOS_PER_TASK = 10
CHAOS_DELAY_S = 0.2


@dataclass
class PilotJob(FaultJob):
    """A FaultJob run on Slurm, every slurmctl command seeing an sbatch shim first on PATH."""

    shim_dir: Path = Path()

    @property
    def sbatch_log(self) -> Path:
        return self.dir / "sbatch.log"

    def env(self, **extra: str) -> dict[str, str]:
        env = super().env(**extra)
        env["PATH"] = f"{self.shim_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def sbatch_calls(self) -> list[tuple[float, str]]:
        """(unix time, arguments) of every sbatch call made from the client side so far."""
        if not self.sbatch_log.exists():
            return []
        calls = []
        for line in self.sbatch_log.read_text().splitlines():
            stamp, context, *args = line.split(" ", 2)
            if context.startswith("client"):
                calls.append((float(stamp), " ".join(args)))
        return calls

    def sbatch_rounds(self) -> list[tuple[float, int]]:
        """(time of its first call, sbatch calls) of each client command that submitted: one
        `resubmit` may make several sbatch calls (an escalated task gets an array of its own)."""
        if not self.sbatch_log.exists():
            return []
        rounds: list[tuple[float, int]] = []
        callers: list[tuple[str, float]] = []
        for line in self.sbatch_log.read_text().splitlines():
            stamp, context, *_ = line.split(" ", 2)
            if not context.startswith("client"):
                continue
            # the same process within 2 s: one decision (a watch loop deciding twice is two rounds)
            if callers and callers[-1][0] == context and float(stamp) - callers[-1][1] < 2.0:
                rounds[-1] = (rounds[-1][0], rounds[-1][1] + 1)
            else:
                rounds.append((float(stamp), 1))
            callers.append((context, float(stamp)))
        return rounds

    def submissions(self) -> list[tuple[str, list[int], float]]:
        """(array job id, its indices, submit time) of every pilot submission in the job manifest."""
        try:
            doc = json.loads((self.root / "jobs" / self.job_id / "job.json").read_bytes())
        except (OSError, ValueError):
            return []
        out = []
        for g in doc.get("groups", []):
            for s in g.get("submissions", []):
                spec = str(s["array"]).split("%")[0]
                out.append((str(s["array_job_id"]), expand(spec), float(s["submitted_at"])))
        return out

    def pilot_log_tail(self, lines: int = 40) -> str:
        """The last lines of every pilot's Slurm output file, for failure messages."""
        d = self.root / "jobs" / self.job_id / "logs" / "slurm"
        parts = []
        for p in sorted(d.glob("*.out")) if d.is_dir() else []:
            text = p.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {p.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(no pilot output)"


def expand(spec: str) -> list[int]:
    """Indices of an ``--array`` value without throttle ("0-1", "0,3-4")."""
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def make_pilot_job(
    tmp: Path,
    replay: Replay,
    *,
    n: int,
    items_per_task: int,
    delay_s: float,
    executor: str,
    resources: str = "{mem_gb: 0.25}",
) -> PilotJob:
    """The fault suite's call-counting job (tests/faults/harness.py) as a pilot job on Slurm, with
    an sbatch shim in ``tmp/shims``. Returns it, not submitted."""
    base = make_job(tmp, replay, n=n, items_per_task=items_per_task, delay_s=delay_s)
    shim_dir = tmp / "shims"
    shim_dir.mkdir(exist_ok=True)
    real = shutil.which("sbatch")
    if real is None:
        pytest.fail("sbatch is not on PATH", pytrace=False)
    job = PilotJob(**{f: getattr(base, f) for f in base.__dataclass_fields__}, shim_dir=shim_dir)
    shim = shim_dir / "sbatch"
    shim.write_text(SBATCH_SHIM.format(log=job.sbatch_log, real=real))
    shim.chmod(0o755)
    job.job_file.write_text(
        "name: pilotchaos\n"
        "input: {path: in.jsonl}\n"
        "handler: {function: 'h:handle'}\n"
        f"batch: {{items: {items_per_task}}}\n"
        "output: {format: jsonl}\n"
        f"resources: {resources}\n"
        f"executor: {executor}\n"
    )
    return job


def scancel_arrays(root: Path) -> None:
    """Cancel every Slurm array recorded under ``root`` (a failed run must not leave pilots)."""
    ids = []
    for manifest in root.glob("**/jobs/*/job.json"):
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(manifest.read_text())
            ids += [str(s["array_job_id"]) for g in doc.get("groups", []) for s in g.get("submissions", [])]
    if ids:
        subprocess.run(["scancel", *ids], check=False, capture_output=True)


@pytest.fixture(autouse=True)
def _cancel_leftover_arrays(tmp_path: Path) -> Iterator[None]:
    yield
    scancel_arrays(tmp_path)


def sacct_elements(array_ids: list[str], replay: Replay, timeout: float = 30) -> dict[str, tuple[str, float]]:
    """``<array>_<index>`` -> (final Slurm state, end time as unix time) of every element of
    ``array_ids``, waiting (up to ``timeout``) until slurmdbd has an end time for each."""
    if not array_ids:
        return {}
    deadline = time.monotonic() + timeout
    while True:
        p = subprocess.run(
            ["sacct", "-X", "-P", "-n", "-j", ",".join(array_ids), "-o", "JobID,State,End"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        rows: dict[str, tuple[str, float]] = {}
        pending = p.returncode != 0
        for line in p.stdout.splitlines():
            jid, state, end = line.split("|")
            if "[" in jid:  # a not yet started remainder of an array
                pending = True
                continue
            try:
                rows[jid] = (state.split()[0], datetime.fromisoformat(end).timestamp())
            except ValueError:  # "Unknown": not ended (yet)
                pending = True
        if not pending:
            return rows
        if time.monotonic() > deadline:
            pytest.fail(
                f"sacct has no end for every pilot after {timeout:.0f} s: {p.stdout}{p.stderr}\n{replay}"
            )
        time.sleep(1)


def check_resubmissions(job: PilotJob, extra_expected: int | None) -> tuple[int, list[str]]:
    """Check the submitting commands (sbatch rounds: one command's sbatch calls): each one after
    the first comes after every pilot of the earlier rounds ended (sacct end time), and before the
    job's last task finished; with ``extra_expected``, exactly that many beyond the first. Returns
    (extra rounds, problems)."""
    calls = job.sbatch_calls()
    rounds = job.sbatch_rounds()
    subs = job.submissions()
    problems: list[str] = []
    extra = len(rounds) - 1
    if extra_expected is not None and extra != extra_expected:
        problems.append(f"{extra} pilot submission(s) beyond the first, expected {extra_expected}")
    if len(subs) != len(calls):
        problems.append(f"{len(calls)} sbatch call(s) but {len(subs)} submission(s) in the job manifest")
    if len(rounds) < 2 or not subs:
        return extra, problems
    ends = sacct_elements([a for a, _, _ in subs], job.replay)
    last_finished = max((t.get("finished_at") or 0.0) for t in job.task_records().values())
    before = rounds[0][1]  # submissions made by the earlier rounds
    for k, (stamp, n) in enumerate(rounds[1:], start=1):
        # sacct's end times have a resolution of one second: an element counts as ended by an sbatch
        # made within the same second.
        still = [
            f"{a}_{i} ({ends.get(f'{a}_{i}', ('not in sacct', 0))[0]})"
            for a, idx, _ in subs[:before]
            for i in idx
            if ends.get(f"{a}_{i}", ("", float("inf")))[1] > stamp + 1.0
        ]
        if still:
            problems.append(f"submission round #{k + 1} at {stamp:.1f} while pilot(s) {still} had not ended")
        if stamp > last_finished:
            problems.append(f"submission round #{k + 1} at {stamp:.1f}, after the job's last task finished")
        before += n
    return extra, problems


@dataclass
class ChaosOutcome:
    """What one chaos run did and found. ``problems`` is empty iff every promise held."""

    seed: int
    job_id: str = ""
    state: str = ""
    watch_code: int | None = None
    resubmit: str = ""
    sbatch_calls: int = 0
    extra_submissions: int = 0
    killed: str = ""
    killed_tasks: dict[str, int] = field(default_factory=dict)  # task -> items uncommitted at the kill
    scancelled: str = ""
    twice: dict[int, int] = field(default_factory=dict)  # item -> handler calls, for calls > 1
    outside: dict[int, int] = field(default_factory=dict)  # the calls no kill explains
    failures: dict[str, int] = field(default_factory=dict)  # task -> failed attempts, for > 0
    exactly_once: bool = False  # results exited 0 with every item once
    allowed: Counter[int] = field(default_factory=Counter, repr=False)  # item -> repeats a kill explains
    problems: list[str] = field(default_factory=list)
    details: str = ""

    def line(self) -> str:
        """One line for the bench's per-run report."""
        within = (
            "all in the killed worker's uncommitted items"
            if not self.outside
            else f"{len(self.outside)} outside"
        )
        return (
            f"seed {self.seed} job {self.job_id}: {self.state or 'unknown'} "
            f"(watch exit {self.watch_code}); sbatch {self.sbatch_calls}; "
            f"killed {self.killed} {self.killed_tasks}, scancelled {self.scancelled}; "
            f"handled twice {len(self.twice)} ({within}); failures {self.failures or 0}; "
            f"resubmit said: {self.resubmit!r}"
            + ("" if not self.problems else "\n    PROBLEMS: " + "\n    ".join(self.problems))
        )


def element_names() -> dict[str, str]:
    """Slurm job id -> ``<array>_<index>`` of every array element squeue lists."""
    p = subprocess.run(
        ["squeue", "-h", "-o", "%A %i"], capture_output=True, text=True, check=False, timeout=60
    )
    return dict(line.split() for line in p.stdout.splitlines() if len(line.split()) == 2)


def running_pilots(job: PilotJob, host: str) -> dict[str, tuple[str, str, int]]:
    """Pilot element (``<array>_<index>``) -> (task id, owner, pid) of the tasks held now by live
    workers of this host. The element is the record's ``submission``, or for a record without one
    (older code) squeue's name for the Slurm job id in the owner (``host:pid:slurm<id>``): on
    22.05 ``scancel <id of an element>`` is refused ("Invalid job id") and ``scancel <array id>``
    ends the whole array."""
    out = {}
    names: dict[str, str] | None = None
    for tid, t in job.task_records().items():
        owner = t.get("owner") or ""
        pid = owner_pid(owner, host)
        if t.get("state") != "running" or not pid or not alive(pid):
            continue
        element = t.get("submission")
        if not element and ":slurm" in owner:
            names = element_names() if names is None else names
            element = names.get(owner.rpartition(":slurm")[2])
        if element:
            out[element] = (tid, owner, pid)
    return out


def run_chaos(tmp: Path, replay: Replay) -> ChaosOutcome:
    """One chaos run in ``tmp`` (see the module docstring). Returns its outcome; raises pytest's
    Failed only when something does not happen in time (a command that hangs, pilots that never
    run), naming the seed."""
    rng = replay.rng
    host = socket.gethostname()
    job = make_pilot_job(
        tmp,
        replay,
        n=CHAOS_ITEMS,
        items_per_task=CHAOS_PER_TASK,
        delay_s=CHAOS_DELAY_S,
        executor="{kind: slurm, mode: pilot, workers: 2, lease_s: 10, poll_min_s: 0.5, poll_max_s: 2}",
    )
    o = ChaosOutcome(seed=replay.seed)
    try:
        _chaos(job, o, rng, host)
    finally:
        scancel_arrays(job.root)
    return o


def _chaos(job: PilotJob, o: ChaosOutcome, rng: random.Random, host: str) -> None:
    replay = job.replay
    r = job.submit()
    o.job_id = job.job_id
    if r.code != 0:
        o.problems.append(f"submit exited {r.code}\n{r}")
        return
    # Both pilots hold a task: the faults land on two workers that are busy.
    wait_until(lambda: len(running_pilots(job, host)) >= 2, 120, "both pilots to hold a task", replay, 0.05)
    time.sleep(rng.uniform(0.3, 3.0))
    pilots = running_pilots(job, host)
    if len(pilots) < 2:  # one of them is between two tasks right now: look again
        wait_until(
            lambda: len(running_pilots(job, host)) >= 2, 30, "both pilots to hold a task", replay, 0.02
        )
        pilots = running_pilots(job, host)
    victim_el, other_el = rng.sample(sorted(pilots), 2)
    _, victim_owner, victim_pid = pilots[victim_el]
    o.killed, o.scancelled = f"{victim_el} (pid {victim_pid})", other_el

    def kill() -> None:
        _kill(job, o, victim_owner, victim_pid)

    def scancel() -> None:
        # scancel exits 0 even when it refuses a job id: its stderr says so.
        p = subprocess.run(["scancel", other_el], capture_output=True, text=True, check=False)
        replay.note(f"scancel {other_el} (it held {pilots[other_el][0]} when chosen) {p.stderr.strip()}")
        if p.returncode != 0 or "error" in p.stderr:
            o.problems.append(f"the test's scancel {other_el} failed: {p.stderr.strip()}")

    first, second = (kill, scancel) if rng.random() < 0.5 else (scancel, kill)
    first()
    time.sleep(rng.uniform(0.0, 2.0))
    second()
    time.sleep(rng.uniform(0.0, 3.0))
    r = job.cli("resubmit", job.job_id)
    o.resubmit = (r.out + r.err).strip().replace("\n", " ")[:300]
    replay.note(f"resubmit: exit {r.code}: {o.resubmit}")
    if r.code != 0 or "Traceback" in r.out + r.err:
        o.problems.append(f"resubmit exited {r.code}\n{r}")
    w = job.cli("status", job.job_id, "--watch", timeout=240)
    o.watch_code = w.code
    o.state = str(job.job_record().get("state"))
    replay.note(f"status --watch: exit {w.code}, job {o.state}")
    if w.code != 0 or o.state != "succeeded":
        o.problems.append(f"status --watch exited {w.code}, job {o.state}\n{w}")
    _check_after(job, o, w)


def _kill(job: PilotJob, o: ChaosOutcome, owner: str, pid: int) -> None:
    """SIGKILL the worker ``pid`` and note, per task it held when it died, the items its
    checkpoint had not committed (the only items the product may hand to the handler again)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        job.replay.note(f"SIGKILL pid {pid} ({owner}): it had already ended")
        o.problems.append(f"the test's kill found worker {pid} ended already (its pilot ran out of work?)")
        return
    wait_until(lambda: not alive(pid), 10, f"killed worker {pid} to end", job.replay)
    for tid, t in job.task_records().items():
        if t.get("owner") != owner or t.get("state") != "running":
            continue
        attempt = int(t["attempt"])
        path = job.checkpoint(tid, attempt)
        committed = committed_ids(path)
        items = job.task_items(tid)
        redo = [i for i in items if committed is None or i not in committed]
        o.killed_tasks[tid] = len(redo)
        o.allowed.update(redo)
        job.replay.note(
            f"SIGKILL pid {pid} ({owner}) holding {tid} attempt {attempt}: "
            f"{'unreadable checkpoint' if committed is None else f'{len(committed)} items committed'}"
            f"{'' if path.exists() else ' (no checkpoint file)'}, {len(redo)} may be handled again"
        )
    if not o.killed_tasks:
        job.replay.note(f"SIGKILL pid {pid} ({owner}): it held no task at that moment")


def _check_after(job: PilotJob, o: ChaosOutcome, watch: Result) -> None:
    """The promises, checked after the job ended; each broken one becomes a line of ``o.problems``."""
    out = job.dir / "out.jsonl"
    r = job.cli("results", job.job_id, "-o", str(out))
    if r.code != 0:
        o.problems.append(f"results exited {r.code}\n{r}")
    else:
        ids = Counter(json.loads(line)["_item_id"] for line in out.read_text().splitlines() if line.strip())
        missing = sorted(set(range(job.n)) - set(ids))
        dup = sorted(i for i, c in ids.items() if c > 1)
        o.exactly_once = not missing and not dup and len(ids) == job.n
        if not o.exactly_once:
            o.problems.append(f"output not exactly once: missing {missing[:10]}, twice {dup[:10]}")
    records = job.task_records()
    failed = sorted(tid for tid, t in records.items() if t.get("state") != "succeeded")
    if failed:
        o.problems.append(f"task(s) not succeeded: {failed}")
    o.failures = {tid: int(t.get("failures") or 0) for tid, t in records.items() if t.get("failures")}
    # A SIGKILL costs its task one attempt; the scancel (an interruption with a checkpoint) nothing.
    unexplained = {tid: n for tid, n in o.failures.items() if n > (1 if tid in o.killed_tasks else 0)}
    if unexplained:
        o.problems.append(f"failed attempts no kill explains: {unexplained}")
    o.sbatch_calls = len(job.sbatch_calls())
    o.extra_submissions, problems = check_resubmissions(job, extra_expected=1)
    o.problems += problems
    calls = job.calls()
    allowed = o.allowed
    o.twice = {i: c for i, c in sorted(calls.items()) if c > 1}
    o.outside = {i: c for i, c in o.twice.items() if c > 1 + allowed[i]}
    never = [i for i in range(job.n) if calls[i] == 0]
    if never:
        o.problems.append(f"{len(never)} item(s) never handled: {never[:10]}")
    if o.outside:
        by_task = Counter(f"t{i // job.items_per_task:07d}" for i in o.outside)
        o.problems.append(
            f"{len(o.outside)} item(s) handled more often than 1 + the killed worker's uncommitted "
            f"items allow, per task {dict(sorted(by_task.items()))}: {dict(list(o.outside.items())[:10])}"
        )
    if o.problems:
        o.details = f"{job.state_summary()}\nsbatch calls: {job.sbatch_calls()}\n{job.pilot_log_tail()}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("run", [0, 1])
def test_pilot_chaos_exactly_once(slurm_cluster, tmp_path, replay, run):
    o = run_chaos(tmp_path, replay)
    print(o.line())
    assert not o.problems, f"{o.line()}\n{o.details}\n{replay}"


@pytest.mark.timeout(420)
def test_pilot_time_limit_resumes_without_spurious_resubmission(slurm_cluster, tmp_path, replay):
    # 220 items x 0.5 s = 110 s of handler time for two pilots of 1 minute each. slurmctld checks
    # time limits every 30 s, so SIGUSR1 (40 s lead) reaches a pilot 20-50 s into its run: the
    # first pilots cannot finish, each checkpoints and exits 75, and `submit --wait` resubmits
    # when (and only when) every pilot has ended.
    job = make_pilot_job(
        tmp_path,
        replay,
        n=220,
        items_per_task=10,
        delay_s=0.5,
        executor="{kind: slurm, mode: pilot, workers: 2, lease_s: 20, signal_lead_s: 40, poll_max_s: 3}",
        resources="{mem_gb: 0.25, time_min: 1}",
    )
    r = job.submit("--wait", timeout=400)
    o = ChaosOutcome(seed=replay.seed, job_id=job.job_id, watch_code=r.code)
    o.state = str(job.job_record().get("state"))
    if r.code != 0 or o.state != "succeeded":
        o.problems.append(f"submit --wait exited {r.code}, job {o.state}\n{r}")
    if job.job_id:
        _check_after_time_limit(job, o)
    print(o.line())
    assert not o.problems, f"{o.line()}\n{o.details}\n{replay}"


def _check_after_time_limit(job: PilotJob, o: ChaosOutcome) -> None:
    out = job.dir / "out.jsonl"
    r = job.cli("results", job.job_id, "-o", str(out))
    if r.code != 0:
        o.problems.append(f"results exited {r.code}\n{r}")
    else:
        ids = Counter(json.loads(line)["_item_id"] for line in out.read_text().splitlines() if line.strip())
        o.exactly_once = sorted(ids) == list(range(job.n))
        if not o.exactly_once:
            o.problems.append("output not exactly once")
    records = job.task_records()
    o.failures = {tid: int(t.get("failures") or 0) for tid, t in records.items() if t.get("failures")}
    if o.failures:
        o.problems.append(f"time-limit interruptions counted as failed attempts: {o.failures}")
    o.sbatch_calls = len(job.sbatch_calls())
    o.extra_submissions, problems = check_resubmissions(job, extra_expected=None)
    o.problems += problems
    if o.extra_submissions < 1:
        o.problems.append(
            "no resubmission: the pilots finished before their time limit (the test proves nothing)"
        )
    ends = sacct_elements([a for a, _, _ in job.submissions()], job.replay)
    timeouts = sorted(k for k, (state, _) in ends.items() if state == "TIMEOUT")
    if timeouts:
        o.problems.append(f"pilot(s) killed at the time limit instead of stopping on SIGUSR1: {timeouts}")
    calls = job.calls()
    o.twice = {i: c for i, c in sorted(calls.items()) if c > 1}
    o.outside = dict(o.twice)
    if o.twice:
        o.problems.append(f"{len(o.twice)} item(s) handled twice: {dict(list(o.twice.items())[:10])}")
    job.replay.note(f"pilot ends: {ends}")
    if o.problems:
        o.details = f"{job.state_summary()}\nsbatch calls: {job.sbatch_calls()}\n{job.pilot_log_tail()}"
