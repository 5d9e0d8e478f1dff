"""Regenerate data/samples.parquet (deterministic): python make_data.py  (needs pyarrow)"""

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    rng = random.Random(7)
    n = 1000
    table = pa.table(
        {
            "sample": list(range(n)),
            "x0": [rng.uniform(-1, 1) for _ in range(n)],
            "v0": [rng.uniform(-1, 1) for _ in range(n)],
            "k": [rng.uniform(0.5, 5) for _ in range(n)],
            "damping": [rng.uniform(0, 0.5) for _ in range(n)],
            "steps": [2000] * n,
        }
    )
    out = Path(__file__).with_name("data") / "samples.parquet"
    out.parent.mkdir(exist_ok=True)
    pq.write_table(table, out)


if __name__ == "__main__":
    main()
