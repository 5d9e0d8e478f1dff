"""Classify a failure: what went wrong, reduced to what to do about it.

Every failure gets one category (and, for ``resources``, a kind):

    ==============  ===============================================  ==========================
    category        meaning                                          suggested action
    ==============  ===============================================  ==========================
    transient       running it again may succeed                     retry
    permanent       running it again will fail the same way          fix the handler or input
    infrastructure  the node, the network or the storage failed      check the node / storage
    resources       it needed more memory (kind ``memory``) or       raise memory / raise time
                    more time (kind ``time``) than it was given
    unknown         none of the rules below matched                  read the traceback
    ==============  ===============================================  ==========================

The rules, first match wins (docs/errors.md has the same table; tests/unit/failures/test_classify.py
checks it row by row):

**An exception raised by a handler** (``classify_exception``; the worker records one per failed item):

1. the job's ``handler.classify`` function (``module:function``, called with the exception) returns a
   category: that one. It returns None, raises, or returns anything else: the rules below decide.
2. ``slurmctl.errors.TransientItemError`` / ``PermanentItemError`` (``ItemError``: unknown).
3. An HTTP status carried by the exception, duck-typed (no HTTP library is imported): requests and
   httpx (``exc.response.status_code``), botocore's ``ClientError`` (``exc.response
   ["ResponseMetadata"]["HTTPStatusCode"]``), aiohttp (``exc.status``), ``exc.status_code``, and
   urllib's ``HTTPError`` (``exc.code``, read only on classes named ``*HTTP*``). 429 and 5xx:
   transient; any other 4xx: permanent. A botocore throttling code (``Throttling``,
   ``ThrottlingException``, ``SlowDown``, ``RequestLimitExceeded``...) is transient whatever the status.
4. ``OSError`` by errno: ENOSPC, EDQUOT, EROFS, EIO, ESTALE: infrastructure; ECONNRESET, ECONNREFUSED,
   ECONNABORTED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ENETDOWN, EPIPE, EAGAIN: transient; ENOENT,
   EACCES, EPERM, EISDIR, ENOTDIR, ENAMETOOLONG: permanent.
5. ``MemoryError``: resources (memory).
6. Timeouts and lost connections by class name anywhere in the exception's class hierarchy
   (``TimeoutError``, ``ConnectionError`` — the builtins and requests' —, ``Timeout``,
   ``ReadTimeout``, ``ConnectTimeout``, httpx's ``TimeoutException``/``ConnectError``/``NetworkError``/
   ``RemoteProtocolError``, urllib3's ``ProtocolError``, botocore's ``EndpointConnectionError``,
   urllib's ``URLError``): transient.
7. A slurmctl error (``SlurmctlError``, e.g. ``StorageError`` from ``ctx``, ``RateLimitTimeout``): the
   category of its exit code (below).
8. ``ValueError`` (JSON and Unicode errors included), ``LookupError`` (``KeyError``, ``IndexError``),
   ``TypeError``, ``AttributeError``, ``ArithmeticError``, ``AssertionError``, ``NotImplementedError``,
   ``RecursionError``: permanent.
9. Anything else: unknown.

An item has no time limit of its own (the task has), so ``resources`` on an item is always memory.

**A process exit** (``classify_exit``: a worker's exit code, ``-N`` or ``128+N`` for signal N as a
shell or ``subprocess`` reports it, or sacct's ``ExitCode`` ``code:signal``):

    ================================================  ==================================
    exit code / signal                                category
    ================================================  ==================================
    2 config, 3 input, 4 handler, 5 state, 8 results, permanent
    14 refused by the control plane
    6 storage, 7 scheduler                            infrastructure
    10 rate-limit wait gave up, 11 lease lost,        transient
    75 interrupted after a checkpoint
    SIGKILL (9)                                       resources (memory): the kernel's OOM
                                                      killer and Slurm's memory enforcement
                                                      kill with it
    SIGXCPU (24)                                      resources (time)
    SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2         transient (stopped from outside)
    SIGSEGV, SIGABRT, SIGILL, SIGFPE                  permanent (a crash in native code)
    SIGBUS                                            infrastructure
    anything else (1 included)                        unknown
    ================================================  ==================================

**A Slurm state from sacct** (``classify_slurm``): NODE_FAIL, BOOT_FAIL, PREEMPTED: infrastructure;
OUT_OF_MEMORY: resources (memory); TIMEOUT, DEADLINE: resources (time); FAILED: its exit code or
signal (FAILED ``0:9`` is how OverMemoryKill ends: resources, memory — unless sacct shows the batch
step's MaxRSS below 90 % of the element's ReqMem: unknown); CANCELLED, REQUEUED: transient; anything
else: unknown.

**A task that failed as a whole** (``classify_task``: its record's ``cause``, written by the
lifecycle from the Slurm facts of the element that ended the attempt; else its ``error`` and
``exit_code``): the Slurm state the lifecycle wrote into the error ("... (out_of_memory in
Slurm)", "Slurm array N ended node_fail before running it"), else the exit code the local runner
wrote ("worker pid N exited -9 ..."), else the record's exit code; else unknown.

Stdlib only (the worker imports this module).
"""

