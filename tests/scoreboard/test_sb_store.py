"""The month state file: version 3 round trip (exact), older versions refused, damage reported."""

import json
import random
import shutil
import tempfile
from array import array

import pytest

from slurmctl.scoreboard import layout, store, units
from slurmctl.scoreboard.errors import FormatError
from slurmctl.scoreboard.schemas import DAY_FIELDS, N_SUMS


def random_state(seed: int) -> store.MonthState:
    rng = random.Random(seed)
    st = store.MonthState("2026-10", generation=3, asof="2026-11-01T00:00:00Z")
    for u in range(40):
        user = f"user{u}"
        for _ in range(rng.randint(1, 12)):
            jobs = rng.randint(1, 50)
            gpu_jobs = rng.choice((0, 0, 0, rng.randint(1, jobs)))
            elapsed = rng.randint(0, 10**7)
            # AllocCPUS 0 (a job cancelled before allocation) makes CPU seconds < elapsed: negative deltas
            cpu_s = elapsed * rng.choice((0, 1, 1, 2, 16))
            gpu_el = rng.randint(0, elapsed) if gpu_jobs else 0
            gpu_s = gpu_el * rng.choice((1, 2, 4))
            mem = [rng.randint(0, 10**12) for _ in range(3)]
            st.add(
                user,
                f"{rng.randint(1, 31):02d}",
                [jobs, gpu_jobs, rng.randint(0, jobs), elapsed, cpu_s, gpu_el, gpu_s, *mem],
            )
    st.ids = array("I", sorted(rng.sample(range(1, 1 << 32), 500)))
    st.runs = {units.run_key(rng.randrange(1 << 32), "2026-10-31T23:59:59") for _ in range(20)}
    return st


def test_v3_round_trip_is_exact(tmp_path):
    st = random_state(1)
    store.write_state(str(tmp_path), "c1", st)
    path = layout.month_state(str(tmp_path), "c1", "2026-10")
    with open(path, "rb") as fh:
        assert fh.readline() == store.MAGIC == b"SLURMSB-MONTH 3\n"
    back = store.read_state(path, "2026-10")
    assert back.days == st.days and back.month_totals == st.month_totals and list(back.ids) == list(st.ids)
    assert back.runs == st.runs and len(back.runs) == 20
    assert (back.generation, back.asof) == (3, "2026-11-01T00:00:00Z")
    header, totals = store.read_totals(path)
    assert totals == st.month_totals and header["version"] == 3 and header["n_runs"] == 20
    assert store.read_days(path, "2026-10") == (st.month_totals, st.days)


def test_damaged_runs_blob_is_a_format_error(tmp_path):
    st = random_state(6)
    store.write_state(str(tmp_path), "c1", st)
    path = layout.month_state(str(tmp_path), "c1", "2026-10")
    with open(path, "rb") as fh:
        image = fh.read()
    with open(path, "wb") as fh:
        fh.write(image[:-3])  # the runs blob is last
    with pytest.raises(FormatError, match="runs blob"):
        store.read_state(path, "2026-10")


def test_empty_state_round_trip(tmp_path):
    st = store.MonthState("2026-10")
    store.write_state(str(tmp_path), "c1", st)
    back = store.read_state(layout.month_state(str(tmp_path), "c1", "2026-10"), "2026-10")
    assert back.days == {} and back.month_totals == {} and len(back.ids) == 0


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_version_is_refused_naming_the_file_and_how_to_rebuild_it(tmp_path, version):
    """Versions 1 and 2 were never released: such a file is refused (exit 3), never misread."""
    root = str(tmp_path)
    store.write_state(root, "c1", random_state(2))
    path = layout.month_state(root, "c1", "2026-10")
    with open(path, "rb") as fh:
        image = fh.read()
    with open(path, "wb") as fh:
        fh.write(image.replace(store.MAGIC, f"SLURMSB-MONTH {version}\n".encode(), 1))
    for read in (store.read_header, lambda p: store.read_state(p, "2026-10"), store.read_totals):
        with pytest.raises(FormatError) as exc:
            read(path)
        text = str(exc.value)
        assert f"{path}: month state format version {version}; this slurm-sb reads version 3 only" in text
        assert layout.cursor_file(root, "c1") in text and "slurm-sb backfill --cluster c1" in text, text
        assert exc.value.exit_code == 3


