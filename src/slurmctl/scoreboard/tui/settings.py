"""Where the TUI finds its data: the scoreboard's own configuration rules, so TUI and poller agree.

``slurmctl.scoreboard.config.load`` resolves defaults < ``<root>/config/policy.json`` <
``~/.slurm_scoreboard/config.yaml`` (flat YAML subset, or ``config.json``) < ``SLURM_SB_ROOT`` /
``SLURM_SB_CLUSTER`` < flags, validating every value with its source (file:line, variable, flag).
The TUI uses ``root`` and ``cluster``; its cluster defaults to ``ALL`` (the poller's to ClusterName).
A bad ``policy.json`` is a warning on stderr here (the TUI only reads; the poller treats it as an error).
"""

import os
import sys
from typing import Dict, Optional

from .. import config
from ..errors import ScoreboardError
from .errors import UsageError


class Settings:
    """The resolved root and cluster, and where each came from (for messages)."""

    def __init__(self, root: str, root_source: str, cluster: str, cluster_source: str) -> None:
        self.root = root
        self.root_source = root_source
        self.cluster = cluster
        self.cluster_source = cluster_source


def _warn(message: str) -> None:
    print("slurm-sb-tui: warning: " + message, file=sys.stderr)


def resolve(
    root_flag: Optional[str], cluster_flag: Optional[str], environ: Optional[Dict[str, str]] = None
) -> Settings:
    """Return the Settings for these flags (None = not given), the environment and the config files.

    Raises UsageError naming the source when a value or file is bad, or when no root is given
    anywhere. Reads the config files only. Idempotent.
    """
    if cluster_flag is not None and cluster_flag.upper() == "ALL":
        cluster_flag = "ALL"
    try:
        cfg = config.load(flags={"root": root_flag, "cluster": cluster_flag}, environ=environ, warn=_warn)
    except ScoreboardError as exc:
        raise UsageError(exc.message, hint=exc.hint or "") from exc
    if not cfg["root"]:
        raise UsageError(
            "no scoreboard root given",
            hint="pass --root DIR, export SLURM_SB_ROOT=DIR, or put 'root: DIR' in "
            + config.user_config_path(),
        )
    cluster = cfg["cluster"] or "ALL"
    source = cfg.sources["cluster"] if cfg["cluster"] else "default"
    if cluster.upper() == "ALL":
        cluster = "ALL"
    return Settings(os.path.expanduser(cfg["root"]), cfg.sources["root"], cluster, source)
