"""Building graphs: @task, Node and the frozen DAG's structure queries."""

from __future__ import annotations

import functools
import pickle
from typing import Any

import cloudpickle
import pytest
from helpers import add, collect, inc, total

import dagrt
from dagrt import DAG, GraphError, Node


@dagrt.task
def deep(tree: Any) -> int:
    return tree["a"][0]["b"][0] + tree["a"][1]["c"][0][0]


# --------------------------------------------------------------------------- building


def test_calling_a_task_builds_a_node_and_runs_nothing() -> None:
    calls = []

    @dagrt.task
    def record(x: int) -> int:
        calls.append(x)
        return x

    node = record(1)
    assert isinstance(node, Node)
    assert calls == []
    assert node.name == "record"
    assert node.args == (1,)
    assert node.kwargs == {}
    assert node.dependencies == ()
    assert record.fn(5) == 5
    assert calls == [5]


def test_the_issue_example_has_three_nodes() -> None:
    a = add(1, 2)
    b = total({"left": [a, add(a, 1)], "right": [(a,)]}, scale=a)
    dag = DAG(b)
    assert len(dag) == 3  # a is one node, used four times
    assert dag.parents(b)[0] is a
    assert dag.fan_in(b) == 2
    assert dag.fan_out(a) == 2
    assert b.kwargs["scale"] is a


def test_diamond() -> None:
    top = inc(0)
    left, right = inc(top), add(top, 10)
    bottom = add(left, right)
    dag = DAG(bottom)
    assert len(dag) == 4
    assert dag.roots == (top,)
    assert dag.sinks == (bottom,)
    assert set(dag.children(top)) == {left, right}
    assert dag.parents(bottom) == (left, right)
    assert dag.n_edges == 4
    assert dag.depth() == 3


def test_multiple_sinks_and_shared_subexpressions() -> None:
    shared = add(1, 2)
    s1, s2, s3 = inc(shared), add(shared, shared), inc(inc(shared))
    dag = DAG(s1, s2, s3)
    assert len(dag) == 5
    assert dag.outputs == (s1, s2, s3)
    assert set(dag.sinks) == {s1, s2, s3}
    assert dag.fan_in(s2) == 1  # the same parent twice is one edge
    assert dag.fan_out(shared) == 3


def test_outputs_need_not_be_sinks() -> None:
    a = inc(1)
    b = inc(a)
    dag = DAG(a, b)
    assert dag.outputs == (a, b)
    assert dag.sinks == (b,)


def test_constants_only() -> None:
    node = add(1, 2)
    dag = DAG(node)
    assert len(dag) == 1
    assert dag.roots == dag.sinks == (node,)
    assert dag.depth() == 1


def test_nested_containers_four_levels_deep() -> None:
    a, b = inc(1), inc(2)
    node = deep({"a": [{"b": [a]}, {"c": [(b, a)]}]})
    assert node.dependencies == (a, b)
    dag = DAG(node)
    assert len(dag) == 3
    assert node.args[0]["a"][1]["c"][0][0] is b


