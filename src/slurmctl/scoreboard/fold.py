"""Folding a sacct stream straight into month accumulators: the ingest's hot path.

``Folder.fold(lines)`` gives the same jobs, sums, counters and problems as ``SacctParser.parse``
followed by ingest's dedupe (tests/scoreboard/test_sb_fold.py checks that on clean and on broken
input) without building a record or a sums list per job: a job's numbers go straight into its
(user, day) accumulator and its steps' memory maxima are added when the next job row arrives.
A 1M-job month is 3M rows and per-row interpreter work is what a poll's time goes to, so the
well-formed common row runs inline on cache hits (the "AllocCPUS|NNodes|ReqMem|AllocTRES" tail, User
and State repeat) and anything unusual -- a cache miss, a unit suffix, an empty or
bad value, an orphan step -- falls back to ``SacctParser._parse_job`` / ``_step_values``, which
report problems and whose accepted values fill the caches.

Measured and rejected (2026-11-23, bench/scoreboard_ingest.py): splitting whole 256 KiB blocks on
``|`` and working on stride-sliced columns with ``map``/``zip``/``compress`` was 2x *slower* than this
loop -- the C iterators call the same functions and allocate the same objects as the bytecode does.
"""

import itertools
from typing import Any, AnyStr, Callable, Iterable, Union

from . import units
from .parser import _CACHE_LIMIT, CPUS, N_FIELDS, STATE, TRES, USER, SacctParser, _field_count
from .schemas import AVG_MEM, MAX_MEM, N_SUMS

_ID_LIMIT = 1 << 32
# End's day of month, "01".."31", as the str key the month accumulators use, from a str or bytes slice.
_DAYS = {f"{d:02d}": f"{d:02d}" for d in range(1, 32)}
_DAYS_B = {k.encode(): v for k, v in _DAYS.items()}


def _text(line: Union[str, bytes]) -> str:
    # sacct's stream was decoded with errors="replace" before the fold took bytes: the same here
    return line.decode("utf-8", "replace") if isinstance(line, bytes) else line


