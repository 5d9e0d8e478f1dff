"""The ingest's fast fold against the reference: ``SacctParser.parse`` records through the same dedupe.

``fold.Folder`` takes shortcuts (cache hits skip validation, counters are derived, step values are
compared as ints without the unit parser); these tests feed both paths the same streams -- clean
synthetic months and streams with every kind of damage the parser knows -- and require identical
per-(user, day) sums, duplicates, exact look-ups, counters and problem messages.
"""

import io
import random

import sbhelpers
from sbhelpers import FAIL, golden, read_lines

from slurmctl.scoreboard import synth, units
from slurmctl.scoreboard.dedupe import IdBatch
from slurmctl.scoreboard.fold import Folder
from slurmctl.scoreboard.parser import SacctParser


class Sink:
    """A month sink: ``bloom`` a stand-in filter (any container), ``committed`` the month's exact set."""

    def __init__(self, bloom=None, batch=set, committed=frozenset()):
        self.batch = batch()
        self.acc = {}
        self.bloom = bloom
        self.committed = committed
        self.lookups = []  # the ids the filter flagged, in order: each is settled exactly at once
        self.runs = {}
        self.duplicates = 0

    def known(self, job_id):
        self.lookups.append(job_id)
        return job_id in self.committed


def reference(lines, allowed=None, bloom=None, committed=frozenset()):
    """What ingest did before the fold existed: parse() records, then route/dedupe/add per job."""
    p = SacctParser(FAIL)
    sinks = {}
    outside = 0
    for job_id, user, end, sums in p.parse(lines):
        month = end[:7]
        if allowed is not None and month not in allowed:
            outside += 1
            continue
        s = sinks.setdefault(month, Sink(bloom, committed=committed))
        if not sums[0]:  # an earlier run of a requeued job: deduplicated by (id, End), never a suspect
            key = units.run_key(job_id, end)
            if key in s.runs:
                s.duplicates += 1
            else:
                s.runs[key] = (user, end[8:10], sums)
        elif job_id in s.batch or (s.bloom is not None and job_id in s.bloom and s.known(job_id)):
            s.duplicates += 1
        else:
            s.batch.add(job_id)
            acc = s.acc.setdefault((user, end[8:10]), [0] * 10)
            for i, v in enumerate(sums):
                acc[i] += v
    return p, sinks, outside


def folded(lines, allowed=None, bloom=None, chunk_rng=None, committed=frozenset()):
    """The fold of ``lines``; with ``chunk_rng``, fed in random chunks (``_rows`` called again with the
    stream's next lines, as the Folder allows)."""
    p = SacctParser(FAIL)
    sinks = {}

    def route(month):
        if allowed is not None and month not in allowed:
            return None
        return sinks.setdefault(month, Sink(bloom, IdBatch, committed))

    folder = Folder(p, route)
    if chunk_rng is None:
        return p, sinks, folder.fold(lines)
    i = 0
    while i < len(lines):
        j = i + chunk_rng.randint(1, 60)
        folder._rows(lines[i:j])
        i = j
    folder._finish()
    return p, sinks, folder.outside


def assert_same(lines, allowed=None, bloom=None, chunk_rng=None, committed=frozenset()):
    """The fold of ``lines`` as str and as bytes (what the poller passes) both equal the reference."""
    p1, s1, o1 = reference(list(lines), allowed, bloom, committed)
    for stream in (list(lines), [ln.encode() for ln in lines]):
        p2, s2, o2 = folded(stream, allowed, bloom, chunk_rng, committed)
        counters = ("rows", "jobs", "steps", "orphan_steps", "skipped", "unended", "runs")
        assert {c: getattr(p2, c) for c in counters} == {c: getattr(p1, c) for c in counters}
        assert p2.problems == p1.problems
        assert p2.users == p1.users
        assert o2 == o1
        assert sorted(s2) == sorted(s1)
        for month in s1:
            a, b = s1[month], s2[month]
            got = (b.acc, set(b.batch), b.duplicates, b.lookups, b.runs)
            assert got == (a.acc, a.batch, a.duplicates, a.lookups, a.runs), month
    return p2, s2