def test_topological_order_puts_parents_first() -> None:
    nodes = [inc(0)]
    for i in range(1, 50):
        nodes.append(add(nodes[i - 1], nodes[i // 2]))
    dag = DAG(nodes[-1])
    position = {n.key: i for i, n in enumerate(dag.topological_order())}
    for parent, child in dag.edges():
        assert position[parent.key] < position[child.key]
    assert list(dag) == dag.topological_order()


def test_a_10000_deep_chain_builds_freezes_and_pickles() -> None:
    node = inc(0)
    for _ in range(9_999):
        node = inc(node)
    dag = DAG(node)
    assert len(dag) == 10_000
    assert dag.depth() == 10_000
    assert len(dag.roots) == 1
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        again = loads(dumps(node))
        assert again.key == node.key
        assert len(DAG(again)) == 10_000
        dag_again = loads(dumps(dag))
        assert dag_again.keys == dag.keys


def test_a_10000_wide_fan_out_and_fan_in() -> None:
    root = inc(0)
    leaves = [add(root, i) for i in range(10_000)]
    sink = collect(*leaves)
    dag = DAG(sink)
    assert len(dag) == 10_002
    assert dag.fan_out(root) == 10_000
    assert dag.fan_in(sink) == 10_000
    assert dag.depth() == 3
    assert len(DAG(pickle.loads(pickle.dumps(sink)))) == 10_002


def test_node_keys_are_unique_stable_strings() -> None:
    a, b = inc(1), inc(1)
    assert isinstance(a.key, str)
    assert a.key.startswith("inc-")
    assert a.key != b.key  # calls are not merged by value
    assert pickle.loads(pickle.dumps(a)).key == a.key


def test_nodes_with_the_same_key_are_one_node() -> None:
    a = inc(1)
    copy = pickle.loads(pickle.dumps(a))
    assert copy is not a
    node = add(a, copy)
    assert len(node.dependencies) == 1
    assert len(DAG(node)) == 2


def test_to_dot_lists_every_node_and_edge() -> None:
    a = inc(1)
    b = add(a, a)
    dot = DAG(b).to_dot()
    assert dot.startswith("digraph")
    assert f'"{a.key}" -> "{b.key}";' in dot
    assert dot.count("->") == 1
    assert '[label="add"]' in dot


def test_lookup_by_key_and_membership() -> None:
    a = inc(1)
    dag = DAG(inc(a))
    assert dag[a.key] is a
    assert a in dag
    assert a.key in dag
    assert inc(3) not in dag
    with pytest.raises(KeyError, match="no node"):
        dag["nope"]
    with pytest.raises(KeyError, match="not a node"):
        dag.parents(inc(5))


# --------------------------------------------------------------------------- options and kinds


def test_task_options_and_async_detection() -> None:
    @dagrt.task(name="load", retries=2, retry_delay=0.5)
    async def fetch(x: int) -> int:
        return x

    assert fetch.name == "load"
    assert fetch.retries == 2
    assert fetch.retry_delay == 0.5
    assert fetch.is_async
    assert not add.is_async
    assert fetch(1).key.startswith("load-")
    more = fetch.options(retries=5)
    assert more.retries == 5
    assert more.name == "load"
    assert "async task load" in repr(fetch)


def test_partials_and_callable_objects_are_classified_once() -> None:
    async def coro(x: int, y: int) -> int:
        return x + y

    class Async:
        async def __call__(self, x: int) -> int:
            return x

    class Sync:
        def __call__(self, x: int) -> int:
            return x

    assert dagrt.task(functools.partial(coro, 1)).is_async
    assert dagrt.task(Async()).is_async
    assert not dagrt.task(Sync()).is_async
    assert dagrt.task(Sync()).name == "Sync"
    assert dagrt.task(lambda x: x).name == "lambda"


# --------------------------------------------------------------------------- bad input


def test_bad_arguments_fail_when_the_node_is_built() -> None:
    with pytest.raises(TypeError, match=r"add\(\): missing a required argument: 'y'"):
        add(1)
    with pytest.raises(TypeError, match=r"add\(\): too many positional arguments"):
        add(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        add(1, 2, z=3)
    with pytest.raises(TypeError, match="missing a required argument: 'parts'"):
        total(scale=2)


def test_task_rejects_non_callables_and_bad_options() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        dagrt.task(42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="retries"):
        dagrt.task(retries=-1)(lambda: 1)
    with pytest.raises(ValueError, match="retry_delay"):
        dagrt.task(retry_delay="soon")(lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        dagrt.task(name="")(lambda: 1)
    with pytest.raises(ValueError, match="UTF-8"):  # names go to the event log as UTF-8
        dagrt.task(name="bad\udc80name")(lambda: 1)
    odd = lambda: 1  # noqa: E731
    odd.__name__ = "\ud800"
    with pytest.raises(ValueError, match="UTF-8"):
        dagrt.task(odd)


def test_dag_rejects_what_is_not_a_node() -> None:
    with pytest.raises(GraphError, match="at least one node"):
        DAG()
    with pytest.raises(GraphError, match=r"argument 0 is int 5"):
        DAG(5)  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"DAG\(\*nodes\)"):
        DAG([inc(1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # GraphError is a TypeError too
        DAG("x")  # type: ignore[arg-type]


def test_nodes_cannot_be_made_directly_or_iterated() -> None:
    with pytest.raises(TypeError, match="made by calling"):
        Node()
    with pytest.raises(TypeError, match="cannot be iterated"):
        _a, _b = inc(1)  # type: ignore[misc]
