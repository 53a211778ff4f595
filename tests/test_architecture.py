"""The package map of docs/architecture.md, checked against the code's own imports.

Imports are read with `ast` (those under `if TYPE_CHECKING:` are for annotations
only and do not count). Top-level modules are nodes of their own; a subpackage
(training/data, app/index, ...) is one node.
"""

from __future__ import annotations

import ast
from pathlib import Path

from paths import ROOT

PACKAGES = ("app", "training")
# Nothing below the routes knows the web framework.
NO_WEB_FRAMEWORK = ("app.catalogue", "app.index", "app.similarity", "app.orm", "app.db", "training")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Modules imported when the file runs (annotation-only imports excluded)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def node_of(module: str) -> str:
    """A subpackage is one node (app.index.cache -> app.index); top-level modules are their own."""
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            source = node_of(module_name(path))
            targets = {node_of(m) for m in runtime_imports(path) if m.split(".")[0] in PACKAGES}
            graph.setdefault(source, set()).update(targets - {source, *PACKAGES})
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_package_or_module_imports_one_that_imports_it():
    assert cycle_in(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_training_never_imports_the_service():
    offenders = {
        module_name(path): sorted(m for m in runtime_imports(path) if m.split(".")[0] == "app")
        for path in (ROOT / "training").rglob("*.py")
    }
    assert {m: found for m, found in offenders.items() if found} == {}


def test_code_below_the_routes_does_not_know_the_web_framework():
    offenders = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = module_name(path)
            if not name.startswith(NO_WEB_FRAMEWORK):
                continue
            web = {m for m in runtime_imports(path) if m.split(".")[0] in ("fastapi", "starlette")}
            if web:
                offenders[name] = sorted(web)
    assert offenders == {}


def test_bundles_load_without_the_training_loop():
    """artefacts depends only on the model, split and scoring definitions (and the data's files):
    a bundle records the scoring it was chosen with."""
    path = ROOT / "training" / "artefacts.py"
    ours = {m for m in runtime_imports(path) if m.split(".")[0] in PACKAGES}
    assert ours <= {
        "training.model", "training.data.split", "training.data.features", "training.data.fma",
        "training.evaluation.scoring",
    }  # fmt: skip
