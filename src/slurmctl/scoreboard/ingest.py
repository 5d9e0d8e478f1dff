"""One batch of sacct output → deduplicated exact sums committed to the month states.

The stream is parsed once (``parser``); each job goes to the month of its End. Per month, the Bloom
filter answers "definitely new" for most ids, and each id it flags is settled at once against the exact
id set of the month state (decoded on the first flagged id, then used in the filter's place), and ids
repeated within the stream are caught by the batch's own id set, so a Bloom false positive never drops
a job and a re-read never counts one twice. Nothing is written until
the whole stream was read without error; then each month's state is written with one atomic rename
(the commit), and its Bloom file after it (derived: rebuilt when it disagrees with the state).
"""

import datetime
from typing import AnyStr, Iterable, List, Optional, Set

from . import dedupe, fsutil, layout, store
from .config import DEFAULT_BLOOM_FP_RATE
from .errors import FormatError
from .fold import Folder
from .parser import SacctParser
from .schemas import N_SUMS


class MonthBatch:
    """Accumulators of one month within one batch.

    During the stream every job id is settled at once: an id already accepted in this batch is an
    exact duplicate (``batch`` is a ``dedupe.IdBatch``); an id the month's existing Bloom filter does
    not hold is certainly new; an id it flags is looked up in the month's exact id set (``known``).
    Re-reading a whole 1M-job month thus holds no pending jobs (it held 1M "suspects" with their sums
    until the end of the stream: ~490 MB peak). A month with no ids yet (a backfill read) never
    consults a filter at all; its filter is built once, at the exact size, when the month commits.
    """

    def __init__(self, root: str, cluster: str, month: str, p: float) -> None:
        self.root = root
        self.cluster = cluster
        self.month = month
        self.p = p
        self.header = store.read_header(layout.month_state(root, cluster, month))
        self._state = None  # type: Optional[store.MonthState]
        self.n_existing = int(self.header["n_ids"]) if self.header else 0
        bloom = None
        if self.n_existing:
            try:
                bloom = dedupe.read_bloom(layout.bloom_file(root, cluster, month))
            except FormatError:
                bloom = None  # derived data: rebuilt below from the exact set
            if bloom is None or bloom.n != self.n_existing or bloom.p != p:
                bloom = dedupe.Bloom.build(self.state().ids, self.n_existing, p)
        self.filter = bloom  # type: Optional[dedupe.Bloom]
        # What the fold consults: the filter, or once ``known`` decoded it, the exact set.
        self.bloom = bloom  # type: Any
        self.batch = dedupe.IdBatch()
        self.acc = {}  # type: Dict[Tuple[str, str], List[int]]
        # Earlier runs of requeued jobs: {units.run_key: (user, DD, sums)}; settled exactly at commit.
        self.runs = {}  # type: Dict[int, Tuple[str, str, List[int]]]
        self.new_runs = []  # type: List[int]  # the keys of ``runs`` not in the month state (settle)
        self.seen = 0
        self.duplicates = 0

    def known(self, job_id: int) -> bool:
        """Return True when ``job_id`` is in the month's committed exact id set.

        The first call decodes the set and puts it in the Bloom filter's place (``bloom``): once it is
        in memory a bisect answers exactly, for less than the filter's SHA-1.
        """
        if not isinstance(self.bloom, dedupe.SortedIds):
            self.bloom = dedupe.SortedIds(self.state().ids)  # a filter exists only for a committed month
        return job_id in self.bloom

    def state(self) -> store.MonthState:
        """Return the month's committed state (read once, lazily)."""
        if self._state is None:
            path = layout.month_state(self.root, self.cluster, self.month)
            self._state = store.read_state(path, self.month)
        return self._state

    def settle(self) -> None:
        """Settle the earlier runs of requeued jobs against the month state. Call once, after the stream."""
        if self.runs:
            # Runs are rare (a few per thousand jobs): their exact keys live in the month state.
            known = self.state().runs if self.header else set()
            for key, (user, day, sums) in self.runs.items():
                if key in known:
                    self.duplicates += 1
                else:
                    self._add(user, day, sums)
                    self.new_runs.append(key)

    @property
    def runs_new(self) -> int:
        """How many earlier runs of requeued jobs this batch adds (known after ``settle``)."""
        return len(self.new_runs)

    def _add(self, user: str, day: str, sums: List[int]) -> None:
        key = (user, day)
        acc = self.acc.get(key)
        if acc is None:
            self.acc[key] = sums
        else:
            for i in range(N_SUMS):
                acc[i] += sums[i]

    def commit(self, asof: str) -> int:
        """Write the month state (the commit point) then its Bloom file; return the number of new jobs.

        Idempotent in effect: a second commit of the same batch finds every id already present. Raises
        StorageError / FormatError.
        """
        if not self.batch and not self.runs_new and self.header is not None:
            return 0
        st = self.state() if self.header else store.MonthState(self.month)
        st.ids = dedupe.merge_sorted(st.ids, self.batch)
        if self.runs_new:
            st.runs.update(self.new_runs)
        st.add_all(self.acc.items())
        st.generation += 1
        st.asof = asof
        store.write_state(self.root, self.cluster, st)
        # Derived, after the commit: a crash here leaves a Bloom file whose n disagrees with the state,
        # which the next batch of this month detects and rebuilds.
        n = len(st.ids)
        bloom = self.filter
        if bloom is not None and n <= bloom.capacity:
            bloom.add_all(self.batch)
            bloom.n = n
        else:
            # First ids of the month, or the filter filled up. A past month gets no more jobs (ends are
            # final), so its filter is sized exactly; the current month's keeps 25 % room to grow.
            current = self.month >= datetime.datetime.utcnow().strftime("%Y-%m")
            bloom = dedupe.Bloom.build(st.ids, n, self.p, headroom=1.25 if current else 1.0)
        fsutil.atomic_write_bytes(layout.bloom_file(self.root, self.cluster, self.month), bloom.to_bytes())
        return len(self.batch)


