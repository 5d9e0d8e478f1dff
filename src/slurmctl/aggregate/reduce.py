"""User reductions: ``aggregate.reduce: {function: module:combine, key: [columns]}``.

``combine(a, b)`` receives two rows with the same key and returns one row (a dict with the same
key); it must be associative, because every merge node applies it to what it reads — task rows at
level 0, the reduced rows of the level below above it — so the output holds one row per key (word
counts, histograms, top-k lists). Rows lose ``_item_id`` (a reduced row stands for many items);
keys keep the order in which they first appear. A node holds one row per distinct key in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from slurmctl.errors import HandlerError

Row = dict[str, Any]


def load_combine(spec: str, python_path: list[str]) -> Callable[[Row, Row], Row]:
    from slurmctl.worker.handler import load_handler

    return load_handler(spec, python_path).function


def reduce_rows(rows: Iterable[Row], key: list[str], combine: Callable[[Row, Row], Row]) -> list[Row]:
    acc: dict[tuple[Any, ...], Row] = {}
    for r in rows:
        try:
            k = tuple(r[c] for c in key)
            prev = acc.get(k)
        except KeyError as exc:
            raise HandlerError(f"reduce: a row has no key column {exc.args[0]!r}: {str(r)[:200]}") from None
        except TypeError:
            raise HandlerError(
                f"reduce: key {key} of a row is not hashable (an object or a list): {str(r)[:200]}"
            ) from None
        if prev is None:
            acc[k] = r
            continue
        try:
            out = combine(prev, r)
        except Exception as exc:
            raise HandlerError(f"reduce: combine raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(out, dict) or any(out.get(c) != v for c, v in zip(key, k, strict=True)):
            raise HandlerError(
                "reduce: combine must return a row (a dict) with the key of its inputs "
                f"{dict(zip(key, k, strict=True))}; it returned {str(out)[:200]}"
            )
        acc[k] = out
    return list(acc.values())
