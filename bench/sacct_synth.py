#!/usr/bin/env python3
"""Write one synthetic month of ``sacct -a -n -P --noconvert`` output (job rows + step rows).

    bench/sacct_synth.py --jobs 1000000 --month 2026-10 --out /tmp/month.sacct [--users 2000] [--seed 1]

Prints the expected per-user totals as JSON to --expected when given. The generator lives in
``slurmctl.scoreboard.synth`` (shared with the tests).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from slurmctl.scoreboard import synth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--jobs", type=int, default=1000000)
    ap.add_argument("--month", default="2026-10")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first-job-id", type=int, default=1000000)
    ap.add_argument("--old-reqmem", action="store_true", help="ReqMem in the pre-21.08 Mc/Gn form")
    ap.add_argument("--out", required=True)
    ap.add_argument("--expected", help="write the exact expected per-user sums here (JSON)")
    a = ap.parse_args()
    t = time.time()
    with open(a.out, "w", buffering=1 << 20) as fh:
        exp = synth.generate(
            fh,
            a.jobs,
            month=a.month,
            n_users=a.users,
            seed=a.seed,
            first_job_id=a.first_job_id,
            old_reqmem=a.old_reqmem,
        )
    if a.expected:
        with open(a.expected, "w") as fh:
            json.dump(exp, fh)
    size = os.path.getsize(a.out)
    print(f"wrote {a.jobs} jobs ({size / 1e6:.0f} MB) to {a.out} in {time.time() - t:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
