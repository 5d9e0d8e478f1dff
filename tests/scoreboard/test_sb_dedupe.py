"""Bloom filter: format, measured false-positive rate, and that false positives never drop a job."""

import io
import random

import pytest
import sbhelpers
from sbhelpers import FAIL

from slurmctl.scoreboard import dedupe, ingest, layout, store, synth
from slurmctl.scoreboard.errors import FormatError


def test_empirical_fp_rate_within_twice_target():
    for p in (0.05, 0.1, 0.25, 0.35, 0.4):
        b = dedupe.Bloom(20000, p)
        for i in range(20000):
            b.add(1_000_000 + i)
        probes = 40000
        fp = sum(1 for i in range(probes) if (50_000_000 + i) in b) / probes
        assert fp <= 2 * p, (p, fp)
        assert fp > 0  # a filter at capacity must show false positives, or the test measures nothing


def test_file_round_trip_and_bit_packing():
    b = dedupe.Bloom(5000, 0.05)
    rng = random.Random(3)
    ids = [rng.randrange(1 << 32) for _ in range(3000)]
    for i in ids:
        b.add(i)
    data = b.to_bytes()
    head = data.split(b"\n", 1)[0].decode()
    assert head.startswith("SLURMSB-BLOOM 1 m=") and " k=4 " in head and "hash=sha1-words" in head
    packed = data[len(head) + 1 :]
    assert len(packed) == b.m // 8
    # bit i of the filter is bit (i % 8) of byte i // 8
    for i in range(0, b.m, 97):
        assert ((packed[i // 8] >> (i % 8)) & 1) == b.cells[i]
    c = dedupe.Bloom.from_bytes(data)
    assert all(i in c for i in ids) and c.n == b.n and c.k == b.k


def test_corrupt_bloom_is_reported_and_rebuilt(tmp_path):
    with pytest.raises(FormatError, match=r"bad\.bloom"):
        dedupe.Bloom.from_bytes(b"SLURMSB-BLOOM 1 m=64 k=4 n=0 p=0.05 hash=sha1-words\nxx", "bad.bloom")
    root = str(tmp_path)
    buf = io.StringIO()
    synth.generate(buf, 2000, n_users=50, seed=5)
    lines = buf.getvalue().splitlines(True)
    ingest.ingest(root, "c1", lines, FAIL)
    with open(layout.bloom_file(root, "c1", "2026-10"), "wb") as fh:
        fh.write(b"garbage")
    r = ingest.ingest(root, "c1", lines, FAIL)  # re-read with a broken filter: exact set still decides
    assert r.jobs_new == 0 and r.duplicates == 2000


def test_ids_codec():
    ids = [5, 6, 7, 100, 4294967295]
    assert list(dedupe.decode_ids(dedupe.encode_ids(ids))) == ids
    with pytest.raises(ValueError):
        dedupe.encode_ids([3, 2])
    with pytest.raises(FormatError):
        dedupe.decode_ids(b"not zlib")


def test_bloom_false_positives_never_drop_jobs(tmp_path):
    """A saturated filter flags every id; the exact set must still accept every new job."""
    root = str(tmp_path)
    buf = io.StringIO()
    expected = synth.generate(buf, 5000, n_users=40, seed=9)
    lines = buf.getvalue().splitlines(True)
    blocks = [i for i, ln in enumerate(lines) if "." not in ln.split("|", 1)[0]]
    first = lines[: blocks[100]]  # the first 100 jobs
    ingest.ingest(root, "c1", first, FAIL)
    b = dedupe.read_bloom(layout.bloom_file(root, "c1", "2026-10"))
    assert b.n == 100
    b.cells = bytearray(b"\x01" * b.m)  # every bit set: every id is a "suspect"
    with open(layout.bloom_file(root, "c1", "2026-10"), "wb") as fh:
        fh.write(b.to_bytes())
    r = ingest.ingest(root, "c1", lines, FAIL)
    assert (r.jobs_new, r.duplicates) == (4900, 100)
    assert sbhelpers.month_totals(root, "c1") == expected


def test_filter_grows_when_a_month_outgrows_it(tmp_path):
    """10k jobs, then 70k (overlapping): the 12.5k-capacity filter is rebuilt; every job counted once."""
    root = str(tmp_path)
    buf = io.StringIO()
    expected = synth.generate(buf, 70000, n_users=500, seed=11)
    lines = buf.getvalue().splitlines(True)
    blocks = [i for i, ln in enumerate(lines) if "." not in ln.split("|", 1)[0]]
    ingest.ingest(root, "c1", lines[: blocks[10000]], FAIL)
    assert dedupe.read_bloom(layout.bloom_file(root, "c1", "2026-10")).capacity < 70000
    r = ingest.ingest(root, "c1", lines, FAIL)
    assert (r.jobs_new, r.duplicates) == (60000, 10000)
    assert sbhelpers.month_totals(root, "c1") == expected
    b = dedupe.read_bloom(layout.bloom_file(root, "c1", "2026-10"))
    assert b.n == 70000 and b.capacity >= 70000
    assert all(
        i in b for i in list(store.read_state(layout.month_state(root, "c1", "2026-10"), "2026-10").ids)[::97]
    )


def test_duplicate_within_one_stream_counts_once(tmp_path):
    root = str(tmp_path)
    lines = sbhelpers.read_lines(sbhelpers.golden("handmade.sacct"))
    r = ingest.ingest(root, "c1", lines + lines[:4], FAIL)  # job 100 (with its 3 steps) printed twice
    assert (r.jobs_new, r.duplicates) == (10, 1)


def test_id_batch_answers_like_a_set_in_any_arrival_order():
    """``IdBatch`` (the fold's per-month id set) agrees with a set whatever the order: ascending runs,
    array tasks printed out of order, repeats; ``ascending`` is sorted and unique."""
    rng = random.Random(4)
    ids = list(range(1000, 3000))
    rng.shuffle(ids[500:700])  # an out-of-order stretch, as array tasks give
    batch, ref = dedupe.IdBatch(), set()
    for job_id in ids + ids[100:150] + [5, 1000, 2999]:
        assert (job_id in batch) == (job_id in ref)
        if job_id not in ref:
            batch.add(job_id)
            ref.add(job_id)
    assert len(batch) == len(ref) and set(batch) == ref
    assert not batch.ordered and list(batch.ascending()) == sorted(ref)
    assert list(dedupe.merge_sorted(dedupe.merge_sorted([], [1, 7]), batch)) == sorted(ref | {1, 7})
    ordered = dedupe.IdBatch()
    for job_id in (3, 9, 12):
        ordered.add(job_id)
    assert ordered.ordered and ordered.ascending() is ordered.ids and ordered.top == 12
