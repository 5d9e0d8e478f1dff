"""``slurm-sb probe`` and ``slurm-sb doctor``: environment facts and health checks, as plain text."""

import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from typing import Any, Dict, List, Optional, Tuple

from . import derive, fsutil, humanize, layout, lock, store
from .errors import FormatError
from .model import read_json
from .sacct import check_output


def _show_config(cmd: List[str]) -> Dict[str, str]:
    """Return the ``Key = value`` lines of ``scontrol show config`` / ``sacctmgr show config`` ({} when
    the command is missing or fails)."""
    try:
        out = check_output(cmd, timeout=30)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}
    conf = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and key.strip() not in conf:
            conf[key.strip()] = value.strip()
    return conf


def cluster_name() -> str:
    """Return ClusterName from ``scontrol show config`` ("" when unavailable)."""
    return _show_config(["scontrol", "show", "config"]).get("ClusterName", "")


def capabilities(sacct: str, scontrol: Dict[str, str]) -> Tuple[List[Tuple[str, str]], int]:
    """Return probe rows about what this site's accounting can give, and 1 when the poller cannot work.

    * every field of the sacct query must exist (``sacct --helpformat``): exit 1 when one is missing;
    * ``JobAcctGatherType = jobacct_gather/none`` leaves MaxRSS/AveRSS empty: the memory sums stay 0;
    * ``AccountingStorageTRES`` without ``gres/gpu`` keeps GPUs out of AllocTRES: the GPU metrics stay 0;
    * ``sacctmgr show config`` (best effort): the slurmdbd side's version and storage type.
    """
    from .parser import FIELDS

    rows = []  # type: List[Tuple[str, str]]
    code = 0
    try:
        out = check_output([sacct, "--helpformat"], timeout=30)
        known = {w.lower() for w in out.split()}
        missing = [f for f in FIELDS if f.lower() not in known]
        if missing:
            code = 1
            rows.append(("sacct fields", "MISSING: " + ", ".join(missing) + " (the poller needs them)"))
        else:
            rows.append(("sacct fields", f"all {len(FIELDS)} present"))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        rows.append(("sacct fields", f"unknown (sacct --helpformat failed: {exc})"))
    gather = scontrol.get("JobAcctGatherType")
    if gather:
        note = " (MaxRSS/AveRSS are empty: memory metrics stay 0)" if gather.endswith("/none") else ""
        rows.append(("JobAcctGatherType", gather + note))
    tres = scontrol.get("AccountingStorageTRES")
    if tres is not None:
        note = "" if "gres/gpu" in tres else " (no gres/gpu: GPU metrics stay 0)"
        rows.append(("AccountingStorageTRES", tres + note))
    dbd = _show_config(["sacctmgr", "-n", "show", "config"])
    if dbd:
        rows.append(
            (
                "slurmdbd (sacctmgr)",
                f"{dbd.get('SLURM_VERSION', '?')}, {dbd.get('AccountingStorageType', '?')}",
            )
        )
    else:
        rows.append(("slurmdbd (sacctmgr)", "unavailable (sacctmgr missing or slurmdbd not answering)"))
    return rows, code