from __future__ import annotations

import errno
import re
import signal
from collections.abc import Callable
from typing import NamedTuple

from slurmctl.errors import ItemError, SlurmctlError
from slurmctl.slurm.states import JobState as SlurmState

CATEGORIES = ("transient", "permanent", "infrastructure", "resources", "unknown")
KINDS = ("memory", "time")

ACTIONS = {
    "transient": "retry",
    "permanent": "fix the handler (or the input records)",
    "infrastructure": "check the node and the storage, then retry",
    "resources/memory": "raise memory (resources.mem_gb), then retry",
    "resources/time": "raise time (resources.time_min), then retry",
    "unknown": "read the sample traceback; raise TransientItemError/PermanentItemError or set "
    "handler.classify to classify it",
}


class Verdict(NamedTuple):
    """A classification: one of CATEGORIES and, for ``resources``, one of KINDS."""

    category: str
    kind: str | None = None

    @property
    def label(self) -> str:
        """``category`` or ``resources/<kind>``."""
        return f"{self.category}/{self.kind}" if self.kind else self.category

    @property
    def action(self) -> str:
        """What to do about a failure of this verdict."""
        return ACTIONS.get(self.label) or ACTIONS[self.category]


TRANSIENT = Verdict("transient")
PERMANENT = Verdict("permanent")
INFRASTRUCTURE = Verdict("infrastructure")
MEMORY = Verdict("resources", "memory")
TIME = Verdict("resources", "time")
UNKNOWN = Verdict("unknown")


def verdict_of(category: str) -> Verdict:
    """The verdict an item failure record's ``category`` stands for (``resources`` on an item is
    memory). Unknown strings give UNKNOWN. Pure."""
    if category == "resources":
        return MEMORY
    return Verdict(category) if category in CATEGORIES else UNKNOWN


# -- exceptions ---------------------------------------------------------------------------------

_INFRA_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ESTALE}
_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
    errno.EAGAIN,
}
_PERMANENT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG}
# Class names (anywhere in the MRO) of timeouts and lost connections in the standard library and
# the usual HTTP / AWS clients, matched by name so that none of them is imported.
_TRANSIENT_NAMES = frozenset(
    {
        "TimeoutError",
        "ConnectionError",
        "Timeout",
        "ReadTimeout",
        "ConnectTimeout",
        "TimeoutException",
        "ConnectError",
        "NetworkError",
        "RemoteProtocolError",
        "ProtocolError",
        "EndpointConnectionError",
        "URLError",
    }
)
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
_PERMANENT_TYPES = (
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
    ArithmeticError,
    AssertionError,
    NotImplementedError,
    RecursionError,
)


