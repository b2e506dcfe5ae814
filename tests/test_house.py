"""House rules of the code, checked by reading the source (AST, no import): fast and exact.

1. No import cycle among the modules of ``monohead``. Every import statement counts, at module
   level and inside functions alike (a function-local import only defers the cycle to the first
   call, and hides a layering knot), except imports under ``if TYPE_CHECKING:``. ``import a.b``
   and ``from a import b`` (``b`` a module) are edges to ``a.b``; ``from a import name`` is an edge
   to ``a`` (for a package, its ``__init__``).
2. No module imports another module's private name (``from .x import _name`` or ``x._name``).
   Private *modules* (``monohead._validate``, ``monohead._io``) are fine: their names without
   underscore are public to the package. Dunders (``__version__``) are not private.
3. No ``print(`` in the package outside ``cli.py`` (library code logs or calls back).
4. No machine paths (``/work/...``, ``/home/...``, ``/tmp/...``) in string literals of the package
   or the tests (docstrings aside), none excepted: the shared data folder is found through
   ``$MONOHEAD_SHARED`` or beside the repository (``monohead._env.shared_data``).

The checker is tested on a small planted package, so each rule is shown able to fail.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "python"
PACKAGE = "monohead"
PRINT_ALLOWED = {"monohead.cli"}
# Built from parts so that this file does not contain the paths it looks for.
_ROOTS = ("work", "home", "Users", "root", "tmp", "mnt", "scratch")
MACHINE_PATH = re.compile("(?<![\\w.~])/(?:" + "|".join(_ROOTS) + ")/[^\\s'\"),;:]*")
ALLOWED_PATHS: set[str] = set()  # none: a machine path is a machine path


@dataclass(frozen=True)
class Module:
    name: str
    path: Path | None  # None: a compiled module known from its stub (.pyi) only
    is_package: bool


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> ast.Module:
    """The syntax tree of a file (parsed once per test session)."""
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def find_modules(source: Path, package: str) -> dict[str, Module]:
    """Every module of ``package`` under ``source`` (``.py`` files; compiled ones by their ``.pyi``)."""
    out: dict[str, Module] = {}
    for f in sorted((source / package).rglob("*.py")):
        parts = list(f.relative_to(source).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = Module(".".join(parts), f, is_package)
    for f in sorted((source / package).rglob("*.pyi")):
        name = ".".join(f.relative_to(source).with_suffix("").parts)
        out.setdefault(name, Module(name, None, False))
    return out


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def scan(source: Path, package: str) -> tuple[list[Import], list[str]]:
    """The imports between the package's modules, and the private-name violations
    (``"module:line: text"``)."""
    modules = find_modules(source, package)
    edges: list[Import] = []
    private: list[str] = []
    for mod in modules.values():
        if mod.path is None:
            continue
        tree = parse(mod.path)
        skip = _type_checking_nodes(tree)
        aliases: dict[str, str] = {}  # local name -> module it is bound to
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                target = _resolve(mod, node)
                if target != package and not target.startswith(package + "."):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        edges.append(Import(mod.name, sub, node.lineno))
                        aliases[alias.asname or alias.name] = sub
                    else:
                        edges.append(Import(mod.name, target, node.lineno))
                        if _is_private(alias.name):
                            private.append(f"{mod.name}:{node.lineno}: from {target} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        edges.append(Import(mod.name, alias.name, node.lineno))
                        if alias.asname:
                            aliases[alias.asname] = alias.name
                        else:
                            aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)) or id(node) in skip:
                continue
            chain = []
            value = node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if not isinstance(value, ast.Name) or value.id not in aliases:
                continue
            owner = ".".join([aliases[value.id], *reversed(chain)])
            if owner in modules and owner != mod.name:
                private.append(f"{mod.name}:{node.lineno}: {owner}.{node.attr}")
    edges = [e for e in edges if e.target in modules and e.target != e.importer]
    return edges, private


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (each sorted), sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the module graph is shallow, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def describe_cycles(edges: list[Import]) -> list[str]:
    """One line per cycle: its modules and the imports inside it (``a:12 -> b``)."""
    out = []
    for comp in cycles(edges):
        inside = sorted(
            {f"{e.importer}:{e.line} -> {e.target}" for e in edges if e.importer in comp and e.target in comp}
        )
        out.append(" <-> ".join(comp) + "  [" + "; ".join(inside) + "]")
    return out


def prints(source: Path, package: str, allowed: set[str]) -> list[str]:
    """Calls of ``print`` in the package's modules outside ``allowed``."""
    out = []
    for mod in find_modules(source, package).values():
        if mod.path is None or mod.name in allowed:
            continue
        for node in ast.walk(parse(mod.path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                out.append(f"{mod.name}:{node.lineno}")
    return out


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def machine_paths(files: list[Path], root: Path) -> list[str]:
    """String literals (docstrings aside) naming a path of one machine: a path under one of
    :data:`_ROOTS`, other than the shared data folder's fallback root itself (a path *under* it
    is flagged)."""
    out = []
    for f in files:
        tree = parse(f)
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and any(m.rstrip(".") not in ALLOWED_PATHS for m in MACHINE_PATH.findall(node.value))
            ):
                out.append(f"{f.relative_to(root)}:{node.lineno}: {node.value!r}")
    return out


# --------------------------------------------------------------------------------------------
# The rules, on monohead
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monohead_scan() -> tuple[list[Import], list[str]]:
    return scan(SOURCE, PACKAGE)


def test_the_scan_sees_the_package(monohead_scan):
    edges, _ = monohead_scan
    importers = {e.importer for e in edges}
    assert {"monohead", "monohead.integration.api", "monohead.synth.generator", "monohead.model.train"} <= importers
    assert len(edges) > 100


def test_no_import_cycles(monohead_scan):
    edges, _ = monohead_scan
    found = describe_cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_private_names_across_modules(monohead_scan):
    _, private = monohead_scan
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_no_print_outside_the_cli():
    found = prints(SOURCE, PACKAGE, PRINT_ALLOWED)
    assert not found, "print outside the CLI:\n" + "\n".join(found)


def test_no_machine_paths_in_the_package_or_the_tests():
    files = sorted((SOURCE / PACKAGE).rglob("*.py")) + sorted((REPO / "tests").rglob("*.py"))
    assert len(files) > 50
    found = machine_paths(files, REPO)
    assert not found, "machine paths:\n" + "\n".join(found)


# --------------------------------------------------------------------------------------------
# The checker itself, on a planted package
# --------------------------------------------------------------------------------------------


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


PLANTED = {
    "pkg/__init__.py": "from .a import f\n",
    "pkg/_core.pyi": "def g() -> None: ...\n",
    "pkg/_util.py": "def helper():\n    return 1\n",
    "pkg/a.py": (
        "from . import _util\n"  # a private module: fine
        "from . import _core\n"  # a compiled private module known by its stub: fine
        "from .b import _hidden, shown\n"  # a private name: flagged
        "def f():\n"
        "    print('hi')\n"  # flagged
        "    return _util.helper() + shown\n"
    ),
    "pkg/b.py": (
        "from typing import TYPE_CHECKING\n"
        "import pkg.c as c\n"
        "if TYPE_CHECKING:\n"
        "    from .d import D\n"  # not an edge
        "shown = 1\n"
        "_hidden = 2\n"
        "def g():\n"
        "    from .a import f\n"  # function-local: still an edge, closing a -> b -> a
        "    return f() + c._secret\n"  # private attribute of another module: flagged
    ),
    "pkg/c.py": "_secret = 3\nPATH = '/" + "work/shared/data/x.npz'\n",
    "pkg/d.py": (
        "from pkg import __version__\n"  # an edge to the package's __init__; a dunder is not private
        "from .b import shown\n"
        "class D:\n"
        '    """Data from /' + 'home/someone/."""\n'  # a docstring: not flagged
        "ROOT = '/" + "work/shared'\n"  # a root folder alone: flagged too
        "BAD = 'see /" + "home/me/notes.txt'\n"  # flagged
    ),
}


def test_checker_finds_planted_cycles_and_private_names(tmp_path):
    _plant(tmp_path, PLANTED)
    edges, private = scan(tmp_path, "pkg")
    assert cycles(edges) == [["pkg.a", "pkg.b"]]
    assert describe_cycles(edges) == ["pkg.a <-> pkg.b  [pkg.a:3 -> pkg.b; pkg.b:8 -> pkg.a]"]
    assert private == ["pkg.a:3: from pkg.b import _hidden", "pkg.b:9: pkg.c._secret"]
    targets = {(e.importer, e.target) for e in edges}
    assert ("pkg.a", "pkg._util") in targets
    assert ("pkg.a", "pkg._core") in targets
    assert ("pkg.d", "pkg") in targets  # an edge to the package's __init__ (no cycle: nothing imports d)
    assert ("pkg.b", "pkg.d") not in targets  # under TYPE_CHECKING


def test_checker_finds_a_cycle_through_the_package_init(tmp_path):
    _plant(
        tmp_path,
        {**PLANTED, "pkg/d.py": "def v():\n    from pkg import f\n    return f\n", "pkg/a.py": "import pkg.d\nf = 1\n"},
    )
    edges, _ = scan(tmp_path, "pkg")
    assert cycles(edges) == [["pkg", "pkg.a", "pkg.d"]]


def test_checker_finds_planted_prints_and_paths(tmp_path):
    _plant(tmp_path, {**PLANTED, "pkg/cli.py": "print('allowed here')\n"})
    assert prints(tmp_path, "pkg", {"pkg.cli"}) == ["pkg.a:5"]
    assert prints(tmp_path, "pkg", set()) == ["pkg.a:5", "pkg.cli:1"]
    files = sorted((tmp_path / "pkg").glob("*.py"))
    # c.py's literal, d.py's ROOT and BAD are flagged; d.py's docstring is not.
    assert machine_paths(files, tmp_path) == [
        "pkg/c.py:2: '/" + "work/shared/data/x.npz'",
        "pkg/d.py:5: '/" + "work/shared'",
        "pkg/d.py:6: 'see /" + "home/me/notes.txt'",
    ]