def test_bytes_with_invalid_utf8_reads_like_the_replaced_text():
    """sacct's text stream was decoded with errors="replace": bytes that are not UTF-8 give the same."""
    lines = read_lines(golden("handmade.sacct"))
    raw = [ln.encode() for ln in lines]
    raw[0] = raw[0].replace(b"Alice@", b"Al\xffce@")  # a job row's User
    raw[1] = raw[1].replace(b"|1048576|", b"|10\xfe48576|")  # a step's MaxRSS
    text = [ln.decode("utf-8", "replace") for ln in raw]
    p1, s1, _o1 = reference(text)
    p2, s2, _o2 = folded(raw)
    assert p2.problems == p1.problems and p2.users == p1.users and "al\ufffdce" in p2.users
    assert {m: s.acc for m, s in s2.items()} == {m: s.acc for m, s in s1.items()}


def synthetic(n_jobs, seed, **kw):
    buf = io.StringIO()
    expected = synth.generate(buf, n_jobs, n_users=60, seed=seed, **kw)
    return buf.getvalue().splitlines(True), expected


def test_golden_handmade_and_dev_cluster_streams():
    assert_same(read_lines(golden("handmade.sacct")))
    assert_same(read_lines(golden("dev-22.05.sacct")))
    assert_same(read_lines(golden("dev-22.05-requeue.sacct")))


