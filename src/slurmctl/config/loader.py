"""Load a job file (YAML or JSON): ``extends:`` merging, validation, errors with file:line:field.

Paths in the file are relative to the file that names them and are made absolute here, so a
worker on another node (with the same shared filesystem) sees the same files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from slurmctl.config.models import JobConfig
from slurmctl.errors import ConfigError, ConfigValidationError, FieldProblem

Loc = tuple[str | int, ...]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lines(node: yaml.Node, path: Loc, out: dict[Loc, int]) -> None:
    """Record the 1-based line of every key path in a composed YAML tree."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = (*path, str(key_node.value))
            out[sub] = key_node.start_mark.line + 1
            _lines(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def _read(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such job file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML/JSON: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
    if data is None:
        raise ConfigError(f"{path}: the job file is empty", hint="`slurmctl schema` shows the fields")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the job file must be a mapping of fields, found {type(data).__name__}")
    lines: dict[Loc, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return data, lines


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; anything else (lists included) in ``over`` replaces ``base``."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _absolutize(data: dict[str, Any], base_dir: Path) -> None:
    """Make every path field absolute relative to ``base_dir`` (the file that set it)."""

    def fix(p: Any) -> Any:
        if isinstance(p, str) and p and not p.startswith(("/", "~", "s3://")):
            return str(base_dir / p)
        if isinstance(p, str) and p.startswith("~"):
            return os.path.expanduser(p)
        return p

    inp = data.get("input")
    if isinstance(inp, dict) and "path" in inp:
        inp["path"] = [fix(p) for p in inp["path"]] if isinstance(inp["path"], list) else fix(inp["path"])
    h = data.get("handler")
    if isinstance(h, dict) and isinstance(h.get("python_path"), list):
        h["python_path"] = [fix(p) for p in h["python_path"]]
    elif isinstance(h, dict) and "python_path" not in h:
        h["python_path"] = [str(base_dir)]
    for section, field in (("output", "path"), ("backend", "root"), ("executor", "sbatch_template")):
        sec = data.get(section)
        if isinstance(sec, dict) and sec.get(field):
            sec[field] = fix(sec[field])


def _load_raw(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], dict[Loc, tuple[Path, int]]]:
    path = path.absolute()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"{path}: extends cycle: {chain}")
    data, lines = _read(path)
    _absolutize(data, path.parent)
    where = {loc: (path, line) for loc, line in lines.items()}
    parent = data.pop("extends", None)
    if parent is None:
        return data, where
    if not isinstance(parent, str):
        raise ConfigError(f"{path}:{lines.get(('extends',), 1)}: extends: expected a file path")
    base_path = (path.parent / parent) if not os.path.isabs(parent) else Path(parent)
    base, base_where = _load_raw(base_path, (*seen, path))
    return _merge(base, data), {**base_where, **where}


def load_config(path: str | os.PathLike[str]) -> JobConfig:
    """Load and validate a job file. Raises ConfigError / ConfigValidationError (never a traceback)."""
    p = Path(path)
    data, where = _load_raw(p, ())
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc: Loc = tuple(err["loc"])
            cross = _CROSS_FIELD.match(err["msg"]) if not loc else None
            if cross:  # a check across fields names the field it blames: "Value error, input.staging: ..."
                loc = tuple(cross.group(1).split("."))
                err = dict(err, msg=cross.group(2), input=_get_path(data, loc))
            # pydantic appends the union member tried (e.g. 'str') to the loc; walk back to a known path.
            known = loc
            while known and known not in where:
                known = known[:-1]
            file, line = where.get(known, (p.absolute(), None))
            field = ".".join(str(x) for x in loc if not (isinstance(x, str) and x in _UNION_TAGS))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; `slurmctl schema` lists the fields)"
            found = None if err["type"] in ("missing",) else _short(err.get("input"))
            problems.append(FieldProblem(field, msg, found, line, str(file)))
        raise ConfigValidationError(str(p), problems) from None


_CROSS_FIELD = re.compile(r"^Value error, ([a-z_]+(?:\.[a-z_]+)+): (.*)$", re.S)


def _get_path(data: Any, loc: Loc) -> Any:
    """Returns the value at ``loc`` in the raw config, or None."""
    for key in loc:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


_UNION_TAGS = {"str", "list[str]", "int", "float", "literal['jsonl','csv','parquet']"}


def config_json_schema() -> str:
    return json.dumps(JobConfig.model_json_schema(), indent=2)
