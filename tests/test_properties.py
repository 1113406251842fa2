"""Property tests: random DAGs with random argument nesting.

For any graph, the runtime's result equals a plain sequential evaluation of
the same functions on the same arguments.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dagrt


def digest(*args: Any, **kwargs: Any) -> str:
    """A value that depends on every leaf *and* on the exact container structure."""
    text = repr((args, sorted(kwargs.items())))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


async def adigest(*args: Any, **kwargs: Any) -> str:
    return digest(*args, **kwargs)


sync_task = dagrt.task(digest)
async_task = dagrt.task(adigest)


class Ref:
    """Where a parent's value goes in a generated argument tree."""

    def __init__(self, index: int) -> None:
        self.index = index


def arg_tree(n_prev: int) -> st.SearchStrategy[Any]:
    leaf = st.integers(-5, 5) | st.text("ab", max_size=2) | st.none()
    if n_prev:
        leaf = leaf | st.integers(0, n_prev - 1).map(Ref)
    return st.recursive(
        leaf,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.tuples(inner, inner)
            | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3)
        ),
        max_leaves=6,
    )


@st.composite
def dag_specs(draw: st.DrawFn) -> tuple[list[tuple[bool, list[Any], dict[str, Any]]], list[int]]:
    n = draw(st.integers(1, 25))
    specs = []
    for i in range(n):
        args = draw(st.lists(arg_tree(i), max_size=3))
        kwargs = draw(st.dictionaries(st.sampled_from(["k1", "k2"]), arg_tree(i), max_size=2))
        specs.append((draw(st.booleans()), args, kwargs))
    outputs = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4))
    return specs, outputs


def substitute(tree: Any, values: list[Any]) -> Any:
    if isinstance(tree, Ref):
        return values[tree.index]
    if isinstance(tree, list):
        return [substitute(x, values) for x in tree]
    if isinstance(tree, tuple):
        return tuple(substitute(x, values) for x in tree)
    if isinstance(tree, dict):
        return {k: substitute(v, values) for k, v in tree.items()}
    return tree


def evaluate_sequentially(specs: list[tuple[bool, list[Any], dict[str, Any]]]) -> list[Any]:
    values: list[Any] = []
    for _, args, kwargs in specs:
        values.append(digest(*substitute(args, values), **substitute(kwargs, values)))
    return values


def build_nodes(specs: list[tuple[bool, list[Any], dict[str, Any]]]) -> list[dagrt.Node]:
    nodes: list[dagrt.Node] = []
    for is_async, args, kwargs in specs:
        fn = async_task if is_async else sync_task
        nodes.append(fn(*substitute(args, nodes), **substitute(kwargs, nodes)))
    return nodes


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(dag_specs())
async def test_runtime_equals_sequential_evaluation(
    any_client: dagrt.Client, spec: tuple[list[Any], list[int]]
) -> None:
    specs, outputs = spec
    expected = evaluate_sequentially(specs)
    nodes = build_nodes(specs)
    result = await any_client.compute(*(nodes[i] for i in outputs))
    want = tuple(expected[i] for i in outputs)
    assert result == (want[0] if len(outputs) == 1 else want)
    assert len(dagrt.DAG(*(nodes[i] for i in outputs))) == len(reachable(specs, outputs))


def refs(tree: Any) -> list[int]:
    if isinstance(tree, Ref):
        return [tree.index]
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, list | tuple):
        return [i for x in tree for i in refs(x)]
    return []


def reachable(specs: list[tuple[bool, list[Any], dict[str, Any]]], outputs: list[int]) -> set[int]:
    seen: set[int] = set()
    todo = list(outputs)
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(refs(specs[i][1]) + refs(specs[i][2]))
    return seen
