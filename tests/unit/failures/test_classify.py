"""The classification table of slurmctl.failures.classify (also docs/errors.md), row by row. The HTTP
client exceptions are look-alikes with the same shape (class names, attributes) as the real ones:
the classifier is duck-typed and must not import those libraries."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import urllib.error

import pytest

from slurmctl.errors import (
    ConfigError,
    HandlerError,
    InputError,
    ItemError,
    PermanentItemError,
    SchedulerError,
    StateError,
    StorageError,
    TransientItemError,
)
from slurmctl.failures.classify import (
    CATEGORIES,
    INFRASTRUCTURE,
    MEMORY,
    PERMANENT,
    TIME,
    TRANSIENT,
    UNKNOWN,
    Verdict,
    classify_exception,
    classify_exit,
    classify_slurm,
    classify_task,
    task_fact,
    verdict_of,
)
from slurmctl.ratelimit.errors import RateLimitTimeout, Throttled
from slurmctl.slurm.states import JobState as S

# -- look-alikes of the HTTP / AWS clients' exceptions ---------------------------------------------


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class RequestException(OSError):  # requests: IOError subclass, errno None
    def __init__(self, msg: str = "", response: _Response | None = None) -> None:
        super().__init__(msg)
        self.response = response


class HTTPError(RequestException):  # requests.exceptions.HTTPError
    pass


class HTTPStatusError(Exception):  # httpx
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.response = _Response(status)


class ClientError(Exception):  # botocore.exceptions.ClientError
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


class ClientResponseError(Exception):  # aiohttp
    def __init__(self, status: int) -> None:
        super().__init__(f"{status}")
        self.status = status


class ReqConnectionError(RequestException):  # requests.exceptions.ConnectionError
    pass


ReqConnectionError.__name__ = "ConnectionError"


class ReadTimeout(RequestException):  # requests.exceptions.ReadTimeout
    pass


class TimeoutException(Exception):  # httpx.TimeoutException
    pass


class EndpointConnectionError(Exception):  # botocore
    pass


class WithCode(Exception):  # a `.code` on a class that is no HTTP error is not a status
    code = 404


def urllib_http(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://x", code, "msg", {}, None)  # type: ignore[arg-type]


def os_error(code: int) -> OSError:
    return OSError(code, "x")


def json_error() -> json.JSONDecodeError:
    try:
        json.loads("{")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError


EXCEPTIONS = [
    # 2. the handler says
    (TransientItemError("later"), TRANSIENT),
    (PermanentItemError("bad"), PERMANENT),
    (ItemError("?"), UNKNOWN),
    (Throttled(retry_after_s=2.0), TRANSIENT),
    # 3. HTTP status, duck-typed
    (urllib_http(429), TRANSIENT),
    (urllib_http(503), TRANSIENT),
    (urllib_http(500), TRANSIENT),
    (urllib_http(404), PERMANENT),
    (urllib_http(400), PERMANENT),
    (HTTPError("x", response=_Response(502)), TRANSIENT),
    (HTTPError("x", response=_Response(403)), PERMANENT),
    (HTTPStatusError(429), TRANSIENT),
    (HTTPStatusError(422), PERMANENT),
    (ClientError(503, "ServiceUnavailable"), TRANSIENT),
    (ClientError(404, "NoSuchKey"), PERMANENT),
    (ClientError(400, "ThrottlingException"), TRANSIENT),
    (ClientError(503, "SlowDown"), TRANSIENT),
    (ClientResponseError(504), TRANSIENT),
    (ClientResponseError(401), PERMANENT),
    (WithCode("not http"), UNKNOWN),
    # 4. OS errors by errno
    (os_error(errno.ENOSPC), INFRASTRUCTURE),
    (os_error(errno.EDQUOT), INFRASTRUCTURE),
    (os_error(errno.EROFS), INFRASTRUCTURE),
    (os_error(errno.EIO), INFRASTRUCTURE),
    (os_error(errno.ESTALE), INFRASTRUCTURE),
    (os_error(errno.ECONNRESET), TRANSIENT),
    (ConnectionResetError(errno.ECONNRESET, "reset"), TRANSIENT),
    (os_error(errno.ECONNREFUSED), TRANSIENT),
    (os_error(errno.ECONNABORTED), TRANSIENT),
    (os_error(errno.ETIMEDOUT), TRANSIENT),
    (os_error(errno.EHOSTUNREACH), TRANSIENT),
    (os_error(errno.ENETUNREACH), TRANSIENT),
    (os_error(errno.ENETDOWN), TRANSIENT),
    (os_error(errno.EPIPE), TRANSIENT),
    (os_error(errno.EAGAIN), TRANSIENT),
    (FileNotFoundError(errno.ENOENT, "no such file"), PERMANENT),
    (PermissionError(errno.EACCES, "denied"), PERMANENT),
    (os_error(errno.EPERM), PERMANENT),
    (os_error(errno.EISDIR), PERMANENT),
    (os_error(errno.ENOTDIR), PERMANENT),
    (os_error(errno.ENAMETOOLONG), PERMANENT),
    (os_error(errno.EBADF), UNKNOWN),
    # 5. memory
    (MemoryError(), MEMORY),
    # 6. timeouts and lost connections by class name
    (TimeoutError(), TRANSIENT),
    (ConnectionError(), TRANSIENT),
    (ReqConnectionError("refused"), TRANSIENT),
    (ReadTimeout("slow"), TRANSIENT),
    (TimeoutException("slow"), TRANSIENT),
    (EndpointConnectionError("no endpoint"), TRANSIENT),
    (urllib.error.URLError("name resolution"), TRANSIENT),
    # 7. slurmctl errors by their exit code
    (StorageError("disk"), INFRASTRUCTURE),
    (SchedulerError("sbatch"), INFRASTRUCTURE),
    (HandlerError("shape"), PERMANENT),
    (ConfigError("cfg"), PERMANENT),
    (InputError("input"), PERMANENT),
    (StateError("state"), PERMANENT),
    (RateLimitTimeout("gave up"), TRANSIENT),
    # 8. programming and data errors
    (ValueError("bad"), PERMANENT),
    (json_error(), PERMANENT),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), PERMANENT),
    (KeyError("k"), PERMANENT),
    (IndexError("i"), PERMANENT),
    (TypeError("t"), PERMANENT),
    (AttributeError("a"), PERMANENT),
    (ZeroDivisionError("z"), PERMANENT),
    (AssertionError("a"), PERMANENT),
    (NotImplementedError("n"), PERMANENT),
    (RecursionError("r"), PERMANENT),
    # 9. anything else
    (RuntimeError("?"), UNKNOWN),
    (Exception("?"), UNKNOWN),
]


@pytest.mark.parametrize(
    ("exc", "want"), EXCEPTIONS, ids=lambda x: type(x).__name__ if isinstance(x, BaseException) else x.label
)
def test_exception_rows(exc: BaseException, want: Verdict) -> None:
    assert classify_exception(exc) == want


def test_no_http_client_is_imported() -> None:
    # In a fresh interpreter: other tests of the suite import botocore in this one.
    code = (
        "import sys\n"
        "from slurmctl.failures.classify import classify_exception\n"
        "for e in (TimeoutError(), ConnectionResetError(), ValueError('x'), KeyError('k')):\n"
        "    classify_exception(e)\n"
        "print(sorted({'requests', 'httpx', 'botocore', 'aiohttp', 'urllib3'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_job_classify_function_comes_first_and_falls_back_to_the_table() -> None:
    def custom(exc: BaseException) -> object:
        if isinstance(exc, KeyError):
            return "transient"
        if isinstance(exc, ZeroDivisionError):
            return "resources"
        if isinstance(exc, TypeError):
            raise RuntimeError("the classifier itself is broken")
        if isinstance(exc, IndexError):
            return "nonsense"
        return None

    assert classify_exception(KeyError("k"), custom) == TRANSIENT  # overrides the table
    assert classify_exception(PermanentItemError("p"), custom) == PERMANENT  # None: the table
    assert classify_exception(ZeroDivisionError(), custom) == MEMORY  # an item's resources: memory
    assert classify_exception(TypeError(), custom) == PERMANENT  # raised: the table
    assert classify_exception(IndexError(), custom) == PERMANENT  # not a category: the table


EXITS = [
    ((0,), UNKNOWN),
    ((1,), UNKNOWN),
    ((2,), PERMANENT),
    ((3,), PERMANENT),
    ((4,), PERMANENT),
    ((5,), PERMANENT),
    ((8,), PERMANENT),
    ((6,), INFRASTRUCTURE),
    ((7,), INFRASTRUCTURE),
    ((10,), TRANSIENT),
    ((11,), TRANSIENT),
    ((75,), TRANSIENT),
    ((130,), TRANSIENT),  # 128 + SIGINT, our Ctrl-C
    ((70,), UNKNOWN),
    ((-9,), MEMORY),  # subprocess: killed by SIGKILL
    ((137,), MEMORY),  # a shell: 128 + 9
    ((0, 9), MEMORY),  # sacct ExitCode 0:9
    ((-int(signal.SIGXCPU),), TIME),
    ((-15,), TRANSIENT),
    ((143,), TRANSIENT),
    ((-int(signal.SIGHUP),), TRANSIENT),
    ((-int(signal.SIGUSR1),), TRANSIENT),
    ((-int(signal.SIGUSR2),), TRANSIENT),
    ((-11,), PERMANENT),
    ((139,), PERMANENT),
    ((-int(signal.SIGABRT),), PERMANENT),
    ((-int(signal.SIGILL),), PERMANENT),
    ((-int(signal.SIGFPE),), PERMANENT),
    ((-int(signal.SIGBUS),), INFRASTRUCTURE),
    ((-int(signal.SIGPIPE),), UNKNOWN),
]


@pytest.mark.parametrize(("args", "want"), EXITS, ids=str)
def test_exit_rows(args: tuple[int, ...], want: Verdict) -> None:
    assert classify_exit(*args) == want


SLURM = [
    ((S.NODE_FAIL,), INFRASTRUCTURE),
    ((S.BOOT_FAIL,), INFRASTRUCTURE),
    ((S.PREEMPTED,), INFRASTRUCTURE),
    ((S.OUT_OF_MEMORY,), MEMORY),
    ((S.TIMEOUT,), TIME),
    ((S.DEADLINE,), TIME),
    ((S.FAILED, (0, 9)), MEMORY),  # OverMemoryKill
    ((S.FAILED, (6, 0)), INFRASTRUCTURE),  # the worker's storage exit code
    ((S.FAILED, (1, 0)), UNKNOWN),
    ((S.FAILED,), UNKNOWN),
    ((S.CANCELLED,), TRANSIENT),
    ((S.REQUEUED,), TRANSIENT),
    ((S.COMPLETED,), UNKNOWN),
    ((S.UNKNOWN,), UNKNOWN),
]


@pytest.mark.parametrize(("args", "want"), SLURM, ids=str)
def test_slurm_rows(args: tuple, want: Verdict) -> None:
    assert classify_slurm(*args) == want


# What the lifecycle and the local runner write into a failed task record (lifecycle.py,
# executors/local.py), and the worker's own exit codes.
TASKS = [
    (("worker n1:12:slurm77 ended (out_of_memory in Slurm)", None), "slurm:out_of_memory", MEMORY),
    (("worker n1:12 ended (timeout in Slurm)", None), "slurm:timeout", TIME),
    (("worker n1:12 ended (node_fail in Slurm)", None), "slurm:node_fail", INFRASTRUCTURE),
    (("Slurm array 881 ended boot_fail before running it", None), "slurm:boot_fail", INFRASTRUCTURE),
    (("worker pid 4242 exited -9 before finishing", None), "signal:SIGKILL", MEMORY),
    (("worker pid 4242 exited 6 before claiming the task", 6), "exit:6", INFRASTRUCTURE),
    (("handler module 'x' not found", 4), "exit:4", PERMANENT),
    (("ValueError: oops", 1), "exit:1", UNKNOWN),
    (("worker n1:12 ended without a word", None), "task", UNKNOWN),
    ((None, None), "task", UNKNOWN),
]


@pytest.mark.parametrize(("args", "label", "want"), TASKS, ids=lambda x: str(x)[:40])
def test_task_rows(args: tuple, label: str, want: Verdict) -> None:
    assert task_fact(*args) == (label, want)
    assert classify_task(*args) == want


def test_every_category_has_a_verdict_with_an_action() -> None:
    assert set(CATEGORIES) == {"transient", "permanent", "infrastructure", "resources", "unknown"}
    for category in CATEGORIES:
        assert verdict_of(category).action
    assert verdict_of("resources") == MEMORY and verdict_of("no such") == UNKNOWN
    assert TIME.action != MEMORY.action and "time" in TIME.action and "memory" in MEMORY.action
