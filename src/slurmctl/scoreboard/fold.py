"""Folding a sacct stream straight into month accumulators: the ingest's hot path.

``Folder.fold(lines)`` gives the same jobs, sums, counters and problems as ``SacctParser.parse``
followed by ingest's dedupe (tests/scoreboard/test_sb_fold.py checks that on clean and on broken
input) without building a record or a sums list per job: a job's numbers go straight into its
(user, day) accumulator and its steps' memory maxima are added when the next job row arrives.
A 1M-job month is 3M rows and per-row interpreter work is what a poll's time goes to, so the
well-formed common row runs inline on cache hits and anything unusual -- a cache miss, a unit
suffix, an empty or bad value, an orphan step, a job of another month, an earlier run of a requeued
job (State REQUEUED is never cached) -- falls back to
``SacctParser._parse_job`` / ``_step_values``, which report problems and whose accepted values fill
the caches. On the inline path:

* the "AllocCPUS|NNodes|ReqMem|AllocTRES" tail, User and State are looked up, never parsed;
* End's "YYYY-MM-DDT" is one lookup in a 31-entry table of the current month, which checks the
  month, the day and the "T" at once and gives the day number;
* the (user, day) accumulator is a list slot (raw User -> 32 slots by day number), not a tuple key;
* the dedupe of ids within the stream is one comparison: sacct prints jobs in ascending id order,
  so an id above the largest seen is new, and only the others are looked up (``dedupe.IdBatch``).

Alternatives measured with bench/scoreboard_ingest.py (2026-11-23, 2-core dev VM) and not used:
splitting whole 256 KiB blocks on ``|`` and working on stride-sliced columns with
``map``/``zip``/``compress`` is 2x *slower* than this loop -- the C iterators call the same functions
and allocate the same objects as the bytecode does; one ``re`` match per job with its steps captured
(``re.split`` over 1 MiB blocks) spends 3 s in the regex engine and object creation before any
arithmetic; grouping jobs by their whole "End date|User|State|resources" string needs 257k groups for
1M jobs, whose set-up costs what they save.
"""

import itertools
from typing import Any, AnyStr, Callable, Dict, Iterable, List, Tuple, Union

from . import units
from .parser import _CACHE_LIMIT, CPUS, DAYS, N_FIELDS, TRES, USER, SacctParser, _field_count
from .schemas import AVG_MEM, MAX_MEM, N_SUMS

# Day number -> the "DD" str the month accumulators are keyed by.
DAY_NAMES = ("", *sorted(DAYS))


def _text(line: Union[str, bytes]) -> str:
    # rows the fast path cannot take are decoded as UTF-8 with invalid bytes replaced
    return line.decode("utf-8", "replace") if isinstance(line, bytes) else line


def date_slots(month: str, binary: bool) -> Dict[Any, int]:
    """Return ``{"YYYY-MM-DDT": day number}`` for days 01..31 of ``month``, keys as bytes or str. Pure.

    The parser accepts any day 01..31 in any month (it checks End's form, not the calendar): so does
    this table.
    """
    table = {f"{month}-{DAY_NAMES[d]}T": d for d in range(1, 32)}
    return {k.encode(): v for k, v in table.items()} if binary else table