class BatchResult:
    """What one batch did: per-month counts, users seen, parser counters and problems."""

    def __init__(self) -> None:
        self.months = {}  # type: Dict[str, Dict[str, int]]
        self.users = set()  # type: Set[str]
        self.touched_users = set()  # type: Set[str]
        self.jobs_seen = 0
        self.jobs_new = 0
        self.runs_new = 0  # earlier runs of requeued jobs newly counted (their time only)
        self.duplicates = 0
        self.rows = 0
        self.skipped = 0
        self.unended = 0
        self.orphan_steps = 0
        self.problems = []  # type: List[str]

    def as_dict(self) -> dict:
        return {
            "months": self.months,
            "jobs_seen": self.jobs_seen,
            "jobs_new": self.jobs_new,
            "runs_new": self.runs_new,
            "duplicates": self.duplicates,
            "rows": self.rows,
            "skipped": self.skipped,
            "unended": self.unended,
            "orphan_steps": self.orphan_steps,
            "users": len(self.users),
        }


def utc_now_iso(now: Optional[float] = None) -> str:
    """Return ``now`` (epoch seconds, default the clock) as ``YYYY-MM-DDTHH:MM:SSZ``."""
    t = datetime.datetime.utcfromtimestamp(now) if now is not None else datetime.datetime.utcnow()
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def ingest(
    root: str,
    cluster: str,
    lines: Iterable[AnyStr],
    failure_states: Iterable[str],
    bloom_p: float = DEFAULT_BLOOM_FP_RATE,
    source: str = "sacct",
    months_allowed: Optional[Set[str]] = None,
    asof: Optional[str] = None,
    after_parse=None,
) -> BatchResult:
    """Parse ``lines`` (sacct -P output in ``parser.FIELDS`` order, str or UTF-8 bytes); commit new jobs.

    ``months_allowed`` (when given) drops jobs whose End month is outside it (sacct's window should
    already guarantee that). ``after_parse`` (a callable) runs after the stream is consumed and before
    anything is written: the sacct adapter uses it to check the command's exit status, so a failed call
    commits nothing. Returns a BatchResult. Re-ingesting the same lines changes nothing (exact dedupe).
    Raises StorageError / FormatError (state files) and whatever ``after_parse`` raises.
    """
    parser = SacctParser(failure_states, source=source)
    batches = {}  # type: Dict[str, MonthBatch]
    result = BatchResult()

    def route(month: str) -> Optional[MonthBatch]:
        mb = batches.get(month)
        if mb is None:
            if months_allowed is not None and month not in months_allowed:
                return None
            mb = batches[month] = MonthBatch(root, cluster, month, bloom_p)
        return mb

    outside = Folder(parser, route).fold(lines)
    if after_parse is not None:
        after_parse()
    stamp = asof or utc_now_iso()
    for month in sorted(batches):
        mb = batches[month]
        mb.seen = len(mb.batch) + mb.duplicates + len(mb.runs)
        mb.settle()
        new = mb.commit(stamp)
        result.months[month] = {"seen": mb.seen, "new": new, "duplicates": mb.duplicates}
        if mb.runs:
            result.months[month]["runs_new"] = mb.runs_new
        result.jobs_seen += mb.seen
        result.jobs_new += new
        result.runs_new += mb.runs_new
        result.duplicates += mb.duplicates
        if new or mb.runs_new:
            result.touched_users.update(user for user, _day in mb.acc)
    result.users = parser.users
    result.rows = parser.rows
    result.skipped = parser.skipped + outside
    result.unended = parser.unended
    result.orphan_steps = parser.orphan_steps
    result.problems = parser.problems
    if outside:
        result.problems.append(f"{source}: {outside} jobs ended outside the queried months and were ignored")
    return result
