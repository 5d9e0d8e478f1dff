"""Failure signatures: what makes two failures "the same error".

A signature is (exception type, masked message, handler frame):

* the **masked message** replaces what differs from one item to the next by a placeholder, in this
  order: quoted strings (``'<str>'``, ``"<str>"``), URLs (``<url>``), UUIDs (``<uuid>``), absolute
  and ``./``, ``../``, ``~/`` paths (``<path>``), hex numbers (``0x1f``, and runs of 8+ hex digits
  with a digit and a letter: ``<hex>``), numbers (``<n>``), and words that still hold a digit
  (``item42``: ``<id>``);
* the **handler frame** is the innermost frame of the traceback's last exception that is neither
  slurmctl's own (its worker, rate limiter, storage) nor a library's (the standard library,
  ``site-packages``, ``dist-packages``, ``<frozen ...>``): ``path:line in function``. When every
  frame is a library's (a handler installed as a package), the outermost one: the function
  slurmctl called.

Both are cached (bounded), keyed so that the cached answer is exact: a message by its text with the
digits 1-9 folded to ``1`` (no masking rule tells one non-zero digit from another; ``0`` is kept for
``0x``), a traceback by its JSON text without its last line (the exception's own line, which holds
the message; the frames are all before it; ``frame_key``), the frame being found in that key.
"""

from __future__ import annotations

import re

# (substrings one of which a text needs for the rule to apply, pattern, placeholder), applied in
# order. Every rule treats the digits 1-9 alike (see above), and starts and ends its matches at
# word boundaries. A pattern starts with a literal where it can (Python's re then skips to it): the
# quote rules look behind the opening quote only once they have found it.
_DIGITS = ("0", "1")  # the digits of a folded text
_MASKS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    (("'",), re.compile(r"'(?<![\w']')[^'\n\x00]*'(?!\w)"), "'<str>'"),
    (('"',), re.compile(r'"(?<![\w"]")[^"\n\x00]*"(?!\w)'), '"<str>"'),
    (("://",), re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\],\x00]+"), "<url>"),
    (("-",), re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"), "<uuid>"),
    (("/",), re.compile(r"(?<![\w.<>/])(?:~|\.\.?)?(?:/[\w.@%+=:-]+)+/?"), "<path>"),
    (("0x", "0X"), re.compile(r"0(?<!\w0)[xX][0-9a-fA-F]+\b"), "<hex>"),
    (_DIGITS, re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (_DIGITS, re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)*(?:[eE][-+]?\d+)?(?![\w.])"), "<n>"),
    (_DIGITS, re.compile(r"\w*\d\w*"), "<id>"),
)
_FOLD = str.maketrans("123456789", "111111111")

_FRAME = re.compile(r'^  File "([^"\n]*)", line (\d+), in ([^\n]*)$', re.M)
_OWN = re.compile(r"/slurmctl/(?:worker|ratelimit|storage|failures)/\w+\.py$")
_LIBRARY = re.compile(r"/(?:site|dist)-packages/|/lib/python\d+\.\d+/|^<")
_LAST_TRACEBACK = "Traceback (most recent call last):"

_CACHE_MAX = 100_000


def _mask(text: str) -> str:
    """Mask a text whose digits are folded (``_FOLD``)."""
    for needs, pattern, placeholder in _MASKS:
        if any(n in text for n in needs):
            text = pattern.sub(placeholder, text)
    return text


def mask_message(message: str) -> str:
    """The message with numbers, ids, paths, hex, UUIDs, URLs and quoted strings masked. Pure."""
    return _mask(message.translate(_FOLD))


def handler_frame(traceback: str) -> str:
    """``path:line in function`` of the handler's innermost frame in a formatted traceback (see the
    module docstring), or "" if it has no frame. Pure."""
    start = traceback.rfind(_LAST_TRACEBACK)
    frames = _FRAME.findall(traceback, max(start, 0))
    frames = [f for f in frames if not _OWN.search(f[0])] or frames
    if not frames:
        return ""
    for path, line, func in reversed(frames):
        if not _LIBRARY.search(path):
            return f"{path}:{line} in {func}"
    path, line, func = frames[0]
    return f"{path}:{line} in {func}"


def frame_key(traceback: bytes) -> bytes:
    """The part of a traceback its handler frame depends on, from the traceback as a JSON string
    (its bytes in an error file, quotes included): all but its last line (a formatted traceback
    ends with a newline, ``\\n`` in JSON). A ``\\n`` that is really an escaped backslash followed by
    an ``n`` may keep some of the last line in the key: never a frame less. Pure."""
    return traceback.rsplit(b"\\n", 2)[0]


class Signer:
    """Signatures for a stream of failures, with bounded caches (one per analysis)."""

    def __init__(self) -> None:
        self._messages: dict[str, str] = {}
        self._frames: dict[bytes, str] = {}

    def masks(self, messages: list[str]) -> list[str]:
        """``mask_message`` of each message, in order. The messages not seen before are masked
        together, joined by NULs into one string (no rule matches a NUL, and a NUL is a boundary to
        every rule like the ends of a string are): eight regex passes per call, not per message."""
        cache = self._messages
        joined = "\x00".join(messages)
        if joined.count("\x00") != len(messages) - 1:  # a message holds a NUL itself
            return [mask_message(m) for m in messages]
        folded = joined.translate(_FOLD).split("\x00") if messages else []
        try:  # usually every one is known: no set built
            return list(map(cache.__getitem__, folded))
        except KeyError:
            pass
        new = list(set(folded).difference(cache))
        if len(cache) + len(new) > _CACHE_MAX:
            cache.clear()
            new = list(set(folded))
        cache.update(zip(new, _mask("\x00".join(new)).split("\x00"), strict=True))
        return list(map(cache.__getitem__, folded))

    def frame(self, key: bytes) -> str:
        """``handler_frame`` of a ``frame_key``, cached."""
        cache = self._frames
        frame = cache.get(key)
        if frame is None:
            if len(cache) > _CACHE_MAX:
                cache.clear()
            frame = cache[key] = handler_frame(json_text(key + b'"') or json_text(key[:-1] + b'"') or "")
        return frame


def json_text(raw: bytes) -> str | None:
    """The string a JSON string literal (``raw``, quotes included) holds; None if it is not one. Pure."""
    import msgspec

    try:
        text = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return text if isinstance(text, str) else None