class Folder:
    """Folds one sacct stream into month sinks. Not thread-safe; one instance per stream.

    ``route(month)`` returns the month's sink or None to drop the job (outside the queried months).
    A sink has ``batch`` (a ``dedupe.IdBatch`` of ids accepted in this stream), ``acc``
    (``{(user, DD): sums}``), ``bloom`` (None or a container of ids possibly committed already),
    ``known(id)`` (True when the id is in the month's committed exact set; the sink may then replace
    ``bloom`` by that set), ``runs`` (``{units.run_key: (user, DD, sums)}``, the earlier runs of
    requeued jobs) and ``duplicates`` (int). A job already in ``batch``, or held by ``bloom`` and
    ``known``, or a run already in ``runs``, counts as a duplicate; any other job is added to ``batch``
    and ``acc``. Counters and problems go to ``parser``.
    """

    def __init__(self, parser: SacctParser, route: Callable[[str], Any]) -> None:
        self.parser = parser
        self.route = route
        self.outside = 0
        # Loop state, kept on the instance so ``fold`` may be called again with the stream's next lines.
        self.lineno = 0
        self.prefix = "\0"
        self.target = None  # type: Optional[List[int]]
        self.mx = 0
        self.av = 0
        self.month = ""
        self.sink = None  # type: Any
        # Keyed by the raw text of a field (bytes or str, as the stream gives it), filled only from
        # rows _parse_job accepted, so a hit needs no more checks: the "AllocCPUS|NNodes|ReqMem|
        # AllocTRES\n" tail -> (req bytes, cpus, gpus), State -> failed, User -> normalised user.
        # User and State are accepted independently of each other and of the rest of the row
        # (_parse_job rejects only an empty User), so separate lookups answer as one on the tuple would.
        self.res_cache = {}  # type: dict
        self.state_cache = {}  # type: dict
        self.user_cache = {}  # type: dict
        # Per month: (raw User -> 32 accumulator slots by day number, the month's date table).
        self.tables = {}  # type: Dict[str, Tuple[dict, dict]]

    def fold(self, lines: Iterable[AnyStr]) -> int:
        """Fold every row of ``lines`` into the sinks; return how many jobs ``route`` refused.

        Not idempotent (it adds). Never raises on bad content.
        """
        self._rows(lines)
        self._finish()
        return self.outside

    def _finish(self) -> None:
        if self.target is not None:
            self.target[AVG_MEM] += self.av
            self.target[MAX_MEM] += self.mx
            self.target = None

    def _tables(self, month: str, binary: bool) -> Tuple[dict, dict]:
        got = self.tables.get(month)
        if got is None:
            got = self.tables[month] = ({}, date_slots(month, binary))
        return got

    def _slot(self, sink: Any, user: AnyStr, day: int) -> List[int]:
        """Return the month accumulator of (user, day), created empty if needed."""
        key = (self.user_cache[user], DAY_NAMES[day])
        acc = sink.acc.get(key)
        if acc is None:
            # Two raw names can be one user ("Alice@REALM", "alice"): they share the accumulator.
            acc = sink.acc[key] = [0] * N_SUMS
        return acc

    def _rows(self, lines: Iterable[AnyStr]) -> None:
        it = iter(lines)
        first = next(it, None)
        if first is None:
            return
        # The poller hands over sacct's bytes (no UTF-8 decoding and no str copies of 300 MB of text;
        # int() of bytes skips the str-to-ASCII conversion int() of a str makes); tests and other callers
        # pass str. The loop is the same for both: only its constants change type. Anything off the
        # fast path is decoded (invalid UTF-8 replaced, as sacct's text stream did) and parsed as str.
        binary = isinstance(first, bytes)
        sep, dot, nul = (b"|", b".", b"\0") if binary else ("|", ".", "\0")
        p = self.parser
        route = self.route
        # Per-row counters cost time: only rare events are counted in the loop; rows and steps are
        # derived at the end (rows = lines - ignored; steps = rows - job rows).
        lineno = lineno0 = self.lineno
        jobs = rejected = ignored = orphans = outside = runs = 0
        prefix, target, mx, av = self.prefix, self.target, self.mx, self.av
        if isinstance(prefix, bytes) != binary:
            prefix = prefix.encode() if binary else prefix.decode()
        month, sink = self.month, self.sink
        # The current month's tables: empty until a row (on the checked path) routes a month, so
        # until then every job row takes the checked path.
        uslots = dslots = {}  # type: dict
        ids = bloom = None  # type: Any
        append = None  # type: Any
        top = -1
        if sink is not None:
            uslots, dslots = self._tables(month, binary)
            ids, bloom = sink.batch, sink.bloom
            append, top = ids.ids.append, ids.top
        res_cache = self.res_cache
        user_cache = self.user_cache
        state_cache = self.state_cache
        parse_job = p._parse_job
        step_values = p._step_values
        try:
            for line in itertools.chain((first,), it):
                lineno += 1
                if line.startswith(prefix):
                    # A step of the current job (2 of every 3 rows): only MaxRSS and AveRSS matter. A
                    # negative value cannot raise a maximum; it is only checked when it did not.
                    try:
                        _0, m, a, _3 = line.split(sep, 3)
                        v = int(m)
                        if v > mx:
                            mx = v
                        elif v < 0:
                            raise ValueError(m)
                        v = int(a)
                        if v > av:
                            av = v
                        elif v < 0:
                            raise ValueError(a)
                    except ValueError:
                        # rare: an empty or unit-suffixed value (1024K), garbage, a wrong field count
                        got = step_values(_text(line), lineno)
                        if got is None:
                            ignored += 1
                            continue
                        if got[0] > mx:
                            mx = got[0]
                        if got[1] > av:
                            av = got[1]
                    continue
                try:
                    # A job row in eight pieces, not eleven: its tail "AllocCPUS|NNodes|ReqMem|AllocTRES"
                    # is one string and one cache key. A row with a wrong field count or a value not
                    # seen in an accepted row misses a table and takes the checked path below.
                    jid, mrss, arss, el, end, user, state, res = line.split(sep, 7)
                    req, ncpus, gpus = res_cache[res]
                    failed = state_cache[state]
                    udays = uslots[user]
                    day = dslots[end[:11]]
                    job_id = int(jid)
                    elapsed = int(el)
                    # job_id >> 32 is non-zero for a negative id and for one above uint32
                    if mrss or arss or elapsed < 0 or job_id >> 32 or len(end) < 19:
                        raise ValueError(jid)
                except (ValueError, KeyError, IndexError):
                    sline = _text(line)
                    f = sline.split("|")
                    if len(f) != N_FIELDS:
                        ignored += 1
                        if sline.strip():
                            p._problem(lineno, _field_count(sline), sline)
                        continue
                    raw = line.split(sep, 7)
                    jid = raw[0]
                    if dot in jid:
                        # sacct prints a job's steps right after it; a step without its job row just
                        # before (its job was malformed or outside the window) cannot be attributed.
                        # It does not end the current job: a later step of that job still counts.
                        orphans += 1
                        continue
                    if target is not None:  # the previous job is complete: add its memory maxima
                        target[AVG_MEM] += av
                        target[MAX_MEM] += mx
                        target = None
                    rec = parse_job(f, lineno, sline)  # reports the problem or fills caches
                    if rec is None:
                        rejected += 1
                        prefix = nul  # its steps become orphans, as in parse
                        continue
                    job_id, u, end_s, s = rec
                    elapsed, cpu_s, gpus, gpu_s, req, failed = s[3], s[4], s[1], s[6], s[7], s[2]
                    av, mx = s[AVG_MEM], s[MAX_MEM]
                    jobs += 1
                    if not s[0]:
                        runs += 1  # an earlier run of a requeued job (counted as parse counts it)
                    prefix = jid + dot  # "123." also guards "1234.batch"
                    if end_s[:7] != month or sink is None:
                        new_sink = route(end_s[:7])
                        if new_sink is None:
                            outside += 1
                            continue
                        if sink is not None:
                            ids.top = top
                        month, sink = end_s[:7], new_sink
                        uslots, dslots = self._tables(month, binary)
                        ids, bloom = sink.batch, sink.bloom
                        append, top = ids.ids.append, ids.top
                    user = raw[USER]
                    day = dslots[raw[4][:11]]  # _parse_job accepted End: its day is 01..31
                    user_cache[user] = u
                    if not s[0]:
                        # An earlier run of a requeued job (State REQUEUED, sacct -D): never cached, so
                        # it always comes here. Its time counts once per (JobIDRaw, End); the job's own
                        # id is left to its last run. target stays None: its steps' memory is dropped.
                        key = units.run_key(job_id, end_s)
                        if key in sink.runs:
                            sink.duplicates += 1
                        else:
                            sink.runs[key] = (u, DAY_NAMES[day], s)
                        continue
                    udays = uslots.get(user)
                    if udays is None:
                        udays = [None] * 32
                        if len(uslots) < _CACHE_LIMIT:
                            uslots[user] = udays
                    if len(res_cache) < _CACHE_LIMIT:
                        # the inline path's keys, raw: the tail after State (newline included), State
                        res_cache[raw[7]] = (req, int(f[CPUS]), units.gpu_count(f[TRES].rstrip("\r\n")))
                        state_cache[raw[6]] = failed
                else:
                    if target is not None:  # the previous job is complete: add its memory maxima
                        target[AVG_MEM] += av
                        target[MAX_MEM] += mx
                        target = None
                    cpu_s = ncpus * elapsed
                    gpu_s = gpus * elapsed
                    mx = av = 0
                    jobs += 1
                    prefix = jid + dot  # "123." also guards "1234.batch"
                if job_id > top:
                    top = job_id
                elif job_id in ids:
                    sink.duplicates += 1  # the same job twice in one stream: exact, no filter needed
                    continue
                else:
                    ids.ordered = False
                if bloom is not None and job_id in bloom:
                    # The filter's "maybe": the month's exact id set decides at once. The sink decodes
                    # it on the first such id and then offers it in the filter's place (a bisect is
                    # cheaper than a SHA-1), so a re-read month holds no pending jobs in memory.
                    known = sink.known(job_id)
                    bloom = sink.bloom
                    if known:
                        sink.duplicates += 1
                        continue
                append(job_id)
                target = udays[day]
                if target is None:
                    target = udays[day] = self._slot(sink, user, day)
                target[0] += 1
                target[2] += failed
                target[3] += elapsed
                target[4] += cpu_s
                target[7] += req
                if gpus:
                    target[1] += 1
                    target[5] += elapsed
                    target[6] += gpu_s
        finally:
            rows = lineno - lineno0 - ignored
            p.rows += rows
            p.steps += rows - jobs - rejected
            p.orphan_steps += orphans
            p.jobs += jobs
            p.runs += runs
            self.outside += outside
            self.lineno = lineno
            self.prefix, self.target, self.mx, self.av = prefix, target, mx, av
            self.month, self.sink = month, sink
            if sink is not None:
                ids.top = top
