"""User reductions: an associative combine applied at every merge node."""

from __future__ import annotations

import json
import random
from collections import Counter

import pyarrow.parquet as pq
import pytest

from slurmctl.aggregate import Settings, aggregate
from slurmctl.aggregate.synthetic import publish_job
from slurmctl.errors import HandlerError
from slurmctl.storage.local import local_backend

COMBINE = """
def combine(a, b):
    return {"word": a["word"], "count": a["count"] + b["count"]}


def lose_key(a, b):
    return {"count": a["count"] + b["count"]}
"""

WORDS = [f"w{i}" for i in range(5000)]


def word(item: int) -> str:
    return WORDS[(item * 2654435761) % 9973 % len(WORDS)]


def test_word_count_over_1m_records_equals_a_plain_count(tmp_path):
    (tmp_path / "wc.py").write_text(COMBINE)
    config = {
        "aggregate": {"reduce": {"function": "wc:combine", "key": ["word"]}},
        "handler": {"python_path": [str(tmp_path)]},
    }
    backend = local_backend(tmp_path / "root", fsync=False)
    publish_job(backend, "wc", 500, 2000, lambda t, i: [{"word": word(i), "count": 1}], config=config)
    settings = Settings.of_job(config)
    settings.fan_in, settings.processes = 16, 2
    out = tmp_path / "counts.parquet"
    m = aggregate(backend, "wc", out, settings=settings)
    assert m.levels == [32, 2, 1] and m.items_ok == 1_000_000
    got = dict(zip(*pq.read_table(out).to_pydict().values(), strict=True))
    assert got == Counter(word(i) for i in range(1_000_000))
    assert m.rows == len(got) and [c["name"] for c in m.columns] == ["word", "count"]


@pytest.mark.parametrize("fmt", ["sqlite", "csv", "jsonl"])
def test_reduce_in_every_format(tmp_path, fmt):
    (tmp_path / "wc.py").write_text(COMBINE)
    rng = random.Random(7)
    words = [rng.choice("abcde") for _ in range(600)]
    backend = local_backend(tmp_path / "root")
    publish_job(backend, "wc", 30, 20, lambda t, i: [{"word": words[i], "count": 1}])
    settings = Settings(fan_in=4, processes=1, reduce={"function": "wc:combine", "key": ["word"]})
    settings.python_path = [str(tmp_path)]
    out = tmp_path / f"o.{fmt}"
    m = aggregate(backend, "wc", out, settings=settings)
    assert m.levels == [8, 2, 1]
    if fmt == "jsonl":
        got = {r["word"]: r["count"] for r in map(json.loads, out.read_text().splitlines())}
    elif fmt == "csv":
        got = {w: int(c) for w, c in (ln.split(",") for ln in out.read_text().splitlines()[1:])}
    else:
        import sqlite3

        with sqlite3.connect(out) as db:
            got = dict(db.execute("SELECT word, count FROM results"))
    assert got == Counter(words)


def test_a_combine_that_drops_the_key_is_refused(tmp_path):
    (tmp_path / "wc.py").write_text(COMBINE)
    backend = local_backend(tmp_path / "root")
    publish_job(backend, "wc", 4, 5, lambda t, i: [{"word": "a", "count": 1}])
    settings = Settings(fan_in=4, processes=1, reduce={"function": "wc:lose_key", "key": ["word"]})
    settings.python_path = [str(tmp_path)]
    with pytest.raises(HandlerError, match="combine must return a row"):
        aggregate(backend, "wc", tmp_path / "o.jsonl", settings=settings)
