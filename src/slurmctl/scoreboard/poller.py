"""The poller: lock → catch-up/backfill → current month → new users → derived files → retention → health.

One poll is idempotent: every ingest commits by atomic rename with exact dedupe, the cursor advances
only after the data it describes is committed, and derived files are recomputed from committed state.
"""

import contextlib
import datetime
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Set

from . import __version__, derive, discover, fsutil, layout, store
from .config import Config, read_optout
from .errors import FormatError, ScoreboardError, UsageError
from .ingest import BatchResult, ingest
from .jsonlog import JsonLog
from .lock import PollLock
from .model import read_json
from .ratelimit import TokenBucket
from .sacct import Sacct, window_args
from .units import month_bounds, month_index, next_month

ISO = "%Y-%m-%dT%H:%M:%S"


def iso_z(t: datetime.datetime) -> str:
    return t.strftime(ISO) + "Z"


def parse_iso(text: str, where: str) -> datetime.datetime:
    """Return the naive UTC datetime of ``YYYY-MM-DDTHH:MM:SS[Z]``. Raises FormatError naming ``where``."""
    try:
        return datetime.datetime.strptime(text.rstrip("Z"), ISO)
    except (ValueError, AttributeError) as exc:
        raise FormatError(f"{where}: bad timestamp {text!r} (expected YYYY-MM-DDTHH:MM:SSZ)") from exc


