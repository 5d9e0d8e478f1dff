#!/usr/bin/env python3
"""A stand-in for sacct used ONLY by the poller-logic tests (windows, cursor, retries, timeouts, locks).

Real Slurm behaviour is tested against the dev cluster in test_sb_slurm_integration.py; this script
replays a recorded/synthetic sacct -P file the way slurmdbd selects with ``-s <terminal> -S -E``: a job
(and its steps) is printed when its End lies in [S, E]; ``-u`` filters by user; without ``-D`` the
earlier runs of requeued jobs (State REQUEUED) are left out, as sacct lists only a job's last run.
Environment knobs: FAKE_SACCT_DATA (the file), FAKE_SACCT_FAIL_FIRST=N (fail the first N calls, counted in
FAKE_SACCT_COUNTER), FAKE_SACCT_SLEEP=sec (hang before printing, for timeouts), FAKE_SACCT_LOG (append
each argv as a JSON line).
"""

import json
import os
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    if args == ["--version"]:
        print("slurm 22.05.8 (fake)")
        return 0
    if args == ["--helpformat"]:  # the fields of the scoreboard's query, as sacct lists them
        missing = os.environ.get("FAKE_SACCT_MISSING_FIELD", "")
        fields = "JobIDRaw MaxRSS AveRSS ElapsedRaw End User State AllocCPUS NNodes ReqMem AllocTRES JobName"
        print(" ".join(f for f in fields.split() if f != missing))
        return 0
    log = os.environ.get("FAKE_SACCT_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"argv": args, "tz": os.environ.get("TZ")}) + "\n")
    counter = os.environ.get("FAKE_SACCT_COUNTER")
    fail_first = int(os.environ.get("FAKE_SACCT_FAIL_FIRST", "0"))
    if counter:
        n = 0
        if os.path.exists(counter):
            with open(counter) as fh:
                n = int(fh.read())
        with open(counter, "w") as fh:
            fh.write(str(n + 1))
        if n < fail_first:
            sys.stderr.write("sacct: error: slurmdbd: Connection refused\n")
            return 1
    if os.environ.get("FAKE_SACCT_SLEEP"):
        time.sleep(float(os.environ["FAKE_SACCT_SLEEP"]))
    start = args[args.index("-S") + 1]
    end = args[args.index("-E") + 1]
    user = args[args.index("-u") + 1] if "-u" in args else None
    duplicates = "-D" in args
    keep = False
    with open(os.environ["FAKE_SACCT_DATA"]) as fh:
        for line in fh:
            f = line.rstrip("\n").split("|")  # JobIDRaw|MaxRSS|AveRSS|ElapsedRaw|End|User|...
            if len(f) < 6:
                keep = False  # garbage rows: no End to select by
            elif "." not in f[0]:
                e = f[4]
                keep = start <= e <= end and (user is None or f[5].split("@")[0].lower() == user)
                keep = keep and (duplicates or len(f) < 7 or f[6] != "REQUEUED")
            if keep:
                sys.stdout.write(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
