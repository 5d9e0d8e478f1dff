"""Synthetic sacct output for scale tests and benchmarks, with its exact expected totals.

``generate`` writes what ``sacct -a -n -P --noconvert -o <parser.FIELDS>`` prints for one month of
ended jobs: Zipfian users, a state mix, a GPU mix (typed GPUs listed twice, as real sacct does), job
rows followed by their steps (``.batch``, ``.extern``, sometimes ``.0``), array tasks, requeued jobs
(earlier runs listed first with State REQUEUED, as ``sacct -D`` does) and ReqMem in the modern (job
total) or old (``Mc``/``Gn``) form. It computes the expected per-user sums from its own
numbers, independently of the parser, so tests compare the pipeline against ground truth.
``write_root`` builds a whole scoreboard root quickly (for the TUI's first-paint benchmark).
"""

import bisect
import calendar
import datetime
import itertools
import random
from typing import IO, Dict, List, Optional

from .schemas import N_SUMS, zero_sums

STATES = (
    ("COMPLETED", 0.80),
    ("FAILED", 0.06),
    ("CANCELLED by 1234", 0.05),
    ("TIMEOUT", 0.04),
    ("OUT_OF_MEMORY", 0.03),
    ("NODE_FAIL", 0.01),
    ("PREEMPTED", 0.01),
)
FAILURES = frozenset(("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"))
MIB = 1024 * 1024
# About 60 % of all jobs are array tasks with this share of array submissions (as on busy clusters).
DEFAULT_ARRAY_SHARE = 0.057


def user_names(n: int) -> List[str]:
    """Return ``n`` distinct synthetic usernames (``u00000``...). Pure."""
    return [f"u{i:05d}" for i in range(n)]


def generate(
    out: IO[str],
    n_jobs: int,
    month: str = "2026-10",
    n_users: int = 2000,
    seed: int = 1,
    first_job_id: int = 1000000,
    zipf_s: float = 1.1,
    old_reqmem: bool = False,
    realm: bool = False,
    array_share: float = DEFAULT_ARRAY_SHARE,
    requeue_share: float = 0.0,
) -> Dict[str, List[int]]:
    """Write ``n_jobs`` jobs (with steps) ending in ``month`` to ``out``; return ``{user: exact sums}``.

    Deterministic for a given seed. Job ids are ascending from ``first_job_id`` (with gaps where a job
    is still running and therefore not listed). A submission is a job array with probability
    ``array_share`` (sizes exponential, mean 25 tasks: about 60 % of all jobs are array tasks, as on
    busy clusters); its tasks share user and resources and end within 4 hours of each other.
    ``array_share=0`` gives independent jobs with uniformly random end times (the worst case for the
    number of distinct user-days the daily sums must store). A job is requeued with probability
    ``requeue_share``: one or two earlier runs (State REQUEUED, a CANCELLED batch step) end before its
    last run starts, within the month; their time is in the expected sums, their memory is not.
    """
    rng = random.Random(seed)
    users = user_names(n_users)
    cum = list(itertools.accumulate(1.0 / (i + 1) ** zipf_s for i in range(n_users)))
    total_w = cum[-1]
    state_names = [s for s, _ in STATES]
    state_cum = list(itertools.accumulate(w for _, w in STATES))
    y, m = int(month[:4]), int(month[5:7])
    days = calendar.monthrange(y, m)[1]
    base = datetime.datetime(y, m, 1)
    span = days * 86400
    last_second = base + datetime.timedelta(seconds=span - 1)
    expected = {}  # type: Dict[str, List[int]]
    job_id = first_job_id
    write = out.write
    rand = rng.random
    left_in_array = 0
    array_end = base
    for _ in range(n_jobs):
        job_id += 1 if rand() < 0.97 else 2
        r = rand()
        state = state_names[min(bisect.bisect_left(state_cum, r * state_cum[-1]), len(STATES) - 1)]
        elapsed = int(rng.expovariate(1 / 1800.0)) if rand() < 0.9 else rng.randint(3600, 86400)
        if left_in_array:
            # an array task: same user and resources as its siblings, ending within hours of them
            left_in_array -= 1
            end = min(array_end + datetime.timedelta(seconds=rng.randrange(4 * 3600)), last_second)
        else:
            user = users[bisect.bisect_left(cum, rand() * total_w)]
            if rand() < array_share:
                left_in_array = max(1, int(rng.expovariate(1 / 25.0))) - 1
                array_end = base + datetime.timedelta(seconds=rng.randrange(span))
                end = array_end
            else:
                end = base + datetime.timedelta(seconds=rng.randrange(span))
            cpus = rng.choice((1, 1, 1, 2, 4, 8, 16, 32))
            nnodes = 1 if cpus <= 16 or rand() < 0.5 else 2
            g = rand()
            if g < 0.85:
                gpus, tres_gpu = 0, ""
            elif g < 0.95:
                gpus = rng.choice((1, 2, 4))
                tres_gpu = f",gres/gpu:a100={gpus},gres/gpu={gpus}"
            else:
                gpus = rng.choice((1, 2))
                tres_gpu = f",gres/gpu={gpus}"
            per_cpu_mib = rng.choice((1000, 2000, 4000))
            if old_reqmem:
                if rand() < 0.5:
                    req_text, req = f"{per_cpu_mib}Mc", per_cpu_mib * MIB * cpus
                else:
                    gb = rng.choice((16, 64))
                    req_text, req = f"{gb}Gn", gb * 1024 * MIB * nnodes
            else:
                req_text, req = f"{per_cpu_mib * cpus}M", per_cpu_mib * cpus * MIB
        end_s = end.strftime("%Y-%m-%dT%H:%M:%S")
        tres = f"billing={cpus},cpu={cpus}{tres_gpu},mem={req // MIB}M,node={nnodes}"
        shown_user = user.upper() + "@EXAMPLE.ORG" if realm and rand() < 0.1 else user
        run_s = 0  # the time of this job's earlier runs (requeued)
        if requeue_share and rand() < requeue_share:
            run_end = end - datetime.timedelta(seconds=elapsed + rng.randrange(1, 600))
            for _run in range(rng.choice((1, 1, 2))):
                run_el = rng.randrange(0, 3600)
                if run_end - datetime.timedelta(seconds=run_el) < base:
                    break
                r_end = run_end.strftime("%Y-%m-%dT%H:%M:%S")
                write(
                    f"{job_id}|||{run_el}|{r_end}|{shown_user}|REQUEUED|{cpus}|{nnodes}|{req_text}|{tres}\n"
                )
                mx = rng.randrange(1, 4 * per_cpu_mib) * MIB
                write(f"{job_id}.batch|{mx}|{mx // 2}|{run_el}|{r_end}||CANCELLED|{cpus}|{nnodes}||{tres}\n")
                run_s += run_el
                run_end -= datetime.timedelta(seconds=run_el + rng.randrange(1, 600))
        write(f"{job_id}|||{elapsed}|{end_s}|{shown_user}|{state}|{cpus}|{nnodes}|{req_text}|{tres}\n")
        # steps: batch always, extern usually, a srun step sometimes; RSS in bytes (--noconvert)
        max_rss = ave_rss = 0
        n_steps = 1 + (rand() < 0.9) + (rand() < 0.2)
        for name in ("batch", "extern", "0")[:n_steps]:
            mx = rng.randrange(1, 4 * per_cpu_mib) * 1024 * 1024 if name != "extern" else 1024 * 1024
            av = mx // 2
            max_rss = max(max_rss, mx)
            ave_rss = max(ave_rss, av)
            step_tres = f"cpu={cpus},mem={req // MIB}M,node={nnodes}"
            write(
                f"{job_id}.{name}|{mx}|{av}|{elapsed}|{end_s}||{state.split()[0]}|{cpus}|{nnodes}||{step_tres}\n"
            )
        acc = expected.get(user)
        if acc is None:
            acc = expected[user] = zero_sums()
        failed = 1 if state.split()[0] in FAILURES else 0
        time_s = elapsed + run_s
        contrib = (
            1,
            1 if gpus else 0,
            failed,
            time_s,
            cpus * time_s,
            time_s if gpus else 0,
            gpus * time_s,
            req,
            ave_rss,
            max_rss,
        )
        for i in range(N_SUMS):
            acc[i] += contrib[i]
    return expected


