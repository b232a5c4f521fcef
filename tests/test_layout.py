"""The package's layout: imports flow one way (no circle between modules, none between stage folders), no module
grows past the size guide, and ``cardgen --help`` stays free of heavy imports.

Imports are read from the source (module level and inside functions alike), so a lazy import that closes a circle
counts as one: it still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cardgen"
MAX_MODULE_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """cardgen module -> the cardgen modules it imports (``from cardgen.x import y`` counts ``cardgen.x.y`` when
    that is a module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            for target in targets:
                if target in modules and target != name and target != "cardgen":
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def folder(module: str) -> str:
    """The room a module stands in: its stage folder (cardgen.card, cardgen.bench, ...) or itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_circle_between_stage_folders() -> None:
    # Folder A importing folder B while B imports A would be an arrow running back up a floor.
    folders: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        folders.setdefault(folder(module), set()).update(folder(t) for t in targets if folder(t) != folder(module))
    cycle = find_cycle(folders)
    assert cycle is None, "stage folders import each other: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines; split it by what changes together"


def test_presentation_never_imports_computation() -> None:
    # card/ renders records; it must not reach into the comparison's or the benchmark's internals.
    for module, targets in import_graph().items():
        if module.startswith("cardgen.card"):
            bad = sorted(t for t in targets if t.startswith(("cardgen.compare", "cardgen.bench", "cardgen.stats.")
                                                               ) and t != "cardgen.stats.metrics")
            assert not bad, f"{module} imports {bad}"
