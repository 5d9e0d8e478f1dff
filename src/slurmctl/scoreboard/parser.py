"""Streaming parser: sacct ``-P`` lines in, one record per job out, with the job's steps folded in.

Real sacct prints each job row followed by its step rows (``123.batch``, ``123.extern``, ``123.0``).
Only step rows carry MaxRSS/AveRSS, so a job is emitted when the next job row (or the end) arrives,
carrying the max over its steps. Output records are ``(job_id, user, end, sums)`` where ``sums`` is the
job's exact contribution in ``schemas.SUM_FIELDS`` order. Nothing else about a job is kept (no names).

A record whose ``jobs`` sum is 0 is an earlier *run* of a requeued job (State REQUEUED, listed by
``sacct -D`` before the job's later runs, with the same JobIDRaw): only its time counts -- elapsed,
CPU, GPU-elapsed and GPU seconds -- because the job itself (its count, failure, requested and used
memory) is counted once, with its last run. A run is deduplicated by ``units.run_key(job_id, end)``.
"""

from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from . import units
from .schemas import AVG_MEM, JOBS, MAX_MEM, REQUEUED

# The -o list every query uses; the parser relies on this order. sacct prints fields in the order asked,
# and this one is chosen for the hot loop (2 of 3 rows are steps): a step row's only useful values,
# MaxRSS and AveRSS, come right after the id, so ``split("|", 3)`` reads them without cutting up the
# other eight fields; End precedes the fields that repeat between jobs (User, State, then the resource
# fields), so a job row's "AllocCPUS|NNodes|ReqMem|AllocTRES" tail is one string and one cache key.
FIELDS = (
    "JobIDRaw",
    "MaxRSS",
    "AveRSS",
    "ElapsedRaw",
    "End",
    "User",
    "State",
    "AllocCPUS",
    "NNodes",
    "ReqMem",
    "AllocTRES",
)
N_FIELDS = len(FIELDS)
JOBID, MAXRSS, AVERSS, ELAPSED, END, USER, STATE, CPUS, NNODES, REQMEM, TRES = range(N_FIELDS)
FORMAT = ",".join(FIELDS)

Record = Tuple[int, str, str, List[int]]

_MAX_PROBLEMS = 20
# End's day of month as sacct prints it; the calendar is not checked (a 31st of November is a day).
DAYS = frozenset(f"{d:02d}" for d in range(1, 32))
_CACHE_LIMIT = 200000  # bound the value caches: ReqMem/AllocTRES strings repeat, but not without end


