"""Column schemas of results and the rules that unify them.

A schema is an ordered mapping ``column -> ColumnStats`` built from the rows themselves (task
results are JSON lines): the column's type, the task that first gave it that type, how many rows
hold a value and the smallest and largest value. Types: ``null`` (no value seen yet), ``bool``,
``int``, ``float``, ``string`` and ``json`` (an object or a list, stored as JSON text).

Evolution rules, applied wherever two schemas meet (rows of one task, tasks of a merge node, nodes
of the level above):

* a column that one side lacks is added, null in the other side's rows;
* ``null`` takes the other side's type;
* ``int`` and ``float`` give ``float`` (ints are promoted);
* any other pair of different types is an error naming the column, both types and the tasks that
  gave them (``SchemaError``, exit 8).
"""

from __future__ import annotations

from typing import Any

import msgspec

from slurmctl.errors import ResultsError

ORDERED = ("bool", "int", "float", "string")  # types with a min and a max


class SchemaError(ResultsError):
    """Two results give a column types no rule unifies."""


class ColumnStats(msgspec.Struct, array_like=True):
    type: str
    task: str  # the first task whose rows gave the column this type
    values: int = 0  # rows holding a non-null value
    min: Any = None
    max: Any = None


Schema = dict[str, ColumnStats]


def type_of(v: Any) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "json"


def unify_type(column: str, a: ColumnStats, b_type: str, b_task: str) -> str:
    """The type of ``column`` when ``a`` meets values of ``b_type`` from ``b_task``."""
    if a.type == b_type or b_type == "null":
        return a.type
    if a.type == "null":
        return b_type
    if {a.type, b_type} == {"int", "float"}:
        return "float"
    where = f"task {a.task}" if a.task == b_task else f"tasks {a.task} and {b_task}"
    first, second = (a.type, b_type) if a.task <= b_task else (b_type, a.type)
    raise SchemaError(
        f"column {column!r} has incompatible types in {where}: {first} and {second}",
        hint="a new nullable column and int -> float are the only changes results may make "
        "(docs/aggregation.md, schema evolution); fix the handler and re-run those tasks",
    )


class Observer:
    """Builds the schema of one task's rows, row by row."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.schema: Schema = {}

    def row(self, row: dict[str, Any]) -> None:
        schema = self.schema
        for k, v in row.items():
            t = type_of(v)
            c = schema.get(k)
            if c is None:
                c = schema[k] = ColumnStats(t, self.task)
            elif c.type != t and t != "null":
                c.type = unify_type(k, c, t, self.task)
            if t == "null":
                continue
            c.values += 1
            if t in ORDERED:
                if c.min is None or v < c.min:
                    c.min = v
                if c.max is None or v > c.max:
                    c.max = v


def merge(schemas: list[Schema]) -> Schema:
    """The union of ``schemas`` (in order: columns keep their first position), with stats added
    up. Raises SchemaError for a conflict."""
    out: Schema = {}
    for s in schemas:
        for k, c in s.items():
            o = out.get(k)
            if o is None:
                out[k] = ColumnStats(c.type, c.task, c.values, c.min, c.max)
                continue
            t = unify_type(k, o, c.type, c.task)
            if t != o.type:
                if o.type == "null":
                    o.task = c.task
                o.type = t
            o.values += c.values
            if c.min is not None and (o.min is None or c.min < o.min):
                o.min = c.min
            if c.max is not None and (o.max is None or c.max > o.max):
                o.max = c.max
    if "_item_id" in out:  # the item id first, the other columns in the order they appeared
        out = {"_item_id": out["_item_id"], **{k: v for k, v in out.items() if k != "_item_id"}}
    return out


def to_json(schema: Schema, rows: int) -> list[dict[str, Any]]:
    """The schema as a node manifest holds it: one entry per column with its null count."""
    return [
        {"name": k, "type": c.type, "task": c.task, "nulls": rows - c.values, "min": c.min, "max": c.max}
        for k, c in schema.items()
    ]


def from_json(columns: list[dict[str, Any]], rows: int) -> Schema:
    return {
        c["name"]: ColumnStats(c["type"], c["task"], rows - c["nulls"], c["min"], c["max"]) for c in columns
    }
