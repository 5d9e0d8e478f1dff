"""The handler contract.

A job names one function, ``module:function``, found on ``handler.python_path``. Three shapes:

* **per item** (``mode: item``, the default): ``def handle(record, ctx)`` returns one row (a dict),
  several rows (a list of dicts), or None (the item is done and yields no row).
* **generator per item**: ``def handle(record, ctx)`` that ``yield``s rows — several rows per item.
* **per batch** (``mode: batch``): ``def handle(records, ctx)`` receives the list of the task's
  pending records and returns a list of the same length, one result (row / rows / None) per
  record. An exception fails every item of that call.

``ctx`` may be omitted from the signature (``def handle(record)``). A row that is not a dict is
stored as ``{"value": row}``. Every stored row also gets ``_item_id``, the item's global id.

Exceptions are recorded per item with a category (the table is in :mod:`slurmctl.failures.classify`);
raise ``slurmctl.errors.TransientItemError`` / ``PermanentItemError`` to say which explicitly, or name
a ``handler.classify`` function (``classify(exc)`` returns a category, or None to let the table
decide).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from slurmctl.errors import HandlerError


@dataclass(frozen=True)
class LoadedHandler:
    function: Callable[..., Any]
    mode: str  # "item" | "batch"
    wants_ctx: bool
    is_generator: bool
    spec: str


def load_handler(spec: str, python_path: list[str], mode: str = "item") -> LoadedHandler:
    """Import ``module:function``. Raises HandlerError with what to fix."""
    module_name, _, func_name = spec.partition(":")
    for p in reversed(python_path):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise HandlerError(
                f"handler module {module_name!r} not found (handler.function = {spec!r})",
                hint=f"searched handler.python_path {python_path} and sys.path; "
                "check the module name or add its directory to handler.python_path",
            ) from exc
        raise HandlerError(
            f"handler module {module_name!r} failed to import: missing module {exc.name!r}",
            hint="install it in the environment the workers use",
        ) from exc
    except Exception as exc:
        tb = traceback.format_exc(limit=-3)
        raise HandlerError(f"handler module {module_name!r} raised while importing:\n{tb}") from exc
    function = getattr(module, func_name, None)
    if function is None:
        raise HandlerError(
            f"module {module_name!r} has no function {func_name!r}",
            hint=f"defined there: {', '.join(n for n in dir(module) if not n.startswith('_'))[:200]}",
        )
    if not callable(function):
        raise HandlerError(f"{spec} is not callable ({type(function).__name__})")
    try:
        params = [
            p
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        wants_ctx = len(params) >= 2
        if not params:
            raise HandlerError(f"{spec} takes no arguments; expected handle(record, ctx) or handle(record)")
    except (TypeError, ValueError):
        wants_ctx = True
    return LoadedHandler(function, mode, wants_ctx, inspect.isgeneratorfunction(function), spec)


def rows_of(result: Any) -> list[dict[str, Any]]:
    """Normalise what a handler returned for one item into a list of row dicts."""
    if result is None:
        return []
    if isinstance(result, dict):
        return [result]
    if (
        isinstance(result, (list, tuple))
        or inspect.isgenerator(result)
        or (isinstance(result, Iterable) and not (isinstance(result, (str, bytes))))
    ):
        return [r if isinstance(r, dict) else {"value": r} for r in result]
    return [{"value": result}]
