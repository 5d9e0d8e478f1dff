"""Fault-injection suite: real processes, real signals, real full and vanishing file systems.

Each test runs a small map job through the real CLI (``python -m slurmctl``) on the local backend and
the local executor, injects one kind of fault, recovers with the documented commands only
(``slurmctl submit JOB_FILE --resume JOB``, ``slurmctl resubmit JOB``, ``slurmctl status JOB --watch``,
``slurmctl results JOB -o out.jsonl``, ``slurmctl cancel``), and checks three things:

1. every input item is in the merged output exactly once (``results -o out.jsonl``);
2. the job ends ``succeeded``: no fault leaves a job in a state that no documented command recovers;
3. the handler was called at most ``1 + k`` times per item, where ``k`` counts the SIGKILLs of a
   worker of the item's task that found the item not yet committed in the worker's checkpoint
   (read from the killed attempt's ``checkpoint.sqlite`` on scratch right after the kill). Items of
   tasks whose worker nobody killed are handled exactly once. The handler counts its calls by
   appending the item id to a log file opened with ``O_APPEND`` (one ``write`` per call, so lines
   never interleave between processes).

Modules, one per kind of fault:

    test_kill_workers.py   SIGKILL of workers at random points of a running local job
    test_kill_runner.py    SIGKILL of the local runner (the job record's runner_pid) mid-job
    test_kill_submit.py    SIGKILL of ``slurmctl submit`` itself at each step of the coordinator,
                           through ``killpoint.py`` (wraps the step's function, kills on its Nth call)
    test_enospc.py         a full backend root and a full worker scratch (small tmpfs)
    test_storage_outage.py the backend root vanishes (renamed away) or turns read-only, then returns

Timing is random and seeded: every assertion message names the seed and the command that replays the
case (``SLURMCTL_FAULT_SEED=<seed> .venv/bin/pytest <test id>``). Inputs are small and handlers fast
so that the whole folder runs in a few minutes on two cores.

Tests that need root and ``mount`` (ENOSPC, read-only outage) skip with the reason when those are
missing, and fail instead under ``CI=true``. Run: ``.venv/bin/pytest tests/faults -x -q`` (marker
``faults``).
"""
