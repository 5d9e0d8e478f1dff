"""Static checks of the import graph. The scoreboard imports only the standard library, itself and
``slurmctl.portable`` (login nodes have a bare Python 3.6 and no pip); ``slurmctl.portable`` imports only
the standard library and itself; the rest of slurmctl never imports the scoreboard (the dependency is
one-way). The optional Textual backend alone may import textual (lazily; the TUI runs without it)."""

import ast
import os
import sys

import sbhelpers

PKG = os.path.join(os.path.dirname(os.path.dirname(sbhelpers.HERE)), "src", "slurmctl")
SRC = os.path.join(PKG, "scoreboard")
PORTABLE = os.path.join(PKG, "portable")
BIN = os.path.join(os.path.dirname(os.path.dirname(sbhelpers.HERE)), "bin")
OPTIONAL = {"backend_textual.py": {"textual", "rich"}}
STDLIB = set(sys.stdlib_module_names)


def _py_files(top):
    for d, _dirs, names in os.walk(top):
        for n in names:
            if n.endswith(".py"):
                yield os.path.join(d, n)


def _files():
    yield from _py_files(SRC)
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
            ours = name.startswith(("slurmctl.scoreboard", "slurmctl.portable"))
            if ours or top in STDLIB or top in allowed:
                continue
            bad.append(f"{os.path.relpath(path, SRC)}:{lineno}: import {name}")
    assert not bad, "\n".join(bad)


def test_the_portable_modules_import_only_the_stdlib_and_themselves():
    files = list(_py_files(PORTABLE))
    assert files
    bad = [
        f"{os.path.relpath(path, PKG)}:{lineno}: import {name}"
        for path in files
        for lineno, name in _imports(path)
        if not (name.startswith("slurmctl.portable") or name.split(".")[0] in STDLIB)
    ]
    assert not bad, "\n".join(bad)


def test_the_rest_of_slurmctl_never_imports_the_scoreboard():
    files = [p for p in _py_files(PKG) if not p.startswith(SRC + os.sep)]
    assert len(files) > 50
    bad = [
        f"{os.path.relpath(path, PKG)}:{lineno}: import {name}"
        for path in files
        for lineno, name in _imports(path)
        if name == "slurmctl.scoreboard" or name.startswith("slurmctl.scoreboard.")
    ]
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_forbidden_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("import os\nfrom slurmctl.storage import base\nimport yaml\nfrom . import x\n")
    got = [n for _l, n in _imports(str(p))]
    assert got == ["os", "slurmctl.storage", "yaml"]
