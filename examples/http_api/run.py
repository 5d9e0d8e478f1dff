"""Run the HTTP example end to end: start the API, submit the job and wait, merge the results.

python run.py [--root DIR]
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
from server import serve  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root")
    args = ap.parse_args()
    out = here / "out"
    out.mkdir(exist_ok=True)
    server = serve(0, str(out / "arrivals.jsonl"))
    env = dict(os.environ, EXAMPLE_API_URL=f"http://127.0.0.1:{server.server_address[1]}")
    root = ["--root", args.root] if args.root else []
    cli = [sys.executable, "-m", "slurmctl"]
    sub = subprocess.run(
        [*cli, "submit", str(here / "job.yaml"), "--wait", *root], env=env, capture_output=True, text=True
    )
    sys.stderr.write(sub.stderr)
    job_id = sub.stdout.strip().splitlines()[-1] if sub.stdout.strip() else ""
    if not job_id:
        return sub.returncode or 1
    # Some words are refused on purpose: results exits 9 ("done, with failed items") and lists them.
    res = subprocess.run([*cli, "results", job_id, "-o", str(out / "wordscore.csv"), *root], env=env)
    server.shutdown()
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
