"""Failure signatures: message masking rule by rule, the handler frame of a traceback, and the
batched, cached Signer agreeing with the plain functions."""

from __future__ import annotations

import json

import pytest

from slurmctl.failures import signature
from slurmctl.failures.signature import Signer, frame_key, handler_frame, mask_message

MASKS = [
    # numbers
    ("bad record 123", "bad record <n>"),
    ("took 3.25 s, limit -7, 1e10", "took <n> s, limit <n>, <n>"),
    ("version 10.0.5.3", "version <n>"),
    ("doc-00123", "doc-<n>"),
    ("HTTP Error 503: Service Unavailable", "HTTP Error <n>: Service Unavailable"),
    # ids: words that hold a digit
    ("item42 failed on node7b", "<id> failed on <id>"),
    # hex
    ("object at 0x7f3a2b1c", "object at <hex>"),
    ("sha 3f786850e387550fdab836ed7e6dc881de23001b", "sha <hex>"),
    ("deadbeef stays a word", "deadbeef stays a word"),
    # UUIDs
    ("run 123e4567-e89b-12d3-a456-426614174000 lost", "run <uuid> lost"),
    # paths
    ("cannot open /data/shard-3/doc.json", "cannot open <path>"),
    ("see ./rel/x, ../up/y and ~/home/z", "see <path>, <path> and <path>"),
    ("ratio 1/2", "ratio <n>/<n>"),
    # URLs
    ("GET https://api.example.com/v1/items/5?x=1 failed", "GET <url> failed"),
    # quoted strings
    ("KeyError 'price'", "KeyError '<str>'"),
    ('no entry "a b" here', 'no entry "<str>" here'),
    ("can't parse 'x'", "can't parse '<str>'"),
    ("'a' and 'b'", "'<str>' and '<str>'"),
    # nothing to mask
    ("division by zero", "division by zero"),
    ("", ""),
]


@pytest.mark.parametrize(("message", "masked"), MASKS)
def test_mask_rows(message: str, masked: str) -> None:
    assert mask_message(message) == masked


def test_masking_ignores_which_non_zero_digit_it_sees() -> None:
    """The cache keys on digits 1-9 folded: that is exact only if no rule tells them apart."""
    for message, _ in MASKS:
        for d in "23456789":
            assert mask_message(message.translate(str.maketrans("123456789", d * 9))) == mask_message(message)


def test_signer_masks_agree_with_mask_message_in_batches_and_with_nuls() -> None:
    signer = Signer()
    messages = [m for m, _ in MASKS] * 3 + ["x 1", "y 2"]
    assert signer.masks(messages) == [mask_message(m) for m in messages]
    assert signer.masks(["a\x00 1", "b 2"]) == [mask_message("a\x00 1"), "b <n>"]  # a NUL in a message
    assert signer.masks([]) == []


def test_signer_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(signature, "_CACHE_MAX", 10)
    signer = Signer()
    for i in range(5):
        messages = [f"m{i}{j} {'x' * j}" for j in range(8)]
        assert signer.masks(messages) == [mask_message(m) for m in messages]
        assert len(signer._messages) <= 10 + 8


TB = """Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/slurmctl/worker/runtime.py", line 540, in handle_chunk
    result = call(decode(line), ctx)
             ^^^^^^^^^^^^^^^^^^^^^^^
  File "/home/u/job/handler.py", line 12, in handle
    return parse(record["text"])
           ^^^^^^^^^^^^^^^^^^^^^
  File "/home/u/job/helpers.py", line 3, in parse
    return json.loads(text)
  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
  File "/opt/venv/lib/python3.11/site-packages/requests/models.py", line 971, in json
    raise RequestsJSONDecodeError(e.msg, e.doc, e.pos)
ValueError: Expecting value: line 1 column 1 (char 0)
"""


def test_handler_frame_is_the_innermost_frame_outside_slurmctl_and_libraries() -> None:
    assert handler_frame(TB) == "/home/u/job/helpers.py:3 in parse"


def test_handler_frame_of_an_installed_handler_is_the_function_slurmctl_called() -> None:
    tb = TB.replace("/home/u/job/", "/opt/venv/lib/python3.11/site-packages/mypkg/")
    assert handler_frame(tb) == "/opt/venv/lib/python3.11/site-packages/mypkg/handler.py:12 in handle"


def test_handler_frame_uses_the_last_exception_of_a_chain_and_none_without_frames() -> None:
    chained = (
        TB + "\nDuring handling of the above exception, another exception occurred:\n\n"
        'Traceback (most recent call last):\n  File "/home/u/job/handler.py", line 20, in handle\n'
        '    raise PermanentItemError("bad")\nslurmctl.errors.PermanentItemError: bad\n'
    )
    assert handler_frame(chained) == "/home/u/job/handler.py:20 in handle"
    assert handler_frame("MemoryError\n") == ""
    assert handler_frame("") == ""


def as_json(text: str) -> bytes:
    return json.dumps(text).encode()


def test_frame_key_drops_only_the_exception_line() -> None:
    key = frame_key(as_json(TB))
    assert as_json(TB).startswith(key) and b"ValueError" not in key
    assert Signer().frame(key) == handler_frame(TB)
    assert frame_key(as_json(TB.replace("(char 0)", "(char 99)"))) == key


def test_frame_key_with_escaped_backslashes_keeps_every_frame() -> None:
    for tb in (TB.replace("(char 0)", "C:\\new"), TB.replace("(char 0)", "a\\nb\\n"), "MemoryError\n"):
        key = frame_key(as_json(tb))
        assert as_json(tb).startswith(key)
        assert Signer().frame(key) == handler_frame(tb)
