"""Regenerate data/docs.jsonl.gz (deterministic): python make_data.py"""

import gzip
import json
import random
from pathlib import Path

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "slurm",
    "batch",
    "node",
    "task",
    "array",
    "job",
    "queue",
    "array",
    "data",
    "worker",
    "result",
    "item",
]


def main() -> None:
    rng = random.Random(42)
    out = Path(__file__).with_name("data") / "docs.jsonl.gz"
    out.parent.mkdir(exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        for i in range(2000):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
            f.write((json.dumps({"id": f"doc-{i:05d}", "text": text}) + "\n").encode())


if __name__ == "__main__":
    main()