def http_status(exc: BaseException) -> int | None:
    """The HTTP error status (400-599) an exception of a well-known HTTP or AWS client carries, or
    None. Duck-typed: no client library is imported. Pure."""
    response = getattr(exc, "response", None)
    candidates: list[object] = [getattr(response, "status_code", None)]
    if isinstance(response, dict):  # botocore ClientError
        meta = response.get("ResponseMetadata")
        candidates.append(meta.get("HTTPStatusCode") if isinstance(meta, dict) else None)
    candidates += [getattr(exc, "status_code", None), getattr(exc, "status", None)]
    if any("HTTP" in cls.__name__ for cls in type(exc).__mro__):  # urllib.error.HTTPError: .code
        candidates.append(getattr(exc, "code", None))
    for status in candidates:
        if type(status) is int and 400 <= status <= 599:
            return status
    return None


def _aws_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def classify_exception(
    exc: BaseException, custom: Callable[[BaseException], object] | None = None
) -> Verdict:
    """Classify an exception a handler raised for one item (rules 1-9 of the module docstring).
    ``custom`` is the job's ``handler.classify`` function, if any. Never raises."""
    if custom is not None:
        try:
            category = custom(exc)
        except Exception:  # a broken classifier must not fail the item twice: the table decides
            category = None
        if category in CATEGORIES:
            return verdict_of(category)  # type: ignore[arg-type]
    if isinstance(exc, ItemError):
        return verdict_of(exc.category)
    if _aws_code(exc) in _THROTTLING_CODES:
        return TRANSIENT
    status = http_status(exc)
    if status is not None:
        return TRANSIENT if status == 429 or status >= 500 else PERMANENT
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _INFRA_ERRNOS:
            return INFRASTRUCTURE
        if exc.errno in _TRANSIENT_ERRNOS:
            return TRANSIENT
        if exc.errno in _PERMANENT_ERRNOS:
            return PERMANENT
    if isinstance(exc, MemoryError):
        return MEMORY
    if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__):
        return TRANSIENT
    if isinstance(exc, SlurmctlError):
        return classify_exit(exc.exit_code)
    if isinstance(exc, _PERMANENT_TYPES):
        return PERMANENT
    return UNKNOWN


# -- process exits --------------------------------------------------------------------------------

_EXIT_CODES = {
    2: PERMANENT,
    3: PERMANENT,
    4: PERMANENT,
    5: PERMANENT,
    8: PERMANENT,
    14: PERMANENT,
    6: INFRASTRUCTURE,
    7: INFRASTRUCTURE,
    10: TRANSIENT,
    11: TRANSIENT,
    75: TRANSIENT,
}
_SIGNALS = {
    signal.SIGKILL: MEMORY,
    signal.SIGXCPU: TIME,
    signal.SIGTERM: TRANSIENT,
    signal.SIGINT: TRANSIENT,
    signal.SIGHUP: TRANSIENT,
    signal.SIGUSR1: TRANSIENT,
    signal.SIGUSR2: TRANSIENT,
    signal.SIGSEGV: PERMANENT,
    signal.SIGABRT: PERMANENT,
    signal.SIGILL: PERMANENT,
    signal.SIGFPE: PERMANENT,
    signal.SIGBUS: INFRASTRUCTURE,
}


def exit_signal(code: int, sig: int | None = None) -> int | None:
    """The signal that ended a process, from ``sig`` (sacct's ``code:signal``), a negative code
    (``subprocess``) or a code above 128 (a shell's 128+N); else None. Pure."""
    if sig:
        return sig
    if code < 0:
        return -code
    if 128 < code <= 128 + 64:
        return code - 128
    return None


def classify_exit(code: int, sig: int | None = None) -> Verdict:
    """Classify a process exit (see the module docstring's table). Pure."""
    s = exit_signal(code, sig)
    if s is not None:
        return _SIGNALS.get(s, UNKNOWN)
    return _EXIT_CODES.get(code, UNKNOWN)


