"""The layout is the data flow: each stage imports only the stages before it (ARCHITECTURE.md draws them).

Read from the source, not from a running interpreter, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autotrade"

# Each stage may import the foundation and any stage listed before it, never one after it.
STAGES = ("data", "engine", "sandbox", "evaluation", "propose", "research", "rl", "report", "cli")
# Evaluating a strategy and proposing one are independent: research is where they meet.
APART = {("evaluation", "propose"), ("propose", "evaluation")}


def stage_of(module: str) -> str:
    """The stage of a dotted module name under autotrade ("foundation" for the top-level modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in STAGES else "foundation"


def imports_of(path: Path) -> set[str]:
    """Every autotrade module a source file imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("autotrade"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autotrade"):
            assert node.level == 0, f"{path}: relative import (imports are absolute, so a move is one line to find)"
            found.add(node.module)
            # `from autotrade.sandbox import layers` imports the module autotrade.sandbox.layers.
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if _is_module(f"{node.module}.{alias.name}")
            )
    return found


def _is_module(name: str) -> bool:
    """Whether a dotted name under autotrade is a module or package of the source tree."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def module_name(path: Path) -> str:
    """The dotted name of a source file under the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts)


def allowed(importer: str, imported: str) -> bool:
    """Whether a module of stage `importer` may import one of stage `imported`."""
    if imported == "foundation" or importer == imported:
        return True
    if importer == "foundation" or (importer, imported) in APART:
        return False
    return STAGES.index(imported) < STAGES.index(importer)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_a_module_imports_only_earlier_stages(path: Path) -> None:
    importer = stage_of(module_name(path))
    wrong = sorted(m for m in imports_of(path) if m != "autotrade" and not allowed(importer, stage_of(m)))
    assert not wrong, f"{module_name(path)} ({importer}) imports later or independent stages: {wrong}"


def test_nothing_outside_the_cli_imports_it() -> None:
    users = sorted(
        module_name(p)
        for p in SOURCES
        if stage_of(module_name(p)) != "cli" and any(stage_of(m) == "cli" for m in imports_of(p))
    )
    assert users == []


def test_no_two_modules_import_each_other_even_through_others() -> None:
    graph = {module_name(p): {m for m in imports_of(p) if m != "autotrade"} for p in SOURCES}
    modules = set(graph)
    edges = {m: {d for d in deps if d in modules} for m, deps in graph.items()}
    cycles = [c for c in _strongly_connected(edges) if len(c) > 1]
    assert cycles == []


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of a directed graph, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_stage_rule_rejects_a_backward_import() -> None:
    assert not allowed("evaluation", "research")
    assert not allowed("propose", "evaluation")
    assert not allowed("foundation", "data")
    assert allowed("research", "evaluation") and allowed("cli", "report")