def write_root(
    root: str,
    clusters: List[str],
    n_users: int,
    months: int = 12,
    end_month: str = "2026-11",
    seed: int = 7,
    jobs_per_user_month: int = 20,
    user_files: bool = False,
    now: Optional[datetime.datetime] = None,
) -> None:
    """Write a complete scoreboard root: month states for ``months`` months by ``clusters`` with ``n_users``
    Zipf-active users, then every derived file (tables, leaderboards, merged, rollups; per-user files
    only with ``user_files`` because they dominate the time). Overwrites what is there."""
    from . import derive, store

    rng = random.Random(seed)
    users = user_names(n_users)
    y, m = int(end_month[:4]), int(end_month[5:7])
    month_list = []
    for i in range(months):
        mi = y * 12 + (m - 1) - (months - 1 - i)
        month_list.append(f"{mi // 12:04d}-{mi % 12 + 1:02d}")
    for cluster in clusters:
        next_id = 1000
        for month in month_list:
            st = store.MonthState(month)
            ndays = calendar.monthrange(int(month[:4]), int(month[5:7]))[1]
            n_ids = 0
            for rank, user in enumerate(users):
                if rng.random() > 0.8:
                    continue  # inactive this month
                # every active user has >= 3 jobs (so all of them are shown); a Zipf head has many more
                jobs = 3 + int(jobs_per_user_month * 50 / (rank + 1) ** 1.1 * rng.random())
                day = f"{rng.randint(1, ndays):02d}"
                el = jobs * rng.randint(60, 7200)
                gpu = jobs // 4
                sums = [
                    jobs,
                    gpu,
                    jobs // 10,
                    el,
                    el * 4,
                    el // 4,
                    el // 2,
                    jobs * 4 * 10**9,
                    jobs * 10**9,
                    jobs * 2 * 10**9,
                ]
                st.add(user, day, sums)
                n_ids += jobs
            from array import array

            st.ids = array("I", range(next_id, next_id + n_ids))
            next_id += n_ids
            st.generation = 1
            store.write_state(root, cluster, st)
        derive.derive(
            root,
            cluster,
            derive.Policy(),
            now=now,
            write_merged=cluster == clusters[-1],
            user_files=user_files,
        )