def probe(root: str, sacct: str = "sacct") -> Tuple[List[Tuple[str, str]], int]:
    """Return ``([(label, value)], exit_code)``; exit 1 when sacct is missing. Runs ``sacct --version``."""
    rows = [
        ("python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("TERM", os.environ.get("TERM", "")),
        ("host", socket.gethostname()),
    ]
    code = 0
    for tool in ("sacct", "squeue", "scontrol"):
        path = shutil.which(sacct if tool == "sacct" else tool)
        rows.append((tool, path or "NOT FOUND"))
        if tool == "sacct" and not path:
            code = 1
    if code == 0:
        try:
            v = check_output([sacct, "--version"], timeout=30, stderr=None).strip()
        except (OSError, subprocess.SubprocessError) as exc:
            v = f"failed: {exc}"
            code = 1
        rows.append(("sacct --version", v))
    scontrol = _show_config(["scontrol", "show", "config"])
    rows.append(("ClusterName", scontrol.get("ClusterName") or "unknown (scontrol unavailable)"))
    if code == 0:
        more, code = capabilities(sacct, scontrol)
        rows.extend(more)
    if root:
        rows.append(("root", root))
        rows.append(("root readable", "yes" if os.access(root, os.R_OK) else "NO"))
        rows.append(("root writable", "yes" if os.access(root, os.W_OK) else "no (read-only: TUI use only)"))
        rows.append(("clusters under root", ", ".join(layout.list_cluster_dirs(root)) or "(none yet)"))
    else:
        rows.append(("root", "not set (use --root or SLURM_SB_ROOT)"))
    return rows, code


def doctor(
    root: str, cluster: Optional[str], stale_sec: float, max_age_sec: float = 3 * 3600
) -> Tuple[List[str], int]:
    """Return ``(lines, exit_code)``: one line per check, ``OK``/``WARN``/``FAIL``; exit 1 on any FAIL."""
    lines = []  # type: List[str]
    fails = 0

    def say(level: str, msg: str) -> None:
        nonlocal fails
        if level == "FAIL":
            fails += 1
        lines.append(f"{level:4} {msg}")

    if not root or not os.path.isdir(root):
        say("FAIL", f"root {root!r} is not a directory (set --root or SLURM_SB_ROOT)")
        return lines, 1
    say("OK" if os.access(root, os.R_OK) else "FAIL", f"root {root} readable")
    try:
        st = os.statvfs(root)
        free = st.f_bavail * st.f_frsize
        say("OK" if free > 1 << 30 else "WARN", f"disk free under root: {free / 1e9:.1f} GB")
    except OSError as exc:
        say("WARN", f"cannot stat filesystem: {exc}")
    clusters = [cluster] if cluster else layout.list_cluster_dirs(root)
    if not clusters:
        say("WARN", "no clusters under root yet (run `slurm-sb poll --once --cluster NAME`)")
    for c in clusters:
        _doctor_cluster(root, c, stale_sec, max_age_sec, say)
    return lines, 1 if fails else 0


def _doctor_cluster(root: str, c: str, stale_sec: float, max_age_sec: float, say: Any) -> None:
    sd = layout.state_dir(root, c)
    if not os.path.isdir(sd):
        say("FAIL", f"[{c}] no state directory {sd}")
        return
    _doctor_writable(root, c, say)
    lock_path = layout.lock_file(root, c)
    info = lock.read_lock(lock_path)
    if info is None and os.path.isdir(lock_path):
        say("FAIL", f"[{c}] lock {lock_path} is a directory: polls fail until it is removed")
    elif info is None and os.path.lexists(lock_path):
        say("WARN", f"[{c}] lock {lock_path} holds no lock token (the next poll takes it over)")
    elif info is None:
        say("OK", f"[{c}] not locked")
    elif lock.is_stale(info, stale_sec):
        say(
            "WARN", f"[{c}] stale lock from pid {info['pid']} on {info['host']} (the next poll takes it over)"
        )
    else:
        age = time.time() - info["since"]
        say("OK", f"[{c}] locked by pid {info['pid']} on {info['host']} for {age:.0f} s")
    try:
        cur = read_json(layout.cursor_file(root, c))
        say(
            "OK",
            f"[{c}] cursor: current {cur['current']['month']} up to {cur['current'].get('last_end')}, "
            f"next backfill {cur.get('next_backfill_month') or 'done'}",
        )
        busy = cur.get("in_progress")
        if isinstance(busy, dict) and (info is None or lock.is_stale(info, stale_sec)):
            say(
                "WARN",
                f"[{c}] the last poll stopped during its {busy.get('phase')} read of {busy.get('window')}"
                f" (started {busy.get('since')}); the next poll redoes it",
            )
    except FileNotFoundError:
        say("WARN", f"[{c}] no cursor yet (never polled)")
    except FormatError as exc:
        say("FAIL", f"[{c}] cursor unreadable: {exc}")
    except (KeyError, TypeError, AttributeError):
        say(
            "FAIL",
            f"[{c}] cursor {layout.cursor_file(root, c)}: expected {{'current': {{'month', ...}}, ...}}",
        )
    _doctor_health(root, c, max_age_sec, say)
    _doctor_log(root, c, say)
    temps = fsutil.stale_temps(layout.cluster_dir(root, c))
    if temps:
        what = "a writer that died" if len(temps) == 1 else "writers that died"
        say(
            "WARN",
            f"[{c}] {humanize.count(len(temps), 'stale temp file')} (of {what}), e.g. {temps[0]}:"
            " the next poll removes " + ("it" if len(temps) == 1 else "them"),
        )
    bad = 0
    for month in store.list_months(root, c):
        try:
            path = layout.month_state(root, c, month)
            h = store.read_header(path)
            store.read_state(path, month)  # decodes every blob: a damaged file fails here, not in a poll
            b = None
            try:
                from .dedupe import read_bloom

                b = read_bloom(layout.bloom_file(root, c, month))
            except FormatError as exc:
                say("WARN", f"[{c}] {exc} (rebuilt at the next poll of that month)")
            if h and b is not None and b.n != h["n_ids"]:
                say(
                    "WARN",
                    f"[{c}] {month}: Bloom n={b.n} but state holds {h['n_ids']} ids (rebuilt when next read)",
                )
        except FormatError as exc:
            bad += 1
            say("FAIL", f"[{c}] {exc}")
    if not bad:
        say("OK", f"[{c}] {humanize.count(len(store.list_months(root, c)), 'month state')} readable")
    try:
        current = derive.derived_is_current(root, c)
    except FormatError as exc:
        say("WARN", f"[{c}] cannot compare the derived files with the month states: {exc}")
    else:
        if current:
            say("OK", f"[{c}] derived files match the month states")
        else:
            say(
                "WARN",
                f"[{c}] derived files do not match the month states"
                " (the next poll rewrites them; `slurm-sb rebuild` does it now)",
            )


def _doctor_writable(root: str, c: str, say: Any) -> None:
    """FAIL when this user cannot write a directory the poller of ``c`` writes: its polls would fail."""
    tops = [layout.cluster_dir(root, c)]
    try:
        conf = read_json(layout.clusters_config(root))
        writer = conf.get("merged_writer") if isinstance(conf, dict) else None
    except (FileNotFoundError, FormatError):
        writer = None
    if not writer or writer == c:  # this poller writes the merged boards too
        tops.append(os.path.join(root, "leaderboards"))
    denied = [d for top in tops for d, _s, _n in os.walk(top) if not os.access(d, os.W_OK | os.X_OK)]
    if denied:
        say(
            "FAIL",
            f"[{c}] this user cannot write {humanize.count(len(denied), 'directory', 'directories')} the"
            f" poller writes, e.g. {denied[0]}: polls fail (exit 6)",
        )
    else:
        say("OK", f"[{c}] every directory the poller writes is writable by this user")


def _doctor_log(root: str, c: str, say: Any, day_sec: float = 86400.0, tail_bytes: int = 1 << 20) -> None:
    """Report the errors of the last day in ``state/log/poll.jsonl`` (its last MiB: a bounded read)."""
    path = layout.log_file(root, c)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - tail_bytes))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return
    except OSError as exc:
        say("WARN", f"[{c}] cannot read the log {path}: {exc}")
        return
    since = (datetime.datetime.utcnow() - datetime.timedelta(seconds=day_sec)).strftime("%Y-%m-%dT%H:%M:%S")
    errors = []
    for line in tail:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the first line of the tail may be cut
        if isinstance(rec, dict) and rec.get("level") == "error" and str(rec.get("ts", "")) >= since:
            errors.append(rec)
    if errors:
        last = errors[-1]
        n = len(errors)
        first_line = (str(last.get("msg") or "").splitlines() or [""])[0]
        say(
            "WARN",
            f"[{c}] {humanize.count(n, 'error')} logged in the last 24 h;"
            f" latest {last.get('ts')}: {first_line}",
        )
    else:
        say("OK", f"[{c}] no errors logged in the last 24 h")


