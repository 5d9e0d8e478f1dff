"""Every library the package declares (dependencies and the user-facing extras) is imported
somewhere in src/: a declared but unused one costs every install for nothing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
IMPORT_NAME = {"pyyaml": "yaml"}  # distribution name -> module name, where they differ


def test_every_declared_library_is_imported():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = list(project["dependencies"])
    for name, reqs in extras.items():
        if name not in ("dev", "all"):
            declared += reqs
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    unused = []
    for req in declared:
        dist = re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower()
        module = IMPORT_NAME.get(dist, dist.replace("-", "_"))
        if not re.search(rf"^\s*(import|from) {module}\b", source, re.M):
            unused.append(dist)
    assert unused == []
