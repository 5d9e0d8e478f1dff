"""``slurm-sb``: the poller and its tools. Standard library only, Python 3.6+.

Exit codes: 0 ok; 1 doctor/probe found problems or internal error; 2 usage/config; 3 bad file;
6 cannot write the root; 7 sacct failed; 75 another poller holds the lock (cron: try next time).
"""

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any, List, Optional

from . import __version__, config, dedupe, humanize, layout, model, probe
from .errors import LockHeldError, ScoreboardError, UsageError
from .schemas import METRICS, normalize_window


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="shared root directory (env SLURM_SB_ROOT)")
    p.add_argument("--cluster", help="this cluster's name (env SLURM_SB_CLUSTER; default: ClusterName)")
    p.add_argument("--config", help="config file (default ~/.slurm_scoreboard/config.yaml)")
    p.add_argument("--sacct", help="sacct executable (default: sacct on PATH)")
    p.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")


def _poll_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rate-limit", type=float, dest="rate_limit_per_min", help="sacct calls per minute (default 2)"
    )
    p.add_argument("--backfill-start", help="first month to read, YYYY-MM[-DD] (default 2000-01-01)")
    p.add_argument("--quiet", action="store_true", help="log only warnings and errors on stderr")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="slurm-sb",
        description="SlurmScoreboard poller: sacct -> per-user rollups and leaderboards under a shared root.",
    )
    ap.add_argument("--version", action="version", version=f"slurm-sb {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("probe", help="print environment facts (python, TERM, sacct, cluster, root)")
    _common(p)
    p = sub.add_parser("poll", help="poll sacct and update the files (--once for cron)")
    _common(p)
    _poll_flags(p)
    p.add_argument("--once", action="store_true", help="one poll then exit (without it: loop like `daemon`)")
    p.add_argument("--backfill-months", type=int, help="backfill months to read in this poll (default 1)")
    p = sub.add_parser("daemon", help="poll every poll_interval_sec until interrupted")
    _common(p)
    _poll_flags(p)
    p = sub.add_parser("backfill", help="read backfill months until caught up (or --months N)")
    _common(p)
    _poll_flags(p)
    p.add_argument("--months", type=int, default=0, help="stop after N months (0: until caught up)")
    p = sub.add_parser("rebuild", help="rewrite every derived file from the month states")
    _common(p)
    p = sub.add_parser("leaderboard", help="print a leaderboard as a plain table")
    _common(p)
    p.add_argument("--window", default="alltime", help="alltime, 30d or 365d")
    p.add_argument("--metric", default="clock_hours", choices=METRICS)
    p.add_argument("--limit", type=int, default=20, help="rows to print (default 20; 0: the heading only)")
    p.add_argument("--json", action="store_true", help="print the leaderboard as JSON (the file's format)")
    p = sub.add_parser("bloom", help="Bloom filter tools")
    bsub = p.add_subparsers(dest="bloom_command", metavar="SUBCOMMAND")
    b = bsub.add_parser("stats", help="header, fill and estimated FP rate of one month's filter")
    _common(b)
    b.add_argument("--month", required=True, help="YYYY-MM")
    p = sub.add_parser("doctor", help="check locks, cursors, health, files; exit 1 on problems")
    _common(p)
    p = sub.add_parser("config", help="print the effective configuration and where each value came from")
    _common(p)
    _poll_flags(p)
    return ap


def _warn(msg: str) -> None:
    sys.stderr.write(f"slurm-sb: warning: {msg}\n")


def _load_cfg(args: argparse.Namespace, need_cluster: bool, reader: bool = False) -> config.Config:
    """Return the effective config. ``reader``: a command that only reads the files (leaderboard)
    warns about a bad policy.json and goes on, as the TUI does; commands that act on the policy stop."""
    flags = {
        "root": args.root,
        "cluster": args.cluster,
        "rate_limit_per_min": getattr(args, "rate_limit_per_min", None),
        "backfill_start": getattr(args, "backfill_start", None),
        "sacct": getattr(args, "sacct", None),
    }
    warn = _warn if reader else None
    cfg = config.load(flags, config_path=args.config, warn=warn)
    if need_cluster and not cfg["cluster"]:
        name = probe.cluster_name()
        if name:
            # Load again with the detected name, so policy.json's clusters.<name> section applies too.
            flags["cluster"] = name
            cfg = config.load(flags, config_path=args.config, warn=warn)
            cfg.sources["cluster"] = "scontrol show config"
    if need_cluster and cfg["cluster"] == layout.ALL:
        raise UsageError("--cluster ALL is only for reading; a poller polls one cluster")
    return cfg


def _need_root(cfg: config.Config, existing: bool = False) -> str:
    """Return the configured root; UsageError when unset (or, with ``existing``, not a directory)."""
    root = cfg["root"]
    if not root:
        raise UsageError("no root given", hint="pass --root, set SLURM_SB_ROOT, or `root:` in the config")
    if existing and not os.path.isdir(root):
        raise UsageError(
            f"the root {root} (from {cfg.sources['root']}) does not exist or is not a directory",
            hint="check the path; the poller creates it",
        )
    return root


def _poller(args: argparse.Namespace) -> Any:
    from .jsonlog import JsonLog
    from .poller import Poller

    cfg = _load_cfg(args, need_cluster=True)
    _need_root(cfg)
    log = JsonLog(
        cfg["cluster"],
        layout.log_file(cfg["root"], cfg["cluster"]) if cfg["cluster"] else None,
        quiet=getattr(args, "quiet", False),
    )
    return Poller(cfg, log=log)


def cmd_poll(args: argparse.Namespace) -> int:
    if not args.once:
        return cmd_daemon(args)
    if args.backfill_months is not None and args.backfill_months < 0:
        raise UsageError(f"--backfill-months: expected 0 or more months, found {args.backfill_months}")
    summary = _poller(args).poll(backfill_months=args.backfill_months)
    return 0 if summary else 1


def cmd_daemon(args: argparse.Namespace) -> int:
    poller = _poller(args)
    interval = poller.cfg["poll_interval_sec"]
    while True:
        t0 = time.time()
        try:
            s = poller.poll()
            if not s["backfill_done"]:
                # Catching up: keep reading months, spaced by backfill_sleep_sec (the bucket also limits).
                time.sleep(poller.cfg["backfill_sleep_sec"])
                continue
        except LockHeldError as exc:
            poller.log("warning", str(exc))
        except ScoreboardError as exc:
            poller.log("error", str(exc))
        except Exception as exc:  # a bug or an unforeseen file problem: log it, try again next cycle
            if args.debug:
                traceback.print_exc()
            poller.log(
                "error",
                f"unexpected error in a poll: {type(exc).__name__}: {exc}",
                phase="daemon",
                error_type=type(exc).__name__,
                hint="retried next cycle; run `slurm-sb poll --once --debug` for the traceback",
            )
        from .poller import Poller

        poller = Poller(poller.cfg, log=poller.log)  # fresh counters each cycle
        time.sleep(max(1.0, interval - (time.time() - t0)))


def cmd_backfill(args: argparse.Namespace) -> int:
    from .poller import Poller

    if args.months < 0:
        raise UsageError(f"--months: expected 0 (until caught up) or more months, found {args.months}")
    poller = _poller(args)
    done = 0
    while True:
        s = poller.poll(backfill_months=1)
        done += s["backfilled_months"]
        if s["backfill_done"] or (args.months and done >= args.months):
            break
        time.sleep(poller.cfg["backfill_sleep_sec"])
        poller = Poller(poller.cfg, log=poller.log)
    print(f"backfill: {done} months read; {'caught up' if s['backfill_done'] else 'more to go'}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    d = _poller(args).rebuild()
    print(f"rebuild: {d['rollups']} monthly rollups, {d['user_files']} user files, shown {d['shown']}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError(f"--limit: expected 0 or a positive number of rows, found {args.limit}")
    cfg = _load_cfg(args, need_cluster=False, reader=True)
    root = _need_root(cfg)
    window = normalize_window(args.window)
    if not window:
        raise UsageError(f"--window: expected alltime, 30d or 365d, found {args.window!r}")
    scope = cfg["cluster"] or layout.ALL
    path = model.leaderboard_path(root, scope, window, args.metric)
    if os.path.exists(path):
        lb = model.load_leaderboard(path)  # validated even for --json: a bad file is named, not printed
        board, asof = lb["rows"], lb["asof"]
        if args.json:
            with open(path, encoding="utf-8") as fh:
                sys.stdout.write(fh.read())
            return 0
    else:
        # No leaderboard file: the metric is a table column only (files exist for TUI_METRICS), or the
        # merged one is not written yet. Rank the table's column as derive ranks the boards.
        columns, rows, asof = model.load_scope(root, scope, window)
        if args.metric not in columns:
            raise UsageError(
                f"--metric {args.metric} is not kept for the {window} window (columns: {', '.join(columns)})",
                hint="memory sums are in the alltime window and the monthly rollups",
            )
        j = columns.index(args.metric)
        from .derive import rank_rows

        ranked = rank_rows([(u, v[j]) for u, v in rows.items()])
        if args.json:
            doc = {"asof": asof, "window": window, "metric": args.metric, "cluster": scope, "rows": ranked}
            sys.stdout.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
            return 0
        board = [(r["rank"], r["user"], r["value"]) for r in ranked]
    print(f"{humanize.skill(args.metric)} -- {scope} -- {window} -- as of {asof}")
    print(f"{'Rank':>5}  {'User':<20} {'XP':>16}")
    for rank, user, value in board[: args.limit]:
        print(f"{rank:>5}  {user:<20} {humanize.xp(args.metric, value):>16}")
    if not board:
        print("  (no users with enough jobs in this window)")
    return 0


def cmd_bloom(args: argparse.Namespace) -> int:
    if args.bloom_command != "stats":
        raise UsageError("usage: slurm-sb bloom stats --month YYYY-MM --cluster NAME")
    cfg = _load_cfg(args, need_cluster=True)
    if not layout.MONTH_RE.match(args.month):
        raise UsageError(f"--month: expected YYYY-MM, found {args.month!r}")
    _need_root(cfg, existing=True)
    if not layout.valid_cluster(cfg["cluster"]):
        raise UsageError(
            f"bad or missing cluster name {cfg['cluster']!r}",
            hint="pass --cluster NAME (or set it in the config)",
        )
    from . import store

    path = layout.bloom_file(cfg["root"], cfg["cluster"], args.month)
    b = dedupe.read_bloom(path)
    if b is None:
        raise UsageError(f"no Bloom filter at {path}", hint="that month has not been read yet")
    stats = dedupe.bloom_stats(b)
    h = store.read_header(layout.month_state(cfg["root"], cfg["cluster"], args.month))
    stats["exact_ids"] = h["n_ids"] if h else None
    stats["path"] = path
    print(json.dumps(stats, indent=2, sort_keys=True))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args, need_cluster=False)
    rows, code = probe.probe(cfg["root"], cfg["sacct"])
    print(probe.format_rows(rows))
    return code


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args, need_cluster=False)
    lines, code = probe.doctor(cfg["root"], cfg["cluster"] or None, cfg["stale_lock_sec"])
    print("\n".join(lines))
    return code


def cmd_config(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args, need_cluster=False)
    width = max(len(k) for k in cfg.values)
    for key in sorted(cfg.values):
        print(f"{key.ljust(width)}  {json.dumps(cfg.values[key])}  ({cfg.sources[key]})")
    return 0


COMMANDS = {
    "probe": cmd_probe,
    "poll": cmd_poll,
    "daemon": cmd_daemon,
    "backfill": cmd_backfill,
    "rebuild": cmd_rebuild,
    "leaderboard": cmd_leaderboard,
    "bloom": cmd_bloom,
    "doctor": cmd_doctor,
    "config": cmd_config,
}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``slurm-sb``; returns the exit code (see the module docstring)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except ScoreboardError as exc:
        sys.stderr.write(f"slurm-sb {args.command}: {exc}\n")
        return exc.exit_code
    except FileNotFoundError as exc:
        sys.stderr.write(f"slurm-sb {args.command}: file not found: {exc.filename or exc}\n")
        sys.stderr.write("  hint: has a poller written this root yet? `slurm-sb doctor` checks it\n")
        return 3
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so briefly, with the traceback only on request
        if getattr(args, "debug", False):
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.filename:
            # A safety net: the readers turn the file problems they expect into FormatError/StorageError.
            sys.stderr.write(f"slurm-sb {args.command}: cannot use {exc.filename}: {exc.strerror or exc}\n")
            sys.stderr.write(
                "  hint: a directory in place of a file, or unreadable? `slurm-sb doctor` checks\n"
            )
            return 3
        sys.stderr.write(f"slurm-sb {args.command}: internal error: {exc!r} (re-run with --debug)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
