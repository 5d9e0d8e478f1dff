"""Static check: the scoreboard imports only the standard library and itself (login nodes have a bare
Python 3.6 and no pip), and nothing from the rest of slurmctl. The optional Textual backend alone may
import textual (lazily; the TUI runs without it)."""

import ast
import os
import sys

import sbhelpers

SRC = os.path.join(os.path.dirname(os.path.dirname(sbhelpers.HERE)), "src", "slurmctl", "scoreboard")
BIN = os.path.join(os.path.dirname(os.path.dirname(sbhelpers.HERE)), "bin")
OPTIONAL = {"backend_textual.py": {"textual", "rich"}}
STDLIB = set(sys.stdlib_module_names)


def _files():
    for d, _dirs, names in os.walk(SRC):
        for n in names:
            if n.endswith(".py"):
                yield os.path.join(d, n)
    for n in ("slurm-sb", "slurm-sb-tui"):
        yield os.path.join(BIN, n)


def _imports(path):
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module or ""


def test_every_scoreboard_module_imports_only_the_stdlib_and_itself():
    bad = []
    files = list(_files())
    assert len(files) > 30
    for path in files:
        allowed = OPTIONAL.get(os.path.basename(path), set())
        for lineno, name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("slurmctl.scoreboard") or top in STDLIB or top in allowed:
                continue
            bad.append(f"{os.path.relpath(path, SRC)}:{lineno}: import {name}")
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_forbidden_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("import os\nfrom slurmctl.storage import base\nimport yaml\nfrom . import x\n")
    got = [n for _l, n in _imports(str(p))]
    assert got == ["os", "slurmctl.storage", "yaml"]
