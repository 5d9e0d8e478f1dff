"""``slurm-sb-tui``: browse the SlurmScoreboard high scores (curses, ANSI or Textual).

Exit codes: 0 ok; 2 bad flags, environment or config (a message says which and how to fix it);
4 the requested backend cannot run here; 128 + N after signal N (SIGTERM, SIGHUP) in the interactive
ANSI UI, with the terminal restored. Never prints a traceback for bad input. (bin/slurm-sb-tui exits
1 on a Python older than 3.6.)
"""

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import sys
from typing import List, Mapping, Optional, Tuple

from . import labels
from .controller import Controller
from .errors import BackendUnavailable, TuiError, UsageError
from .frame import Glyphs
from .settings import resolve
from .store import ALL, Store
from .viewmodel import ViewState, parse_sort

DEFAULT_REFRESH_SEC = 60.0
DUMB_TERMS = ("", "dumb", "unknown")  # no cursor movement, no colour: frames are printed plainly


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (its --help is the command's reference)."""
    p = argparse.ArgumentParser(
        prog="slurm-sb-tui",
        description="Old School RuneScape style high scores of Slurm usage, read from the scoreboard root "
        "(never runs sacct). Keys: Tab column, s sort, f filter, / search (n next), w window, m skill, "
        "g cluster, r refresh, arrows/j/k/PgUp/PgDn/Home/End scroll, q quit.",
    )
    p.add_argument(
        "--backend",
        choices=("curses", "textual", "ansi"),
        help="default: curses on a terminal, ansi for pipes, TERM=dumb and --once",
    )
    p.add_argument("--root", help="scoreboard root (default: $SLURM_SB_ROOT, then 'root' in the config file)")
    p.add_argument("--cluster", help="a cluster name or ALL (default: $SLURM_SB_CLUSTER, config, ALL)")
    p.add_argument("--user", default="", metavar="PATTERN", help="show only players matching (text or glob)")
    p.add_argument("--window", choices=labels.WINDOWS, default="alltime")
    p.add_argument("--metric", choices=labels.METRICS, default="clock_hours")
    p.add_argument(
        "--sort",
        default="rank",
        metavar="COL[:asc|desc]",
        help="rank, user, xp, share or main (default: rank)",
    )
    p.add_argument(
        "--refresh-sec",
        type=float,
        default=DEFAULT_REFRESH_SEC,
        metavar="N",
        help="re-read the files every N seconds; 0 = only on r (default: %(default)s)",
    )
    p.add_argument("--no-color", action="store_true", help="no colours (also when $NO_COLOR is set)")
    p.add_argument("--once", action="store_true", help="print one frame to stdout and exit")
    p.add_argument("--size", metavar="COLSxLINES", help="frame size for --once (default: the terminal's)")
    p.add_argument("--ascii", action="store_true", help="ASCII borders and crown even on a UTF-8 locale")
    return p


def _parse_size(text: Optional[str]) -> Optional[Tuple[int, int]]:
    if not text:
        return None
    m = re.match(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$", text)
    if not m:
        raise UsageError(f"--size {text!r}: expected COLSxLINES, e.g. 100x30")
    return int(m.group(1)), int(m.group(2))


def _stdout_utf8() -> bool:
    return "utf" in (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "")


def textual_installed() -> bool:
    """Return True when the optional ``textual`` package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("textual") is not None
    except (ImportError, ValueError):
        return False


def choose_backend(requested: Optional[str], once: bool) -> str:
    """Return the backend to use: the requested one, else curses on a real terminal, else ansi."""
    if requested:
        return requested
    if once or not sys.stdout.isatty() or not sys.stdin.isatty() or dumb_terminal():
        return "ansi"
    return "curses"


def dumb_terminal(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Return True when ``$TERM`` says the terminal cannot move the cursor (``dumb``, unset...)."""
    return (os.environ if environ is None else environ).get("TERM", "") in DUMB_TERMS


def color_wanted(no_color_flag: bool, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Return False for ``--no-color`` or a non-empty ``$NO_COLOR`` (https://no-color.org)."""
    return not no_color_flag and not (os.environ if environ is None else environ).get("NO_COLOR")


def make_controller(args: argparse.Namespace, textual_tip: bool) -> Controller:
    """Return a Controller for the parsed flags. Raises UsageError for a bad root, cluster or sort."""
    settings = resolve(args.root, args.cluster)
    if not os.path.isdir(settings.root):
        raise UsageError(
            f"scoreboard root {settings.root} (from {settings.root_source}) is not a directory",
            hint="check the path; the poller creates it: slurm-sb poll --cluster <name> --root DIR --once",
        )
    try:
        sort_col, sort_desc = parse_sort(args.sort)
    except ValueError as exc:
        raise UsageError(f"--sort: {exc}") from exc
    if args.refresh_sec < 0:
        raise UsageError("--refresh-sec must be 0 (off) or a positive number of seconds")
    store = Store(settings.root)
    if settings.cluster != ALL and store.has_data() and settings.cluster not in store.clusters():
        raise UsageError(
            f"no leaderboards for cluster {settings.cluster!r} (from {settings.cluster_source}) "
            f"under {settings.root}",
            hint="clusters with data: {}; or use --cluster ALL".format(", ".join(store.clusters())),
        )
    state = ViewState(settings.cluster, args.window, args.metric, sort_col, sort_desc, args.user)
    return Controller(store, state, textual_tip=textual_tip)


def run(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and run the chosen backend; return the exit code. Raises TuiError."""
    args = build_parser().parse_args(argv)
    size = _parse_size(args.size)
    backend = choose_backend(args.backend, args.once)
    color = color_wanted(args.no_color)
    if backend == "textual" and not args.once:
        if not textual_installed():
            raise BackendUnavailable(
                "the Textual backend needs the 'textual' package, not installed for " + sys.executable,
                hint="pip install textual (Python >= 3.9), or use --backend curses",
            )
        from . import backend_textual  # imports textual; only on request

        return backend_textual.run(make_controller(args, False), color, args.refresh_sec, args.ascii)
    # The "get the Textual backend" tip: for people looking at a live UI, not in --once output
    tty = sys.stdout.isatty()
    live = backend == "curses" or (backend == "ansi" and tty and not args.once)
    ctrl = make_controller(args, live and not textual_installed())
    if backend == "curses" and not args.once:
        if not (tty and sys.stdin.isatty()):
            raise BackendUnavailable(
                "--backend curses needs a terminal on stdin and stdout",
                hint="use --once or --backend ansi to print a frame to a pipe or file",
            )
        try:
            from . import backend_curses
        except ImportError as exc:  # a Python built without _curses
            raise BackendUnavailable(
                f"this Python has no curses module ({exc})", hint="use --backend ansi"
            ) from exc
        return backend_curses.run(ctrl, color, args.refresh_sec)

    from . import backend_ansi

    ansi = not dumb_terminal()  # the terminal understands escape codes (cursor movement, colour)
    glyphs = Glyphs(_stdout_utf8() and not args.ascii)
    colors256 = "256" in os.environ.get("TERM", "") or "truecolor" in os.environ.get("COLORTERM", "")
    paint_color = color and tty and ansi

    if not args.once and backend_ansi.can_read_keys():
        # interactive: keys from the terminal; the size asked of the terminal, not stale $COLUMNS
        def live_size() -> Tuple[int, int]:
            return size or backend_ansi.terminal_size(sys.stdout.fileno())

        return backend_ansi.run_interactive(ctrl, live_size, glyphs, color, args.refresh_sec, ansi, colors256)

    def current_size() -> Tuple[int, int]:
        return size or tuple(shutil.get_terminal_size((100, 30)))

    if args.once or args.refresh_sec <= 0 or not tty:
        cols, lines = current_size()
        sys.stdout.write(backend_ansi.render_once(ctrl, cols, lines, glyphs, paint_color, colors256))
        for problem in ctrl.store.problems:
            print("slurm-sb-tui: warning: " + problem, file=sys.stderr)
        return 0
    return backend_ansi.run_loop(
        ctrl, current_size, glyphs, paint_color, args.refresh_sec, ansi, None, colors256
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Console-script entry point: run, turning TuiError into a message on stderr and its exit code."""
    try:
        return run(argv)
    except TuiError as exc:
        print(f"slurm-sb-tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `slurm-sb-tui --once | head`: the reader left; that is not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- must stay open until exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