def _doctor_health(root: str, c: str, max_age_sec: float, say: Any) -> None:
    path = layout.health_file(root, c)
    hint = "the next poll rewrites it"
    try:
        h = read_json(path)
    except FileNotFoundError:
        say("WARN", f"[{c}] no health file yet")
        return
    except FormatError as exc:
        say("FAIL", f"[{c}] {exc}")
        return
    if not isinstance(h, dict):
        say("FAIL", f"[{c}] {path}: expected a JSON object at the top level ({hint})")
        return
    last = h.get("last_success")
    if last:
        try:
            t = datetime.datetime.strptime(str(last).rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            say("FAIL", f"[{c}] {path}: field 'last_success' is not YYYY-MM-DDTHH:MM:SSZ: {last!r} ({hint})")
        else:
            age = (datetime.datetime.utcnow() - t).total_seconds()
            say(
                "OK" if age <= max_age_sec else "WARN",
                f"[{c}] last successful poll {last} ({age / 60:.0f} min ago)",
            )
    else:
        say("WARN", f"[{c}] no successful poll recorded")
    err = h.get("last_error")
    if isinstance(err, dict):
        say("WARN", f"[{c}] last error at {err.get('at')}: {err.get('message')}")
    elif err:
        say("FAIL", f"[{c}] {path}: field 'last_error' should be {{'at', 'message'}}, found {err!r} ({hint})")


def format_rows(rows: List[Tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def as_json(obj: Dict[str, Any]) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