class SacctParser:
    """Parses one sacct output stream. Counters and the first problems are kept for logs and tests.

    ``failure_states`` are state words counted in ``failed_jobs``. Not thread-safe; one instance per stream.
    """

    def __init__(self, failure_states: Iterable[str], source: str = "sacct") -> None:
        self.failure_states = frozenset(s.upper() for s in failure_states)
        self.source = source
        self.rows = 0
        self.jobs = 0
        self.steps = 0
        self.orphan_steps = 0
        self.skipped = 0
        self.unended = 0
        self.runs = 0  # earlier runs of requeued jobs (records with jobs = 0), included in ``jobs``
        self.problems = []  # type: List[str]
        self.users = set()  # type: set
        self._user_cache = {}  # type: Dict[str, str]
        self._state_cache = {}  # type: Dict[str, int]
        self._req_cache = {}  # type: Dict[Tuple[str, str, str], Optional[int]]
        self._gpu_cache = {}  # type: Dict[str, Optional[int]]

    def _problem(self, lineno: int, what: str, line: str) -> None:
        self.skipped += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"{self.source}:{lineno}: {what}: {line.rstrip()[:160]!r}")

    def _failed(self, state: str) -> int:
        v = self._state_cache.get(state)
        if v is None:
            v = 1 if units.state_word(state) in self.failure_states else 0
            self._state_cache[state] = v
        return v

    def _user(self, raw: str) -> str:
        u = self._user_cache.get(raw)
        if u is None:
            u = units.normalize_user(raw)
            self._user_cache[raw] = u
            self.users.add(u)
        return u

    def _parse_job(self, f: Sequence[str], lineno: int, line: str) -> Optional[Record]:
        try:
            job_id = int(f[JOBID])
            elapsed = int(f[ELAPSED])
            cpus = int(f[CPUS])
            nnodes = int(f[NNODES]) if f[NNODES] else 1
        except ValueError:
            self._problem(lineno, "non-integer JobIDRaw/ElapsedRaw/AllocCPUS/NNodes", line)
            return None
        if elapsed < 0 or cpus < 0 or job_id < 0 or job_id >= 1 << 32:
            self._problem(lineno, "negative or out-of-range number", line)
            return None
        user = f[USER]
        if not user:
            self._problem(lineno, "job row without User", line)
            return None
        end = f[END]
        if len(end) < 19 or end[4] != "-" or end[10] != "T":
            # Running jobs print End=Unknown; they are counted once they end.
            self.unended += 1
            return None
        if end[8:10] not in DAYS or end[7] != "-":
            self._problem(lineno, f"bad End {end!r}", line)
            return None
        key = (f[REQMEM], f[CPUS], f[NNODES])
        req = self._req_cache.get(key, -1)
        if req == -1:
            req = units.req_mem_bytes(f[REQMEM], cpus, nnodes)
            if len(self._req_cache) < _CACHE_LIMIT:
                self._req_cache[key] = req
        if req is None:
            self._problem(lineno, f"bad ReqMem {f[REQMEM]!r}", line)
            return None
        tres = f[TRES].rstrip("\r\n")
        gpus = self._gpu_cache.get(tres, -1)
        if gpus == -1:
            gpus = units.gpu_count(tres)
            if len(self._gpu_cache) < _CACHE_LIMIT:
                self._gpu_cache[tres] = gpus
        if gpus is None:
            self._problem(lineno, f"bad GPU count in AllocTRES {tres!r}", line)
            return None
        u = self._user_cache.get(user)
        if u is None:
            u = self._user(user)
        state = f[STATE]
        failed = self._state_cache.get(state)
        if failed is None:
            failed = self._failed(state)
        if state.startswith(REQUEUED) and units.state_word(state) == REQUEUED:
            # An earlier run of a requeued job: its time only (see the module docstring).
            try:
                units.month_second(end)  # its dedupe key needs End's time of day
            except ValueError:
                self._problem(lineno, f"bad End {end!r}", line)
                return None
            e = elapsed if gpus else 0
            return (job_id, u, end, [0, 0, 0, elapsed, cpus * elapsed, e, gpus * elapsed, 0, 0, 0])
        # The job row has no MaxRSS/AveRSS on real Slurm; take them if a site's sacct prints them here.
        ave = units.mem_bytes(f[AVERSS]) if f[AVERSS] else 0
        mx = units.mem_bytes(f[MAXRSS]) if f[MAXRSS] else 0
        if gpus:
            sums = [1, 1, failed, elapsed, cpus * elapsed, elapsed, gpus * elapsed, req, ave or 0, mx or 0]
        else:
            sums = [1, 0, failed, elapsed, cpus * elapsed, 0, 0, req, ave or 0, mx or 0]
        return (job_id, u, end, sums)

    def parse(self, lines: Iterable[str]) -> Iterator[Record]:
        """Yield one record per job in ``lines`` (sacct -P output, in sacct's order), steps folded in.

        Malformed rows are skipped and described in ``problems``; never raises on bad content.
        This loop runs once per sacct row (3M rows for a 1M-job month), so it keeps counters and
        caches in locals and handles the common step row inline.
        """
        current = None  # type: Optional[Record]
        prefix = "\0"  # "<JobIDRaw>." of the current job: its step rows start with it
        lineno = rows = steps = orphans = jobs = runs = 0
        mem = units.mem_bytes

        def _done(rec: Record) -> Record:
            nonlocal runs
            if not rec[3][JOBS]:  # an earlier run: the job's memory counts with its last run
                runs += 1
                rec[3][AVG_MEM] = rec[3][MAX_MEM] = 0
            return rec

        parse_job = self._parse_job
        try:
            for line in lines:
                lineno += 1
                if line.startswith(prefix):
                    # A step of the current job (2 of every 3 rows): MaxRSS and AveRSS are fields 1
                    # and 2, so the rest of the row is not split. Only they are used, so a step row
                    # needs the fields up to AveRSS and one more separator, no more.
                    f = line.split("|", 3)
                    if len(f) != 4:
                        self._problem(lineno, _field_count(line), line)
                        continue
                    rows += 1
                    steps += 1
                    sums = current[3]  # a run's step maxima are checked here and dropped by _done
                    a = f[AVERSS]
                    if a:
                        v = int(a) if a.isdigit() else mem(a)
                        if v is None:
                            self._problem(lineno, f"bad AveRSS {a!r}", line)
                        elif v > sums[AVG_MEM]:
                            sums[AVG_MEM] = v
                    a = f[MAXRSS]
                    if a:
                        v = int(a) if a.isdigit() else mem(a)
                        if v is None:
                            self._problem(lineno, f"bad MaxRSS {a!r}", line)
                        elif v > sums[MAX_MEM]:
                            sums[MAX_MEM] = v
                    continue
                f = line.split("|")
                if len(f) != N_FIELDS:
                    if line.strip():
                        self._problem(lineno, _field_count(line), line)
                    continue
                rows += 1
                jid = f[JOBID]
                if "." in jid:
                    # sacct prints a job's steps right after it; a step without its job row just before
                    # (its job was malformed or outside the window) cannot be attributed.
                    steps += 1
                    orphans += 1
                    continue
                rec = parse_job(f, lineno, line)
                if current is not None:
                    jobs += 1
                    yield _done(current)
                current = rec
                prefix = jid + "." if rec is not None else "\0"  # "123." also guards "1234.batch"
            if current is not None:
                jobs += 1
                yield _done(current)
        finally:
            self.rows += rows
            self.steps += steps
            self.orphan_steps += orphans
            self.jobs += jobs
            self.runs += runs

    def _step_values(self, line: str, lineno: int) -> Optional[Tuple[int, int]]:
        """Return ``(MaxRSS, AveRSS)`` bytes of a step row the fast path could not read, or None when the
        row ends before AveRSS's separator. A bad value is reported in ``problems`` and counts as 0
        (it cannot raise the job's maximum), as in ``parse``."""
        f = line.split("|", 3)
        if len(f) != 4:
            self._problem(lineno, _field_count(line), line)
            return None
        out = [0, 0]
        for i, name in ((AVERSS, "AveRSS"), (MAXRSS, "MaxRSS")):  # parse's order, so problems read the same
            a = f[i]
            v = units.mem_bytes(a) if a else 0
            if v is None:
                self._problem(lineno, f"bad {name} {a!r}", line)
            else:
                out[i - MAXRSS] = v
        return out[0], out[1]


def _field_count(line: str) -> str:
    return f"expected {N_FIELDS} '|'-separated fields, got {line.count('|') + 1}"


def parse_lines(lines: Iterable[str], failure_states: Iterable[str]) -> List[Record]:
    """Return every record of ``lines`` as a list (convenience for small inputs and other modules). Pure."""
    return list(SacctParser(failure_states).parse(lines))
