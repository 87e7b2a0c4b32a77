"""The package's layout holds: no import cycles, and subpackages load on first use."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import iotlib

PACKAGE = Path(iotlib.__file__).parent
# The emulator's own modules still import each other in a ring (being untangled on its own branch);
# drop this once that lands. Cycles that cross from it into other subpackages are checked regardless.
WITHIN_EXEMPT = "iotlib.local.emulator"


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the iotlib modules it imports (type-only imports too: they are dependencies as well).

    ``from pkg import name`` depends on ``pkg.name`` when that is a module, else on ``pkg``.
    """
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def subpackage(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or module in PACKAGES else "iotlib"


PACKAGES = {name for name, path in module_names().items() if path.name == "__init__.py"}


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "iotlib.hub.consumer" in graph["iotlib.capture.aio"]
    assert "iotlib.capture.format" in graph["iotlib.coldstore.reader"]  # ``from iotlib.capture import format``


def test_no_import_cycle_crosses_subpackages() -> None:
    crossing = [c for c in cycles(import_graph()) if len({subpackage(m) for m in c}) > 1]
    assert crossing == []


def test_no_import_cycle_within_a_subpackage() -> None:
    within = [c for c in cycles(import_graph()) if not all(m.startswith(WITHIN_EXEMPT) for m in c)]
    assert within == []


def test_subpackages_load_on_first_use() -> None:
    """``import iotlib`` is cheap; ``iotlib.fleet.simulate`` is imported when first touched."""
    code = (
        "import sys, iotlib\n"
        "assert 'iotlib.fleet' not in sys.modules and 'polars' not in sys.modules\n"
        "reg = iotlib.fleet.scenario.original_registry().head(3)\n"
        "frame = iotlib.fleet.simulate.generate(reg, start=iotlib.fleet.simulate.DEFAULT_START, duration='2m', seed=1)\n"
        "print(frame.height, iotlib.hub.positions.__module__, iotlib.coldstore.load.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    height, readback, loader = done.stdout.split()
    assert int(height) > 0 and readback == "iotlib.hub.readback" and loader == "iotlib.coldstore.loader"