class Folder:
    """Folds one sacct stream into month sinks. Not thread-safe; one instance per stream.

    ``route(month)`` returns the month's sink or None to drop the job (outside the queried months).
    A sink has ``batch`` (set of ids accepted in this stream), ``acc`` (``{(user, DD): sums}``),
    ``bloom`` (None or a container of ids possibly committed already), ``suspects`` (list of
    ``(id, user, DD, sums)``) and ``duplicates`` (int). A job already in ``batch`` counts as a
    duplicate; one ``bloom`` may hold becomes a suspect (settled later against the exact set); any
    other is added to ``batch`` and ``acc``. Counters and problems go to ``parser``.
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
        # "AllocCPUS|NNodes|ReqMem|AllocTRES\n" -> (req bytes, cpus, gpus), User -> user and State ->
        # failed: filled only from rows _parse_job accepted, so a hit needs no more checks. User and
        # State are accepted independently of each other and of the rest of the row (_parse_job
        # rejects only an empty User), so two lookups give the same answer as one keyed on the pair,
        # without building a tuple per row.
        self.res_cache = {}  # type: dict
        self.user_cache = {}  # type: dict
        self.state_cache = {}  # type: dict

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
        sep, dot, t_char, dash = (b"|", b".", ord("T"), ord("-")) if binary else ("|", ".", "T", "-")
        days = _DAYS_B if binary else _DAYS
        p = self.parser
        route = self.route
        # Per-row counters cost time: only rare events are counted in the loop; rows and steps are
        # derived at the end (rows = lines - ignored; steps = rows - job rows).
        lineno = lineno0 = self.lineno
        jobs = rejected = ignored = orphans = outside = 0
        prefix, target, mx, av = self.prefix, self.target, self.mx, self.av
        if isinstance(prefix, bytes) != binary:
            prefix = prefix.encode() if binary else prefix.decode()
        last_month, sink = self.month, self.sink
        batch = acc_map = bloom = None  # type: Any
        if sink is not None:
            batch, acc_map, bloom = sink.batch, sink.acc, sink.bloom
        res_cache = self.res_cache
        user_cache = self.user_cache
        state_cache = self.state_cache
        parse_job = p._parse_job
        step_values = p._step_values
        try:
            for line in itertools.chain((first,), it):
                lineno += 1
                if line.startswith(prefix):
                    # A step of the current job (2 of every 3 rows): only MaxRSS and AveRSS matter.
                    try:
                        _0, m, a, _3 = line.split(sep, 3)
                        vm = int(m)
                        va = int(a)
                        if vm < 0 or va < 0:
                            raise ValueError(m)
                    except ValueError:
                        # rare: an empty or unit-suffixed value (1024K), garbage, a wrong field count
                        got = step_values(_text(line), lineno)
                        if got is None:
                            ignored += 1
                            continue
                        vm, va = got
                    if vm > mx:
                        mx = vm
                    if va > av:
                        av = va
                    continue
                try:
                    # A job row in eight pieces, not eleven: its tail "AllocCPUS|NNodes|ReqMem|AllocTRES"
                    # is one string and one cache key. A row with a wrong field count or a value not
                    # seen in an accepted row misses a cache and takes the checked path below.
                    jid, mrss, arss, el, end, user, state, res = line.split(sep, 7)
                    req, ncpus, gpus = res_cache[res]
                    u = user_cache[user]
                    failed = state_cache[state]
                    day = days[end[8:10]]
                    job_id = int(jid)
                    elapsed = int(el)
                    if (
                        mrss
                        or arss
                        or elapsed < 0
                        or not 0 <= job_id < _ID_LIMIT
                        or end[10] != t_char
                        or end[4] != dash
                        or len(end) < 19
                    ):
                        raise ValueError(jid)
                    month = end[:7]
                except (ValueError, KeyError, IndexError):
                    sline = _text(line)
                    f = sline.split("|")
                    if len(f) != N_FIELDS:
                        ignored += 1
                        if sline.strip():
                            p._problem(lineno, _field_count(sline), sline)
                        continue
                    if target is not None:  # the previous job is complete: add its memory maxima
                        target[AVG_MEM] += av
                        target[MAX_MEM] += mx
                        target = None
                    jid = line.split(sep, 1)[0]
                    if dot in jid:
                        # sacct prints a job's steps right after it; a step without its job row just
                        # before (its job was malformed or outside the window) cannot be attributed.
                        orphans += 1
                        continue
                    rec = parse_job(f, lineno, sline)  # reports the problem or fills caches
                    if rec is None:
                        rejected += 1
                        prefix = b"\0" if binary else "\0"  # its steps become orphans, as in parse
                        continue
                    job_id, u, end, s = rec
                    elapsed, cpu_s, gpus, gpu_s, req, failed = s[3], s[4], s[1], s[6], s[7], s[2]
                    av, mx = s[AVG_MEM], s[MAX_MEM]
                    day = end[8:10]
                    month = end[:7]
                    if binary:
                        month = month.encode()
                    if len(res_cache) < _CACHE_LIMIT:
                        # the fast path's keys, in the stream's type: the tail after State (newline
                        # included), User, State
                        tres = f[TRES].rstrip("\r\n")
                        value = (req, int(f[CPUS]), units.gpu_count(tres))
                        keys = ("|".join(f[CPUS:]), f[USER], f[STATE])
                        if binary:
                            keys = tuple(k.encode() for k in keys)
                        res_cache[keys[0]] = value
                        user_cache[keys[1]] = u
                        state_cache[keys[2]] = failed
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
                if month != last_month:
                    sink = route(month.decode() if binary else month)
                    if sink is None:
                        outside += 1
                        continue
                    last_month = month
                    batch, acc_map, bloom = sink.batch, sink.acc, sink.bloom
                if job_id in batch:
                    sink.duplicates += 1  # the same job twice in one stream: exact, no filter needed
                    continue
                if bloom is not None and job_id in bloom:
                    target = [1, 1 if gpus else 0, failed, elapsed, cpu_s, elapsed if gpus else 0, gpu_s]
                    target += (req, 0, 0)
                    sink.suspects.append((job_id, u, day, target))
                    continue
                batch.add(job_id)
                key = (u, day)
                target = acc_map.get(key)
                if target is None:
                    target = acc_map[key] = [0] * N_SUMS
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
            self.outside += outside
            self.lineno = lineno
            self.prefix, self.target, self.mx, self.av = prefix, target, mx, av
            self.month, self.sink = last_month, sink