# -- Slurm states ---------------------------------------------------------------------------------

_SLURM = {
    SlurmState.NODE_FAIL: INFRASTRUCTURE,
    SlurmState.BOOT_FAIL: INFRASTRUCTURE,
    SlurmState.PREEMPTED: INFRASTRUCTURE,
    SlurmState.OUT_OF_MEMORY: MEMORY,
    SlurmState.TIMEOUT: TIME,
    SlurmState.DEADLINE: TIME,
    SlurmState.CANCELLED: TRANSIENT,
    SlurmState.REQUEUED: TRANSIENT,
}


# A SIGKILL counts as a memory kill unless sacct shows the batch step stayed below this share of
# the memory it was given (then something else killed it: ``scancel -s KILL``, an admin).
MEMORY_NEAR = 0.9


def classify_slurm(
    state: SlurmState,
    exit_code: tuple[int, int] | None = None,
    *,
    max_rss: int | None = None,
    req_mem: int | None = None,
) -> Verdict:
    """Classify how Slurm says an element ended (sacct's State and ExitCode ``(code, signal)``;
    ``max_rss``: the batch step's MaxRSS, ``req_mem``: the element's ReqMem, in bytes). FAILED
    with signal 9 is a memory kill (OverMemoryKill ends so) unless both sizes are known and
    MaxRSS < ``MEMORY_NEAR`` x ReqMem: then unknown. Pure."""
    if state is SlurmState.FAILED and exit_code is not None:
        if exit_signal(*exit_code) == signal.SIGKILL and max_rss is not None and req_mem:
            return MEMORY if max_rss >= MEMORY_NEAR * req_mem else UNKNOWN
        return classify_exit(*exit_code)
    return _SLURM.get(state, UNKNOWN)


# -- whole tasks ----------------------------------------------------------------------------------

# What the lifecycle and the local runner write into a failed task's ``error``.
_SLURM_END = re.compile(r"\((\w+) in Slurm\)|ended (\w+) before running it")
_RUNNER_EXIT = re.compile(r"exited (-?\d+) before")


def _verdict_label(label: str) -> Verdict:
    category, _, kind = label.partition("/")
    return Verdict(category, kind or None) if category in CATEGORIES else UNKNOWN


def task_fact(
    error: str | None, exit_code: int | None, cause: str | None = None, slurm_state: str | None = None
) -> tuple[str, Verdict]:
    """What ended a failed task, from its record's ``error`` and ``exit_code``: a short label
    (``slurm:out_of_memory``, ``signal:SIGKILL``, ``exit:6``, ``task``) and its verdict. The
    record's ``cause`` and ``slurm_state`` (written by the lifecycle from sacct's facts) win. Pure."""
    if cause:
        return f"slurm:{slurm_state or 'unknown'}", _verdict_label(cause)
    text = error or ""
    m = _SLURM_END.search(text)
    if m:
        try:
            state = SlurmState(m.group(1) or m.group(2))
        except ValueError:
            state = SlurmState.UNKNOWN
        return f"slurm:{state.value}", classify_slurm(state)
    m = _RUNNER_EXIT.search(text)
    code = int(m.group(1)) if m else exit_code
    if code is None or code == 0:
        return "task", UNKNOWN
    s = exit_signal(code)
    if s is not None:
        try:
            name = signal.Signals(s).name
        except ValueError:
            name = str(s)
        return f"signal:{name}", classify_exit(code)
    return f"exit:{code}", classify_exit(code)


def classify_task(
    error: str | None, exit_code: int | None, cause: str | None = None, slurm_state: str | None = None
) -> Verdict:
    """Classify a task that failed as a whole (see ``task_fact``). Pure."""
    return task_fact(error, exit_code, cause, slurm_state)[1]