def month_of(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m")


class Cursor:
    """``state/poll_cursor.json``: how far the global reads got. Saved after each commit.

    ``backfill_start`` and ``next_backfill_month`` (None when caught up): the backfill frontier;
    ``current``: the live month and the End up to which it was read; ``last_complete_month``: the
    latest month read whole (closed or backfilled); ``recheck``: months to read whole once more after
    ``after`` (records that reach slurmdbd late, e.g. after a slurmctld -> slurmdbd outage, while sacct
    already answered); ``in_progress``: the read under way (``{"phase", "window", "since"}``), None
    between reads -- a value left behind says a poll died there (the read is simply redone).
    """

    def __init__(self, root: str, cluster: str, backfill_start: str, now: datetime.datetime) -> None:
        self.path = layout.cursor_file(root, cluster)
        try:
            data = read_json(self.path)
        except FileNotFoundError:
            data = None
        bf = backfill_start[:7]
        if data is None:
            data = {
                "version": 1,
                "backfill_start": bf,
                "next_backfill_month": bf,
                "current": {"month": month_of(now), "last_end": None},
                "last_complete_month": None,
                "recheck": [],
                "in_progress": None,
            }
        hint = "fix or remove the cursor file (then backfill reads again; nothing is counted twice)"
        if not isinstance(data, dict) or not isinstance(data.get("current"), dict):
            raise FormatError(f"{self.path}: expected the cursor object (see docs/scoreboard.md)", hint=hint)
        if data.get("version") != 1:
            raise FormatError(
                f"{self.path}: field 'version' is {data.get('version')!r};"
                " this slurm-sb reads cursor version 1",
                hint=hint,
            )
        for key in ("recheck", "in_progress"):
            if key not in data:
                raise FormatError(f"{self.path}: field {key!r} is missing", hint=hint)
        self.data = data
        cur = data["current"]
        self._month(cur.get("month"), "current.month")
        if cur.get("last_end") is not None:
            parse_iso(cur["last_end"], self.path + ": current.last_end")
        self._month(data.get("backfill_start"), "backfill_start")
        self._month(data.get("next_backfill_month"), "next_backfill_month", optional=True)
        self._month(data.get("last_complete_month"), "last_complete_month", optional=True)
        if not isinstance(data["recheck"], list):
            raise FormatError(f"{self.path}: recheck must be a list, found {data['recheck']!r}")
        for i, item in enumerate(data["recheck"]):
            if not isinstance(item, dict):
                raise FormatError(f"{self.path}: recheck[{i}] must be {{'month', 'after'}}, found {item!r}")
            self._month(item.get("month"), f"recheck[{i}].month")
            parse_iso(item.get("after"), f"{self.path}: recheck[{i}].after")
        if bf < data["backfill_start"]:
            # backfill_start moved earlier: read the new older months too (exact dedupe absorbs overlap)
            data["backfill_start"] = bf
            data["next_backfill_month"] = bf

    def _month(self, value: Any, field: str, optional: bool = False) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not layout.MONTH_RE.match(value):
            raise FormatError(
                f"{self.path}: {field} must be YYYY-MM{' or null' if optional else ''}, found {value!r}",
                hint="fix or remove the cursor file (then backfill reads again; nothing is counted twice)",
            )

    def begin(self, phase: str, start: str, end: str, now: datetime.datetime) -> None:
        """Record the read about to start (``in_progress``) and save."""
        self.data["in_progress"] = {"phase": phase, "window": [start, end], "since": iso_z(now)}
        self.save()

    def completed(self, month: str) -> None:
        """Note that ``month`` was read whole (``last_complete_month`` is the latest such month)."""
        last = self.data.get("last_complete_month")
        if not last or month > last:
            self.data["last_complete_month"] = month

    def save(self) -> None:
        fsutil.atomic_write_json(self.path, self.data)


class Poller:
    """Runs polls for one cluster. ``clock`` returns epoch seconds (tests pass a fixed one)."""

    def __init__(
        self,
        cfg: Config,
        log: Optional[JsonLog] = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.root = cfg["root"]
        self.cluster = cfg["cluster"]
        if not self.root:
            raise UsageError("no root given", hint="pass --root, set SLURM_SB_ROOT, or `root:` in the config")
        if not layout.valid_cluster(self.cluster):
            raise UsageError(
                f"bad or missing cluster name {self.cluster!r}",
                hint="pass --cluster NAME (or set it in the config); `slurm-sb probe` shows ClusterName",
            )
        self.clock = clock
        self.sleep = sleep
        self.log = log or JsonLog(self.cluster, layout.log_file(self.root, self.cluster))
        self.bucket = TokenBucket(
            cfg["rate_limit_per_min"],
            path=layout.ratelimit_file(self.root, self.cluster),
            clock=clock,
            sleep=sleep,
        )
        self.sacct = Sacct(
            cfg["sacct"],
            bucket=self.bucket,
            timeout_sec=cfg["sacct_timeout_sec"],
            retries=cfg["sacct_retries"],
            backoff_base_sec=cfg["backoff_base_sec"],
            sleep=sleep,
            log=self.log,
        )
        self.touched_months = set()  # type: Set[str]
        self.touched_users = set()  # type: Set[str]
        self.batch_users = set()  # type: Set[str]
        self.totals = {"jobs_seen": 0, "jobs_new": 0, "duplicates": 0}

    # ------------------------------------------------------------------ reading
    def read_window(
        self, start: str, end: str, phase: str, user: Optional[str] = None, months: Optional[Set[str]] = None
    ) -> BatchResult:
        """Read jobs that ended in [start, end] (UTC, inclusive) and commit them; return the BatchResult."""
        self.log.phase = phase
        calls0, bytes0, sleep0 = self.sacct.calls, self.sacct.bytes, self.sacct.rate_sleep_ms

        def consume(lines: Any, finish: Callable[[], None]) -> BatchResult:
            return ingest(
                self.root,
                self.cluster,
                lines,
                self.cfg.failure_states(),
                bloom_p=self.cfg["bloom_fp_rate"],
                source=f"sacct[{start}..{end}]",
                months_allowed=months,
                after_parse=finish,
            )

        result = self.sacct.run(window_args(start, end, user), consume)
        self.touched_months.update(m for m, c in result.months.items() if c["new"])
        self.touched_users.update(result.touched_users)
        if phase in ("current", "month-close"):
            # Users new in the live window get a user-scoped backfill of the months the global backfill
            # has not reached; users first met while backfilling are covered as it moves forward.
            self.batch_users.update(result.users)
        for k in self.totals:
            self.totals[k] += getattr(result, k)
        for problem in result.problems:
            self.log("warning", "skipped sacct row", detail=problem)
        self.log(
            "info",
            "window read",
            window=[start, end],
            user=user,
            month=",".join(sorted(result.months)),
            calls=self.sacct.calls - calls0,
            bytes=self.sacct.bytes - bytes0,
            rate_sleep_ms=self.sacct.rate_sleep_ms - sleep0,
            **result.as_dict(),
        )
        return result

    # ------------------------------------------------------------------ steps
    def _read(
        self, cursor: Cursor, now: datetime.datetime, start: str, end: str, phase: str, **kw: Any
    ) -> None:
        cursor.begin(phase, start, end, now)
        self.read_window(start, end, phase, **kw)
        cursor.data["in_progress"] = None  # saved by the caller with what the read advanced

    def _schedule_recheck(self, cursor: Cursor, month: str, now: datetime.datetime) -> None:
        """Queue one more whole read of ``month`` at its end + ``recheck_after_sec``, unless that is past."""
        delay = self.cfg["recheck_after_sec"]
        if not delay:
            return
        after = parse_iso(month_bounds(month)[1], "month") + datetime.timedelta(seconds=1 + delay)
        if now < after and all(r["month"] != month for r in cursor.data["recheck"]):
            cursor.data["recheck"].append({"month": month, "after": iso_z(after)})

    def step_current(self, cursor: Cursor, now: datetime.datetime) -> None:
        """Close any months the live cursor left behind, then read the current month up to now - lag."""
        cur = cursor.data["current"]
        overlap = datetime.timedelta(seconds=self.cfg["overlap_sec"])
        now_month = month_of(now)
        while cur["month"] < now_month:
            start, end = month_bounds(cur["month"])
            if cur["last_end"]:
                start = max(start, (parse_iso(cur["last_end"], "cursor") - overlap).strftime(ISO))
            self._read(cursor, now, start, end, "month-close", months={cur["month"]})
            cursor.completed(cur["month"])
            self._schedule_recheck(cursor, cur["month"], now)
            cur["month"] = next_month(cur["month"])
            cur["last_end"] = None
            cursor.save()
        cutoff = now - datetime.timedelta(seconds=self.cfg["lag_sec"])
        start, _end = month_bounds(cur["month"])
        if cur["last_end"]:
            start = max(start, (parse_iso(cur["last_end"], "cursor") - overlap).strftime(ISO))
        if cutoff.strftime(ISO) < start:
            return  # the first minutes of a month: nothing ended yet that slurmdbd surely has
        self._read(cursor, now, start, cutoff.strftime(ISO), "current", months={cur["month"]})
        cur["last_end"] = iso_z(cutoff)
        cursor.save()

    def step_recheck(self, cursor: Cursor, now: datetime.datetime) -> int:
        """Read whole, once more, the months whose recheck time has come; return how many were read.

        A job record can reach slurmdbd long after the job ended (slurmctld queues them while it cannot
        reach slurmdbd, and sends them when it can; sacct meanwhile answers without them). The live
        window re-reads only ``overlap_sec``; this catches what came later, up to ``recheck_after_sec``
        after the month's end. Exact dedupe makes the re-read count only what is new.
        """
        done = 0
        for item in list(cursor.data["recheck"]):
            if parse_iso(item["after"], "recheck") > now:
                continue
            start, end = month_bounds(item["month"])
            self._read(cursor, now, start, end, "recheck", months={item["month"]})
            cursor.data["recheck"] = [r for r in cursor.data["recheck"] if r is not item]
            cursor.save()
            done += 1
        return done

    def step_backfill(self, cursor: Cursor, months: int, now: Optional[datetime.datetime] = None) -> int:
        """Read up to ``months`` whole months of backfill; return how many were read."""
        now = now or datetime.datetime.utcfromtimestamp(self.clock())
        done = 0
        frontier = cursor.data["current"]["month"]
        while done < months:
            nxt = cursor.data.get("next_backfill_month")
            if not nxt or nxt >= frontier:
                cursor.data["next_backfill_month"] = None
                cursor.save()
                break
            start, end = month_bounds(nxt)
            self._read(cursor, now, start, end, "backfill", months={nxt})
            after = next_month(nxt)
            cursor.data["next_backfill_month"] = after if after < frontier else None
            cursor.completed(nxt)
            self._schedule_recheck(cursor, nxt, now)  # a month backfilled right after its end
            cursor.save()
            done += 1
        return done

    def step_discover(self, cursor: Cursor, asof: str, max_user_backfills: int = 2) -> List[str]:
        """Register new users (this poll's batches + /home) and run queued user-scoped backfills."""
        self.log.phase = "discover"
        reg = discover.Registry(self.root, self.cluster)
        nxt = cursor.data.get("next_backfill_month")
        frontier = cursor.data["current"]["month"]
        uncovered = bool(nxt) and nxt < frontier
        # On the very first poll everyone is "new": they are covered by the global backfill, so only
        # users appearing once the registry exists are queued.
        enqueue = reg.existed and uncovered
        new = reg.register(self.batch_users, "sacct", asof, enqueue)
        new += reg.register(
            discover.home_users(self.cfg["home_dir"], self.cfg["min_uid"], reg.users), "home", asof, enqueue
        )
        if not uncovered:
            reg.queue = []
        ran = 0
        while reg.queue and ran < max_user_backfills and uncovered:
            user = reg.queue[0]
            start = month_bounds(nxt)[0]
            end = month_bounds(_prev_month(frontier))[1]
            months = set()
            m = nxt
            while m < frontier:
                months.add(m)
                m = next_month(m)
            self.read_window(start, end, "user-backfill", user=user, months=months)
            reg.queue.pop(0)
            reg.save()
            ran += 1
        reg.save()
        if new:
            self.log("info", "new users", users=len(new), queued=len(reg.queue))
        return new

    def step_retention(self, now: datetime.datetime) -> List[str]:
        """Prune month states older than ``rollup_retention_months``; return the pruned months."""
        keep = self.cfg["rollup_retention_months"]
        oldest = month_index(month_of(now)) - keep + 1
        victims = [m for m in store.list_months(self.root, self.cluster) if month_index(m) < oldest]
        if not victims:
            return []
        archive = store.read_archive(self.root, self.cluster)
        users = archive["users"]
        span = archive["span"]
        for month in victims:
            if month in archive["months"]:
                continue
            got = store.read_totals(layout.month_state(self.root, self.cluster, month))
            if got is None:
                continue
            for user, sums in got[1].items():
                acc = users.setdefault(user, [0] * len(sums))
                for i, v in enumerate(sums):
                    acc[i] += v
                first, last = span.get(user, (month, month))
                span[user] = [min(first, month), max(last, month)]
            archive["months"].append(month)
        # Step 1: the archive (listing the months) commits; step 2 deletes. A crash in between leaves
        # the month both archived and present, which alltime_totals counts once (archive wins).
        fsutil.atomic_write_json(layout.archive_file(self.root, self.cluster), archive)
        for month in victims:
            for path in (
                layout.month_state(self.root, self.cluster, month),
                layout.bloom_file(self.root, self.cluster, month),
                layout.rollup_file(self.root, self.cluster, month),
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        self.log("info", "retention pruned months", months=victims)
        return victims

    # ------------------------------------------------------------------ poll
    def policy(self) -> derive.Policy:
        opt = list(self.cfg["opt_out"]) + read_optout(self.root)
        return derive.Policy(self.cfg["min_jobs_to_show"], opt)

    def merged_writer(self) -> bool:
        try:
            data = read_json(layout.clusters_config(self.root))
        except (FileNotFoundError, FormatError):
            return True
        writer = data.get("merged_writer") if isinstance(data, dict) else None
        return not writer or writer == self.cluster

    def sweep_temps(self, merged: bool) -> int:
        """Remove the temp files of writers that died (an hour old: no live write takes that long) in
        this poller's own files: its cluster's tree and, for the merged writer, the merged boards."""
        tops = [layout.cluster_dir(self.root, self.cluster)]
        if merged:
            tops.append(os.path.join(self.root, "leaderboards"))
        swept = 0
        for top in tops:
            for path in fsutil.stale_temps(top):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    swept += 1
        if swept:
            self.log("info", "removed stale temp files", files=swept)
        return swept

    def poll(self, backfill_months: Optional[int] = None) -> Dict[str, Any]:
        """Run one poll under the lock; return a summary. Raises LockHeldError, SacctError, StorageError..."""
        start_t = time.time()
        now = datetime.datetime.utcfromtimestamp(self.clock())
        asof = iso_z(now)
        health = _read_health(self.root, self.cluster)
        health.update(
            {
                "cluster": self.cluster,
                "last_attempt": asof,
                "version": __version__,
                "python": platform.python_version(),
            }
        )
        with PollLock(layout.lock_file(self.root, self.cluster), self.cfg["stale_lock_sec"]):
            try:
                merged = self.merged_writer()
                self.sweep_temps(merged)
                policy = self.policy()
                # A policy change (opt-out, min_jobs_to_show) rewrites everything, not just what changed.
                full = not derive.derived_is_current(self.root, self.cluster, policy)
                cursor = Cursor(self.root, self.cluster, self.cfg["backfill_start"], now)
                self.step_current(cursor, now)
                rechecked = self.step_recheck(cursor, now)
                n = self.cfg["backfill_months_per_poll"] if backfill_months is None else backfill_months
                backfilled = self.step_backfill(cursor, n, now)
                new_users = self.step_discover(cursor, asof)
                pruned = self.step_retention(now)
                self.log.phase = "derive"
                d = derive.derive(
                    self.root,
                    self.cluster,
                    policy,
                    now=now,
                    months=None if full or pruned else self.touched_months,
                    users=None if full else self.touched_users,
                    write_merged=merged,
                )
            except ScoreboardError as exc:
                health["last_error"] = {"at": asof, "message": str(exc)}
                _write_health(self.root, self.cluster, health)
                self.log("error", str(exc), phase="poll")
                raise
            summary = dict(self.totals)
            summary.update(
                {
                    "backfilled_months": backfilled,
                    "rechecked_months": rechecked,
                    "new_users": len(new_users),
                    "pruned": pruned,
                    "calls": self.sacct.calls,
                    "bytes": self.sacct.bytes,
                    "rate_sleep_ms": self.sacct.rate_sleep_ms,
                    "derived": d,
                    "seconds": round(time.time() - start_t, 3),
                    "backfill_done": not cursor.data.get("next_backfill_month"),
                }
            )
            health.update(
                {
                    "last_success": asof,
                    "last_error": None,
                    "jobs_new": self.totals["jobs_new"],
                    "calls": self.sacct.calls,
                }
            )
            sv = self.sacct.version()
            if sv:
                health["sacct_version"] = sv
            _write_health(self.root, self.cluster, health)
            self.log(
                "info", "poll done", phase="poll", **{k: v for k, v in summary.items() if k != "derived"}
            )
            return summary

    def rebuild(self) -> Dict[str, Any]:
        """Rewrite every derived file from the month states under the lock. Idempotent."""
        now = datetime.datetime.utcfromtimestamp(self.clock())
        with PollLock(layout.lock_file(self.root, self.cluster), self.cfg["stale_lock_sec"]):
            return derive.derive(
                self.root, self.cluster, self.policy(), now=now, write_merged=self.merged_writer()
            )


def _prev_month(month: str) -> str:
    i = month_index(month) - 1
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def _read_health(root: str, cluster: str) -> Dict[str, Any]:
    try:
        data = read_json(layout.health_file(root, cluster))
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, FormatError):
        return {}


def _write_health(root: str, cluster: str, health: Dict[str, Any]) -> None:
    try:
        fsutil.atomic_write_json(layout.health_file(root, cluster), health)
    except ScoreboardError as exc:
        sys.stderr.write(f"slurm-sb: cannot write health file: {exc}\n")
