"""Classify an item failure: transient (retry may help), permanent (it will not), infrastructure
(the node or storage failed, not the item), unknown."""

from __future__ import annotations

import errno
import json
import socket
import urllib.error

from slurmctl.errors import ItemError

CATEGORIES = ("transient", "permanent", "infrastructure", "unknown")

_TRANSIENT = (TimeoutError, ConnectionError, socket.timeout)
_PERMANENT = (ValueError, KeyError, TypeError, IndexError, AttributeError, json.JSONDecodeError, UnicodeError)
_INFRA_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ESTALE}


def classify(exc: BaseException) -> str:
    """Return one of CATEGORIES for an exception raised by a handler."""
    if isinstance(exc, ItemError):
        return exc.category
    if isinstance(exc, urllib.error.HTTPError):
        return "transient" if exc.code == 429 or exc.code >= 500 else "permanent"
    if isinstance(exc, MemoryError):
        return "infrastructure"
    if isinstance(exc, OSError) and exc.errno in _INFRA_ERRNOS:
        return "infrastructure"
    if isinstance(exc, _TRANSIENT):
        return "transient"
    if isinstance(exc, urllib.error.URLError):
        return "transient"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):  # requests / httpx style errors
        return "transient" if status == 429 or status >= 500 else "permanent"
    if isinstance(exc, _PERMANENT):
        return "permanent"
    return "unknown"
