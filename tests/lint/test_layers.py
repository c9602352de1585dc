"""The layer rule of the ``eddy`` package, checked on every import statement in it.

Layers, lowest first (docs/architecture.md draws them). A module may import its own layer and the layers below,
never one above; no two services import each other; and no import cycle exists between modules, counting the
imports inside functions too (they only hide a cycle from the interpreter, not from a reader).
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import pytest
from eddy.core.settings import REPO_ROOT

pytestmark = pytest.mark.lint

PACKAGE = REPO_ROOT / "shared" / "eddy"
# integrations (bridges to other tools, each behind an extra) sit under the cli, whose `eddy mlflow` drives one.
LAYERS = (
    "native",
    "core",
    "contracts",
    "avro",
    "ml",
    "kafka",
    "runtime",
    "history",
    "services",
    "stack",
    "integrations",
    "cli",
)
# The package's own top level (eddy/__init__.py, eddy/client.py, ...) is the public API: the top layer.
TOP = len(LAYERS)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else TOP


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "services" else None


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The eddy modules ``path`` imports (for ``from a import b``: ``a.b`` when that is a module, else ``a``)."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    here = module_name(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "eddy")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here.split(".")[: -node.level] if path.name != "__init__.py" else here.split(".")
                base = ".".join([*package, *([base] if base else [])])
            if base.split(".")[0] != "eddy":
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    found.discard(here)
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) & modules for p in paths}


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = [
        f"{module} ({LAYERS[layer_of(module)] if layer_of(module) < TOP else 'api'}) imports {target}"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_service_imports_another_service() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if service_of(module) and service_of(target) and service_of(module) != service_of(target)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph = import_graph()
    # Parent packages are imported with their modules; an __init__ that only holds a docstring adds no edge.
    cycles: list[list[str]] = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state[target] == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif state[target] == 0:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_rule_sees_the_whole_package() -> None:
    graph = import_graph()
    assert {"eddy.runtime.loop", "eddy.services.inference.handlers", "eddy.cli.main"} <= set(graph)
    assert "eddy.core.settings" in graph["eddy.runtime.loop"] or any(
        "eddy.core" in target for target in graph["eddy.runtime.loop"]
    )