@pytest.mark.parametrize(
    "obj",
    [
        {"users": [["a", 1]], "days": [1], "cols": [[1]] * (len(DAY_FIELDS) - 1)},  # a column missing
        {"users": [["a", 1]], "days": [1], "cols": [[1], [1], [0], [5], [0], [], []]},  # GPU value missing
        {"users": [["a", 2]], "days": [1], "cols": [[1], [0], [0], [5], [0], [], []]},  # counts disagree
        {"users": [["a", 1]], "days": [1]},
    ],
)
def test_damaged_days_blob_is_a_format_error(obj):
    with pytest.raises(FormatError, match="days blob"):
        store.decode_days(obj, "x.state")


def test_damaged_totals_blob_is_a_format_error():
    with pytest.raises(FormatError, match="totals blob"):
        store.decode_totals({"users": ["a"], "cols": [[1]] * (N_SUMS - 1)}, "x.state")


def test_add_all_equals_add_one_by_one_and_keeps_no_reference_to_the_input():
    rng = random.Random(5)

    def batch():
        keys = [(f"u{rng.randrange(6)}", f"{rng.randrange(1, 29):02d}") for _ in range(60)]
        return {k: [rng.randrange(10**6) for _ in range(N_SUMS)] for k in keys}

    one, bulk = store.MonthState("2026-10"), store.MonthState("2026-10")
    for _ in range(3):  # the later batches add onto users and days already present
        acc = batch()
        for (user, day), sums in acc.items():
            one.add(user, day, sums)
        bulk.add_all(acc.items())
        for sums in acc.values():
            sums[0] += 1000  # the caller's lists are not shared with the state
    assert bulk.days == one.days and bulk.month_totals == one.month_totals


def test_batch_writer_uses_one_syncfs_only_on_a_local_disk_file_system(tmp_path, monkeypatch):
    """Many derived files: one syncfs(2) on ext4/XFS/btrfs; on anything else (tmpfs here, NFS or Lustre
    on a cluster, where syncfs would flush the whole mount for everyone) one fsync per file."""
    import os

    from slurmctl.portable import diskio
    from slurmctl.scoreboard import fsutil

    real = diskio.load_syncfs()
    calls = {"syncfs": 0, "fsync": 0}

    def counting_syncfs(fd):
        calls["syncfs"] += 1
        return real(fd)

    real_fsync = os.fsync

    def counting_fsync(fd):
        calls["fsync"] += 1
        return real_fsync(fd)

    monkeypatch.setattr(diskio, "_syncfs", counting_syncfs if real else False)
    monkeypatch.setattr(fsutil.os, "fsync", counting_fsync)
    monkeypatch.setattr(fsutil, "_suits_by_dev", {})
    roots = [(str(tmp_path), diskio.syncfs_suits(str(tmp_path)))]
    local = real is not None and diskio.fs_type(str(tmp_path)) in diskio.SYNCFS_TYPES
    assert roots[0][1] == local
    if os.path.isdir("/dev/shm") and diskio.fs_type("/dev/shm") == "tmpfs":
        roots.append((tempfile.mkdtemp(dir="/dev/shm"), False))
    try:
        for root, suits in roots:
            calls.update(syncfs=0, fsync=0)
            w = fsutil.BatchWriter()
            for i in range(40):
                w.add_json(os.path.join(root, "users", f"u{i}.json"), {"i": i})
            assert w.commit() == 40
            # the directory's fsync after the renames is counted too
            want = {"syncfs": 1, "fsync": 1} if suits else {"syncfs": 0, "fsync": 41}
            assert dict(calls) == want, root
            with open(os.path.join(root, "users", "u7.json")) as fh:
                assert json.load(fh) == {"i": 7}
    finally:
        for root, _suits in roots[1:]:
            shutil.rmtree(root, ignore_errors=True)


def test_runs_blob_round_trips_and_checks_its_count():
    rng = random.Random(8)
    keys = {
        units.run_key(rng.randrange(1 << 32), f"2026-10-{rng.randint(1, 31):02d}T12:34:56")
        for _ in range(500)
    }
    keys |= {units.run_key((1 << 32) - 1, "2026-10-31T23:59:59"), units.run_key(7, "2026-10-01T00:00:00")}
    keys |= {units.run_key(7, "2026-10-01T00:00:01")}  # two runs of one job: an id delta of 0
    blob = store.encode_runs(keys)
    assert store.decode_runs(blob, len(keys), "x.state") == sorted(keys)
    assert store.decode_runs(store.encode_runs([]), 0, "x.state") == []
    with pytest.raises(FormatError, match=r"x\.state: runs blob holds"):
        store.decode_runs(blob, len(keys) - 1, "x.state")
    with pytest.raises(FormatError, match="corrupt runs blob"):
        store.decode_runs(blob[:-5] + b"12345", len(keys), "x.state")
