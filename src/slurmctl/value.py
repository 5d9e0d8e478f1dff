"""``Value``: a frozen-dataclass equivalent without importing dataclasses.

dataclasses imports inspect, ~20 ms of the start-up of every command that imports it, and the errors
and storage contracts are imported by every command (``status`` included).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class Value:
    """Base of small immutable value classes: the fields are ``__match_args__`` (also their
    ``__slots__``), in order; equality, hash, repr and pickling go by them, as a frozen dataclass's
    would. Assigning or deleting a field raises AttributeError. Subclasses set the fields in
    ``__init__`` with ``object.__setattr__``."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__match_args__)
        return f"{type(self).__name__}({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of {type(self).__name__} (immutable)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of {type(self).__name__} (immutable)")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._fields())
