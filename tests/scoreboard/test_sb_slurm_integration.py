"""Real Slurm: run completed, failed, timed-out, cancelled, memory-killed, requeued, array and GPU jobs on
the dev cluster (scripts/dev-cluster), poll them through real sacct, check the sums against what was run.

Jobs run as a dedicated local user ``sbtest`` (created if missing; root submits with --uid), so the
checks are not disturbed by other engineers' jobs on the shared dev cluster.
"""

import datetime
import os
import pwd
import subprocess
import sys
import time

import pytest
import sbhelpers
from sbhelpers import BIN

sys.path.insert(0, os.path.dirname(sbhelpers.HERE))  # tests/: slurm_fixtures
from slurm_fixtures import slurm_cluster  # noqa: F401

from slurmctl.scoreboard import derive, layout, model
from slurmctl.scoreboard.jsonlog import JsonLog
from slurmctl.scoreboard.poller import Poller

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
USER = "sbtest"
MIB = 1024 * 1024


def _need_user():
    try:
        pwd.getpwnam(USER)
        return
    except KeyError:
        pass
    if os.geteuid() != 0:
        msg = f"needs root to create the test user {USER!r} and submit jobs as it"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", USER], check=True)


def sbatch(*args):
    cmd = [
        "sbatch",
        "--parsable",
        f"--uid={USER}",
        f"--gid={USER}",
        "-p",
        "debug",
        "-o",
        "/dev/null",
        "-e",
        "/dev/null",
        *args,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd="/tmp")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def sacct_x(start, ids, runs=None):
    """Independent oracle: job-level rows (-X), Elapsed as [D-]HH:MM:SS, parsed here, not by the package.

    Every run of a requeued job is listed (-D); the earlier ones (State REQUEUED) go to ``runs`` as
    ``(raw id, elapsed s, cpus)``, the last one to the returned ``{raw id: row}``."""
    out = subprocess.run(
        [
            "sacct",
            "-n",
            "-P",
            "-X",
            "-D",
            "-u",
            USER,
            "-S",
            start,
            "-E",
            "now",
            "-o",
            "JobID,JobIDRaw,State,Elapsed,AllocCPUS,AllocTRES",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TZ="UTC"),
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        jobid, raw, state, elapsed, cpus, tres = line.split("|")
        if jobid.split("_")[0] in ids or raw in ids:
            h, m, s = (elapsed.split("-")[-1]).split(":")
            days = int(elapsed.split("-")[0]) if "-" in elapsed else 0
            secs = days * 86400 + int(h) * 3600 + int(m) * 60 + int(s)
            if state == "REQUEUED":
                if runs is not None:
                    runs.append((raw, secs, int(cpus)))
                continue
            rows[raw] = (jobid, state, secs, int(cpus), tres)
    return rows


@pytest.fixture(scope="module")
def ran_jobs(slurm_cluster):  # noqa: F811
    _need_user()
    t0 = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(seconds=1)
    ids = {
        "ok": sbatch("-J", "ok", "-c", "2", "--mem=100M", "-t", "2", "--wrap", "sleep 3"),
        "fail": sbatch("-J", "fail", "--mem=60M", "-t", "2", "--wrap", "exit 3"),
        "timeout": sbatch("-J", "tmo", "--mem=60M", "-t", "1", "--wrap", "sleep 300"),
        "oom": sbatch(
            "-J",
            "oom",
            "--mem=50M",
            "-t",
            "2",
            "--wrap",
            "python3 -c 'x=bytearray(400*1024*1024); import time; time.sleep(10)'",
        ),
        "array": sbatch("-J", "arr", "--mem=40M", "-t", "2", "--array=0-2", "--wrap", "sleep 1"),
        "gpu": sbatch("-J", "gpu", "--mem=60M", "-t", "2", "--gres=gpu:a100:1", "--wrap", "sleep 2"),
        "cancel": sbatch("-J", "can", "--mem=60M", "-t", "5", "--wrap", "sleep 300"),
        "requeue": sbatch("-J", "rq", "--requeue", "--mem=40M", "-t", "2", "--wrap", "sleep 20"),
        "percpu": sbatch("-J", "pc", "-c", "2", "--mem-per-cpu=30M", "-t", "2", "--wrap", "sleep 1"),
    }
    start = t0.strftime("%Y-%m-%dT%H:%M:%S")
    # The dev cluster may be shared: our jobs can queue behind others' (override for a busy cluster,
    # together with pytest --timeout).
    wait = float(os.environ.get("SLURM_SB_TEST_JOB_WAIT_SEC", "500"))
    deadline = time.time() + wait
    cancelled = requeued = False
    running_since = None
    while time.time() < deadline:
        runs = []
        rows = sacct_x(start, set(ids.values()), runs)
        if not cancelled and rows.get(ids["cancel"], ("", "PENDING"))[1] == "RUNNING":
            subprocess.run(["scancel", ids["cancel"]], check=True)
            cancelled = True
        if not requeued and rows.get(ids["requeue"], ("", "PENDING"))[1] == "RUNNING":
            running_since = running_since or time.time()
        if not requeued and running_since and time.time() - running_since >= 3:
            # Requeue it mid-run (>= 3 s in, so its first run has an ElapsedRaw > 0), then let it start
            # again soon (a requeued job waits ~2 min otherwise). Not at once: slurmd refuses a job
            # credential created in the same second as the revocation of the previous run's one
            # ("Killing non-startable batch JobId=...: Job credential revoked" -> the job FAILED, seen
            # in CI with a 0.5 s pause), because it compares whole-second times (ctime <= revoked).
            subprocess.run(["scontrol", "requeue", ids["requeue"]], check=True)
            time.sleep(2.5)
            subprocess.run(["scontrol", "update", f"jobid={ids['requeue']}", "StartTime=now"], check=True)
            requeued = True
        states = [r[1] for r in rows.values()]
        if (
            len(rows) == 11
            and runs
            and all(s.split()[0] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED") for s in states)
        ):
            break
        time.sleep(3)
    else:
        subprocess.run(["scancel", *ids.values()], check=False)  # leave nothing queued on a shared cluster
        pytest.fail(f"dev cluster jobs did not finish within {wait:g} s: {rows}")
    time.sleep(2)  # slurmctld -> slurmdbd: let the last job records land
    return t0, ids, rows, runs


def test_window_poll_matches_what_ran(ran_jobs, tmp_path):
    t0, ids, rows, runs = ran_jobs
    root = str(tmp_path)
    c = sbhelpers.cfg(root, cluster="dev", sacct="sacct", rate_limit_per_min=60.0)
    p = Poller(c, log=JsonLog("dev", None, quiet=True))
    end = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S")
    r = p.read_window(t0.strftime("%Y-%m-%dT%H:%M:%S"), end, "test", user=USER)
    assert r.skipped == 0 and r.jobs_new == 11 and r.runs_new == len(runs) == 1, r.as_dict()
    states = {k: rows[v][1].split()[0] for k, v in ids.items() if v in rows}
    assert states["ok"] == "COMPLETED" and states["fail"] == "FAILED" and states["timeout"] == "TIMEOUT"
    assert states["cancel"] == "CANCELLED" and states["oom"] in ("OUT_OF_MEMORY", "FAILED")
    assert states["requeue"] == "COMPLETED" and runs[0][0] == ids["requeue"] and runs[0][1] >= 1
    s = sbhelpers.month_totals(root, "dev")[USER]
    # the requeued job counts once; the time of its earlier run counts too (sacct -D, State REQUEUED)
    elapsed = sum(v[2] for v in rows.values()) + sum(r[1] for r in runs)
    cpu = sum(v[2] * v[3] for v in rows.values()) + sum(r[1] * r[2] for r in runs)
    gpu_el = rows[ids["gpu"]][2]
    assert s[:7] == [
        11,
        1,
        3,
        elapsed,
        cpu,
        gpu_el,
        gpu_el,
    ]  # ONE a100: gres/gpu:a100=1 + gres/gpu=1 not summed
    # ReqMem as requested, once per job; 22.05 prints the job total, also for --mem-per-cpu (2 x 30M = 60M)
    assert s[7] == (100 + 60 * 4 + 50 + 40 * 4 + 60) * MIB
    assert s[9] > 400 * 10**6  # the memory-killed job's MaxRSS comes from its step row: steps were folded
    assert 0 < s[8] <= s[9]
    derive.derive(root, "dev", derive.Policy(), write_merged=True)
    lb = model.load_leaderboard(layout.leaderboard_file(root, "ALL", "rolling-30d", "failed_jobs"))
    assert (USER, 3) in [(u, v) for _r, u, v in lb["rows"]]
    # the public files carry the same numbers: the monthly rollup and the user's all-time file
    from slurmctl.scoreboard import store

    months = store.list_months(root, "dev")  # one, unless the jobs straddled a month's end
    docs = [model.load_user(layout.user_file(root, "dev", USER))]
    if len(months) == 1:
        docs.append(model.load_rollup(layout.rollup_file(root, "dev", months[0]))["users"][USER])
    for doc in docs:
        assert doc["jobs"] == 11 and doc["failed_jobs"] == 3 and doc["gpu_jobs"] == 1
        assert doc["clock_hours"] == round(cpu / 3600, 6) and doc["elapsed_hours"] == round(elapsed / 3600, 6)
        assert doc["sum_req_mem_mb"] == round(s[7] / 1e6, 6) and doc["sum_max_mem_mb"] == round(s[9] / 1e6, 6)


def test_cli_poll_once_on_real_slurm_is_idempotent(ran_jobs, tmp_path):
    _t0, ids, _rows, _runs = ran_jobs
    root = str(tmp_path)
    month = datetime.datetime.utcnow().strftime("%Y-%m")
    args = [
        sys.executable,
        BIN,
        "poll",
        "--once",
        "--root",
        root,
        "--cluster",
        "dev",
        "--backfill-start",
        month + "-01",
        "--rate-limit",
        "60",
        "--config",
        "/nonexistent.yaml",
        "--quiet",
    ]
    env = dict(os.environ, SLURM_SB_LAG_SEC="0", SLURM_SB_HOME_DIR="")
    r1 = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r1.returncode == 0, r1.stderr
    from slurmctl.scoreboard import store

    st = store.read_state(layout.month_state(root, "dev", month), month)
    assert all(int(i) in set(st.ids) for i in ids.values() if i)  # every job we ran was read
    assert st.totals()[USER][0] >= 11 and st.runs  # the requeued job's earlier run is in the state
    health = sbhelpers.load_json(layout.health_file(root, "dev"))
    assert health["last_error"] is None and "22.05" in health.get("sacct_version", "")
    before = sbhelpers.month_totals(root, "dev")
    r2 = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r2.returncode == 0, r2.stderr
    after = sbhelpers.month_totals(root, "dev")
    # a second poll re-reads the overlap: nothing already counted changes (new jobs of others may appear)
    assert all(after[u][:1] >= before[u][:1] for u in before) and after[USER] == before[USER]
    out = subprocess.run(
        [sys.executable, BIN, "doctor", "--root", root, "--config", "/nonexistent.yaml"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert out.returncode == 0, out.stdout


def test_probe_on_real_slurm_finds_every_field_and_the_accounting_it_needs(slurm_cluster):  # noqa: F811
    """sacct 22.05 knows every field of the query; the dev cluster gathers memory and tracks GPUs."""
    r = subprocess.run(
        [sys.executable, BIN, "probe", "--config", "/nonexistent.yaml"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all 11 present" in r.stdout and "jobacct_gather/linux" in r.stdout
    tres = next(ln for ln in r.stdout.splitlines() if ln.startswith("AccountingStorageTRES"))
    assert "gres/gpu" in tres and "GPU metrics stay 0" not in tres
    assert "22.05" in next(ln for ln in r.stdout.splitlines() if ln.startswith("slurmdbd (sacctmgr)"))
