"""dagrt's modules import one another without a cycle, counting imports inside
functions (a lazy import is still a dependency) and leaving out ``TYPE_CHECKING``
blocks (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import dagrt

ROOT = Path(dagrt.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, wherever in the module it does."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    wanted: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from . import keys` names a module
                sub = f"{module}.{alias.name}"
                wanted.add(sub if sub in known else module)
        stack.extend(ast.iter_child_nodes(node))
    edges = set()
    for module in wanted:
        while module and module not in known:  # `import dagrt.x.y` of a name: its module
            module = module.rpartition(".")[0]
        if module and module != name:
            edges.add(module)
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        todo = [iter(sorted(graph[start]))]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(sorted(graph[nxt])))
    return None


def test_the_package_has_no_import_cycle() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert "dagrt.client" in graph["dagrt"]  # the walk sees the package's imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_walk_sees_function_level_imports_and_skips_type_checking() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    known = modules()
    # cli.py imports the workers inside a function, graph.py imports only below it
    assert "dagrt.workers" in imports_of("dagrt.cli", known["dagrt.cli"], known)
    assert imports_of("dagrt.graph", known["dagrt.graph"], known) <= {
        "dagrt.exceptions",
        "dagrt.pytree",
    }
    # futures.py names the graph only for type checking
    assert "dagrt.graph" not in imports_of("dagrt.futures", known["dagrt.futures"], known)
