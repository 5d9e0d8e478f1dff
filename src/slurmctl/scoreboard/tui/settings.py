"""Where the TUI finds its data: flags override the environment, which overrides the config file.

The config file is ``~/.slurm_scoreboard/config.yaml`` (or ``$SLURM_SB_CONFIG``). The standard library
has no YAML parser and login nodes have no pip, so this reads the flat subset the file needs --
``key: value`` lines, ``#`` comments, quoted or bare scalars, ``[a, b]`` lists -- and JSON when the
file starts with ``{``. The TUI only uses ``root`` and ``cluster``; other keys belong to the poller
and are parsed but ignored here.
"""

import json
import os
from typing import Dict, Optional, Union

from .errors import UsageError

ConfigValue = Union[str, list]

DEFAULT_CONFIG = os.path.join("~", ".slurm_scoreboard", "config.yaml")


def config_path(environ: Optional[Dict[str, str]] = None) -> str:
    """Return the config file path: ``$SLURM_SB_CONFIG``, else ``~/.slurm_scoreboard/config.yaml``.

    Falls back to ``config.json`` next to it when only that exists. Reads only.
    """
    env = os.environ if environ is None else environ
    if env.get("SLURM_SB_CONFIG"):
        return os.path.expanduser(env["SLURM_SB_CONFIG"])
    path = os.path.expanduser(DEFAULT_CONFIG)
    alternative = path[: -len(".yaml")] + ".json"  # the poller accepts config.json too
    return alternative if not os.path.exists(path) and os.path.exists(alternative) else path


def _scalar(text: str, path: str, lineno: int) -> ConfigValue:
    """Return one YAML-ish scalar or flow list; raise UsageError (file:line) on an unclosed quote."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [str(_scalar(part, path, lineno)) for part in inner.split(",")] if inner else []
    if text[:1] in ("'", '"'):
        if len(text) < 2 or text[-1] != text[0]:
            raise UsageError(
                f"{path}:{lineno}: unclosed quote in value {text}",
                hint='close the quote, e.g. root: "/depot/scoreboard"',
            )
        return text[1:-1]
    return text


def parse_config(text: str, path: str) -> Dict[str, ConfigValue]:
    """Return the key/value pairs of a flat YAML-subset or JSON config text.

    Raises UsageError naming ``path`` and the line when a line is not ``key: value`` or JSON is
    malformed. Pure, idempotent.
    """
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(
                f"{path}: not valid JSON: {exc}",
                hint="fix the JSON, or write plain 'key: value' lines instead",
            ) from exc
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a JSON object at the top level")
        return {str(k): v if isinstance(v, list) else str(v) for k, v in data.items()}
    result = {}  # type: Dict[str, ConfigValue]
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line.strip() == "---":
            continue
        if line[:1].isspace() or line.lstrip().startswith("- "):
            raise UsageError(
                f"{path}:{lineno}: nested YAML is not supported here: {raw.strip()}",
                hint="keep the file flat: one 'key: value' per line, lists as [a, b]",
            )
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise UsageError(
                f"{path}:{lineno}: expected 'key: value', found {raw.strip()!r}",
                hint="each line is 'key: value', e.g. root: /depot/scoreboard",
            )
        result[key.strip()] = _scalar(value, path, lineno)
    return result


def load_config(path: str) -> Dict[str, ConfigValue]:
    """Return the parsed config file at ``path``, or {} when it does not exist.

    Raises UsageError when it exists but cannot be read or parsed. Idempotent (reads only).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    return parse_config(text, path)


class Settings:
    """The resolved root and cluster, and where each came from (for messages)."""

    def __init__(self, root: str, root_source: str, cluster: str, cluster_source: str) -> None:
        self.root = root
        self.root_source = root_source
        self.cluster = cluster
        self.cluster_source = cluster_source


def resolve(
    root_flag: Optional[str], cluster_flag: Optional[str], environ: Optional[Dict[str, str]] = None
) -> Settings:
    """Return the Settings from flags, then ``SLURM_SB_ROOT``/``SLURM_SB_CLUSTER``, then the config file.

    ``cluster`` defaults to ``ALL``. Raises UsageError when no root is given anywhere, or the config
    file is malformed. Reads the config file only when a flag or variable is missing. Idempotent.
    """
    env = os.environ if environ is None else environ
    cfg_file = config_path(env)
    cfg = {}  # type: Dict[str, ConfigValue]
    if not (root_flag or env.get("SLURM_SB_ROOT")) or not (cluster_flag or env.get("SLURM_SB_CLUSTER")):
        cfg = load_config(cfg_file)
    if root_flag:
        root, root_source = root_flag, "--root"
    elif env.get("SLURM_SB_ROOT"):
        root, root_source = env["SLURM_SB_ROOT"], "SLURM_SB_ROOT"
    elif isinstance(cfg.get("root"), str) and cfg["root"]:
        root, root_source = str(cfg["root"]), f"{cfg_file} (root)"
    else:
        raise UsageError(
            "no scoreboard root given",
            hint=f"pass --root DIR, export SLURM_SB_ROOT=DIR, or put 'root: DIR' in {cfg_file}",
        )
    if cluster_flag:
        cluster, cluster_source = cluster_flag, "--cluster"
    elif env.get("SLURM_SB_CLUSTER"):
        cluster, cluster_source = env["SLURM_SB_CLUSTER"], "SLURM_SB_CLUSTER"
    elif isinstance(cfg.get("cluster"), str) and cfg["cluster"]:
        cluster, cluster_source = str(cfg["cluster"]), f"{cfg_file} (cluster)"
    else:
        cluster, cluster_source = "ALL", "default"
    if cluster.upper() == "ALL":
        cluster = "ALL"
    return Settings(os.path.expanduser(root), root_source, cluster, cluster_source)