def test_requeued_runs_count_their_time_once_and_the_job_once():
    """Real sacct -D output of one job requeued twice: two REQUEUED runs, then the last run."""
    lines = read_lines(golden("dev-22.05-requeue.sacct"))
    exp = sbhelpers.load_json(golden("dev-22.05-requeue.expected.json"))
    for stream in (lines, lines + lines, lines[4:] + lines):  # re-read whole, and the last run first
        p, sinks = assert_same(stream)
        sink = sinks[exp["month"]]
        assert len(sink.runs) == exp["runs"] and p.runs == exp["runs"] * (len(stream) // len(lines))
        totals = [0] * 10
        for sums in [*sink.acc.values(), *(r[2] for r in sink.runs.values())]:
            totals = [a + b for a, b in zip(totals, sums, strict=True)]
        assert totals == exp["sums"]["sbtest"]


def test_run_with_an_end_that_has_no_time_of_day_is_a_problem():
    lines = read_lines(golden("dev-22.05-requeue.sacct"))
    lines[0] = lines[0].replace("T02:04:19", "T02:xx:19")
    p, sinks = assert_same(lines)
    assert len(p.problems) == 1 and "bad End" in p.problems[0] and p.orphan_steps == 1
    assert len(next(iter(sinks.values())).runs) == 1


def test_clean_month_matches_ground_truth():
    lines, expected = synthetic(3000, 5, realm=True, old_reqmem=True, requeue_share=0.02)
    p, sinks = assert_same(lines)
    totals = {}
    sink = sinks["2026-10"]
    runs = [((user, day), sums) for user, day, sums in sink.runs.values()]
    assert runs and p.runs == len(runs)  # requeued jobs' earlier runs: time only, added at commit
    for (user, _day), sums in [*sink.acc.items(), *runs]:
        acc = totals.setdefault(user, [0] * 10)
        for i, v in enumerate(sums):
            acc[i] += v
    assert totals == expected and p.jobs == 3000 + p.runs and not p.problems


def test_damaged_stream_gives_the_same_sums_counters_and_problems():
    """Garbage, blank and short rows, orphan steps, unit-suffixed, empty, negative and non-numeric
    memory values, bad ReqMem/ElapsedRaw/GPU counts, running jobs, duplicates, two months, CRLF."""
    lines, _ = synthetic(2000, 7, realm=True)
    lines2, _ = synthetic(300, 8, month="2026-11")
    rng = random.Random(3)
    out = []
    damage = [
        lambda ln: "garbage without separators\n",
        lambda ln: "\n",
        lambda ln: "|".join(ln.split("|")[:5]) + "\n",  # too few fields
        lambda ln: ln.replace("|", "||", 1),  # too many fields
        lambda ln: ln.replace("\n", "\r\n"),
    ]
    # fields: JobIDRaw|MaxRSS|AveRSS|ElapsedRaw|End|User|State|AllocCPUS|NNodes|ReqMem|AllocTRES
    step_damage = [
        lambda f: [f[0], "2048K", *f[2:]],
        lambda f: [*f[:2], "1.5G", *f[3:]],
        lambda f: [f[0], "", *f[2:]],
        lambda f: [f[0], "-5", *f[2:]],
        lambda f: [*f[:2], "abc", *f[3:]],
        lambda f: [f[0], "0012", *f[2:]],
        lambda f: [*f[:3], "\n"],  # ends after AveRSS: its memory values are still read
        lambda f: [*f[:2], "\n"],  # ends before AveRSS: too few fields
    ]
    job_damage = [
        lambda f: [*f[:3], "x1", *f[4:]],  # ElapsedRaw
        lambda f: [*f[:9], "12Q", *f[10:]],  # ReqMem
        lambda f: [*f[:10], f[10].rstrip("\n") + ",gres/gpu=x\n"],  # GPU count
        lambda f: [*f[:4], "Unknown", *f[5:]],  # still running
        lambda f: [*f[:5], "", *f[6:]],  # no User
        lambda f: [f[0], "1048576", *f[2:]],  # MaxRSS on the job row (some sites)
        lambda f: [*f[:6], "CANCELLED by 0", *f[7:]],  # a state not seen before
        lambda f: [*f[:7], "-1", *f[8:]],  # negative AllocCPUS
        lambda f: [str(1 << 32), *f[1:]],  # id out of range
        lambda f: [*f[:10], "gres/gpu:a100=1,gres/gpu=1\r\n"],  # CRLF on a resource tail
    ]
    for ln in lines + lines2:
        f = ln.split("|")
        r = rng.random()
        if r < 0.02:
            out.append(rng.choice(damage)(ln))
        elif r < 0.05 and "." in f[0]:
            out.append("|".join(rng.choice(step_damage)(f)))
        elif r < 0.08 and "." not in f[0]:
            out.append("|".join(rng.choice(job_damage)(f)))
        elif r < 0.09 and "." not in f[0]:
            continue  # its steps become orphans
        else:
            out.append(ln)
        if r > 0.995:
            out.append(ln)  # a repeated row: a duplicate job, or a step printed twice
    out += lines[:40]  # the first jobs again: duplicates
    p, sinks = assert_same(out)
    assert p.problems and p.orphan_steps and p.unended and sinks["2026-10"].duplicates
    assert set(sinks) == {"2026-10", "2026-11"}
    assert_same(out, allowed={"2026-11"})  # the other month's jobs are refused, their steps skipped


def test_bloom_flagged_ids_are_settled_against_the_exact_set_at_once():
    lines, _ = synthetic(1500, 9)
    ids = [int(ln.split("|", 1)[0]) for ln in lines if "." not in ln.split("|", 1)[0]]
    flagged = frozenset(ids[::3])  # a stand-in filter: any container works for the sinks
    committed = frozenset(
        ids[::6]
    )  # half the flagged ids were committed before: the rest are false positives
    again = [int(ln.split("|", 1)[0]) for ln in lines[:30] if "." not in ln.split("|", 1)[0]]
    _p, sinks = assert_same(lines + lines[:30], bloom=flagged, committed=committed)
    sink = sinks["2026-10"]
    # each flagged id is looked up when met; a repeat of a new one is caught by the batch first
    assert sink.lookups == [i for i in ids if i in flagged] + [i for i in again if i in committed]
    assert set(sink.batch) == set(ids) - committed and sink.duplicates == len(committed) + len(again)


def test_fold_via_ingest_matches_expected_totals(tmp_path):
    from slurmctl.scoreboard import ingest

    lines, expected = synthetic(4000, 12, requeue_share=0.02)
    r = ingest.ingest(str(tmp_path), "c1", lines, FAIL)
    assert r.jobs_new == 4000 and r.rows == len(lines) and r.runs_new > 40
    assert sbhelpers.month_totals(str(tmp_path), "c1") == expected


def test_a_job_row_whose_end_day_is_not_a_day_is_a_problem_on_both_paths():
    """End "2026-10-00T..." has End's form but no day: reported (not counted), its steps orphaned."""
    lines, _ = synthetic(50, 13)
    damaged = []
    n = 0
    for ln in lines:
        f = ln.split("|")
        if "." not in f[0] and n < 3:
            f[4] = f[4][:8] + ("00", "32", "1x")[n] + f[4][10:]
            n += 1
        damaged.append("|".join(f))
    p, _sinks = assert_same(damaged)
    assert sum("bad End" in problem for problem in p.problems) == 3 and p.orphan_steps > 0


def test_an_orphan_step_between_a_job_and_its_own_step_does_not_end_the_job():
    """parse() keeps the current job across an orphan step row; the fold did not (a later step of the
    job lost its memory): found by the randomised comparison below."""
    lines, _ = synthetic(20, 14)
    jobs = [i for i, ln in enumerate(lines) if "." not in ln.split("|", 1)[0]]
    a, b = jobs[3], jobs[4]
    orphan = next(ln for ln in lines[b + 1 :] if "." in ln.split("|", 1)[0])
    lines.insert(a + 1, orphan)  # job a, an orphan step of job b, then job a's own steps
    p, _sinks = assert_same(lines)
    assert p.orphan_steps >= 1


def _damaged(seed):
    rng = random.Random(seed)
    lines = []
    for month, s in (("2026-10", seed), ("2026-11", seed + 1000)):
        share = rng.choice((0.0, 0.01, 0.3))  # requeued jobs: earlier runs with State REQUEUED
        more, _ = synthetic(
            rng.randint(20, 150), s, month=month, realm=rng.random() < 0.5, requeue_share=share
        )
        lines += more
    if rng.random() < 0.5:
        rng.shuffle(lines)  # orphans, month switches, ids out of order
    values = ["", "x", "-1", "12K", "0012", " 5", "99999999999", "2026-10-32T00:00:00", "Unknown", "\xff"]
    values += ["REQUEUED", "2026-10-05Tab:00:00"]  # a job row turned into a run; a run with a bad End
    out = []
    for ln in lines:
        r = rng.random()
        if r < 0.03:
            f = ln.split("|")
            i = rng.randrange(len(f))
            f[i] = rng.choice(values) + ("\n" if i == len(f) - 1 else "")
            ln = "|".join(f)
        elif r < 0.05:
            ln = ln.replace("\n", "\r\n")
        elif r < 0.06:
            ln = ln.rstrip("\n")  # glued to the next row
        out.append(ln)
        if rng.random() < 0.01:
            out.append(ln)
    out += out[: rng.randint(0, 20)]
    return rng, out


def test_random_damage_shuffles_and_chunked_folds_match_the_reference():
    """Randomised streams (damaged values, CRLF, glued rows, repeats, shuffled rows, two months, a Bloom
    stand-in, a month filter) folded whole and in random chunks give exactly the reference's result."""
    for seed in range(40):
        rng, lines = _damaged(seed)
        allowed = rng.choice([None, {"2026-10"}, {"2026-11"}])
        ids = [int(x) for x in (ln.split("|", 1)[0] for ln in lines) if x.isdigit()]
        bloom = frozenset(rng.sample(ids, len(ids) // 4)) if rng.random() < 0.3 else None
        assert_same(lines, allowed, bloom)
        assert_same(lines, allowed, bloom, chunk_rng=rng)
