"""Graphs: ``Node`` (one call of a task function) and the frozen ``DAG``.

Calling a task function (:mod:`dagrt.tasks`) runs nothing and returns a
:class:`Node`. A node's arguments may hold other nodes
at any depth inside lists, tuples, dicts and sets (walked by
:mod:`dagrt.pytree`); those nodes are its parents, each counted once however
often it appears. :class:`DAG` walks the nodes reachable from its outputs once
and freezes them: topological order, parents and children, roots and sinks.

Node keys are stable strings (``"add-3f9a-17"``) that identify the node in a
graph, in storage and in the event log; two node objects with the same key are
the same node (that is what unpickling gives back). Every walk here is
iterative, so a chain of any depth builds, freezes, pickles and runs without
hitting Python's recursion limit.
"""

from __future__ import annotations

import itertools
import operator
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .exceptions import GraphError
from .pytree import TreeDef, flatten, unflatten

if TYPE_CHECKING:
    from .tasks import TaskFunction

__all__ = [
    "DAG",
    "GraphInResult",
    "Node",
    "Shape",
    "computes_nodes",
    "finding_graphs",
    "plan_outputs",
]

# --------------------------------------------------------------------------- keys

_counter = itertools.count(1)
_salt = os.urandom(2).hex()
#: nodes built in this process so far: a call during which it did not change built no
#: node, so its result holds no new graph (the in-process runtime looks no further)
built = 0


def _reset_after_fork() -> None:
    global _counter, _salt
    _counter = itertools.count(1)
    _salt = os.urandom(2).hex()


os.register_at_fork(after_in_child=_reset_after_fork)

# --------------------------------------------------------------------------- node


class GraphInResult(Exception):
    """Raised by pickling a node or a DAG in a thread where :func:`finding_graphs` is on:
    a task's result holds a graph to run (:mod:`dagrt.expand`). Found while the result
    is pickled anyway, so results that hold none pay nothing to be looked into."""


_finding = threading.local()


def finding_graphs(on: bool) -> None:
    """Make pickling a node or a DAG in this thread raise :class:`GraphInResult` (or
    not again): on while a task's result is serialized."""
    _finding.on = on


class _Ref:
    """Placeholder for a parent node inside a flat pickled record."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Ref, (self.index,))


class Node:
    """One call of a task function: a vertex of the graph. Nothing runs until computed.

    ``key`` identifies it; ``dependencies`` are its parents (distinct nodes in
    its arguments, in order of first appearance).
    """

    __slots__ = ("__weakref__", "_deps", "_leaves", "_slots", "_treedef", "func", "key")

    key: str
    func: TaskFunction[..., Any]
    _leaves: list[Any]  # flattened (args, kwargs); parents in place
    _treedef: TreeDef | bool  # True: leaves are the positional args, nothing else
    _deps: tuple[Node, ...]
    _slots: tuple[tuple[int, int], ...]  # (leaf index, dependency index)

    def __init__(self) -> None:
        raise TypeError("Nodes are made by calling a @dagrt.task function")

    @classmethod
    def _build(
        cls, func: TaskFunction[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Node:
        treedef: TreeDef | bool = True
        if not kwargs:
            for a in args:
                t = type(a)
                if t in _CONTAINER_TYPES or (
                    t not in _LEAF_TYPES and t is not Node and isinstance(a, tuple | dict)
                ):
                    treedef = False
                    break
        else:
            treedef = False
        if treedef is True:
            leaves: list[Any] = list(args)
        else:
            leaves, treedef = flatten((args, kwargs))
        deps, slots = _link(leaves)
        global built
        built += 1
        node = object.__new__(cls)
        node.key = f"{func._prefix}-{_salt}-{next(_counter)}"
        node.func = func
        node._leaves = leaves
        node._treedef = treedef
        node._deps = tuple(deps)
        node._slots = tuple(slots)
        return node

    # -- public views -------------------------------------------------------

    @property
    def name(self) -> str:
        """The task function's name."""
        return self.func.name

    @property
    def dependencies(self) -> tuple[Node, ...]:
        """The distinct parent nodes, in order of first appearance in the arguments."""
        return self._deps

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments as given (parents appear as nodes)."""
        return self._unflatten(self._leaves)[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments as given (parents appear as nodes)."""
        return self._unflatten(self._leaves)[1]

    def _unflatten(self, leaves: list[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self._treedef is True:
            return tuple(leaves), {}
        args, kwargs = unflatten(self._treedef, leaves)  # type: ignore[arg-type]
        return args, kwargs

    def compute(self, **client_options: Any) -> Any:
        """Compute this node with a temporary client (see :func:`dagrt.compute`)."""
        return _compute(self, **client_options)

    def __repr__(self) -> str:
        return f"<Node {self.key} deps={len(self._deps)}>"

    def __reduce__(self) -> tuple[Any, ...]:
        if getattr(_finding, "on", False):  # a task returned a graph: it runs, not this
            raise GraphInResult(self.key)
        return (_restore_nodes, (_flat_records([self]), 0))

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(
            f"{self!r} is a lazy task result and cannot be iterated before it is computed"
        )


_LEAF_TYPES = frozenset({int, float, str, bytes, bool, complex, type(None)})
_CONTAINER_TYPES = frozenset({list, tuple, dict, set, frozenset})


def _link(leaves: list[Any]) -> tuple[list[Node], list[tuple[int, int]]]:
    """The distinct parent nodes among ``leaves`` (by key) and where each leaf points."""
    deps: list[Node] = []
    slots: list[tuple[int, int]] = []
    seen: dict[str, int] = {}
    for i, leaf in enumerate(leaves):
        if type(leaf) is Node:
            j = seen.get(leaf.key)
            if j is None:
                j = seen[leaf.key] = len(deps)
                deps.append(leaf)
            slots.append((i, j))
    return deps, slots


# --------------------------------------------------------------------------- flat (de)serialization


_FUNC = operator.attrgetter("func")


def _ancestry(outputs: Sequence[Node]) -> tuple[list[Node], dict[str, int]]:
    """All nodes reachable from ``outputs``, parents before children (iterative DFS).

    A node waits on the stack until every parent is placed; parents are taken
    in argument order, so the order is deterministic.
    """
    order: list[Node] = []
    index: dict[str, int] = {}
    for out in outputs:
        stack = [out]
        while stack:
            node = stack[-1]
            key = node.key
            if key in index:
                stack.pop()
                continue
            waiting = False
            for d in reversed(node._deps):
                if d.key not in index:
                    stack.append(d)
                    waiting = True
            if not waiting:
                stack.pop()
                index[key] = len(order)
                order.append(node)
    return order, index


def _flat_records(outputs: Sequence[Node]) -> list[tuple[Any, ...]]:
    order, index = _ancestry(outputs)
    records = []
    for node in order:
        leaves = list(node._leaves)
        for li, dj in node._slots:
            leaves[li] = _Ref(index[node._deps[dj].key])
        records.append((node.key, node.func, node._treedef, leaves))
    # the requested nodes come last in topological order only if they are sinks;
    # callers find them by key through _restore_nodes' index argument.
    return [(index[o.key],) for o in outputs] + records  # type: ignore[list-item]


def _restore_nodes(records: list[tuple[Any, ...]], which: int) -> Any:
    nodes = _rebuild(records)
    return nodes[which]


def _rebuild(records: list[tuple[Any, ...]]) -> list[Node]:
    """Inverse of :func:`_flat_records`; returns the requested nodes in order."""
    n_out = 0
    while n_out < len(records) and len(records[n_out]) == 1:
        n_out += 1
    heads, body = records[:n_out], records[n_out:]
    built: list[Node] = []
    for key, func, treedef, leaves in body:
        deps: list[Node] = []
        slots: list[tuple[int, int]] = []
        seen: dict[int, int] = {}
        leaves = list(leaves)
        for i, leaf in enumerate(leaves):
            if type(leaf) is _Ref:
                parent = built[leaf.index]
                j = seen.get(leaf.index)
                if j is None:
                    j = seen[leaf.index] = len(deps)
                    deps.append(parent)
                leaves[i] = parent
                slots.append((i, j))
        node = object.__new__(Node)
        node.key = key
        node.func = func
        node._leaves = leaves
        node._treedef = treedef
        node._deps = tuple(deps)
        node._slots = tuple(slots)
        built.append(node)
    return [built[h[0]] for h in heads]


# --------------------------------------------------------------------------- DAG


class DAG:
    """An immutable graph of the nodes reachable from ``outputs``.

    ``DAG(a, b)`` computes to ``(value_of_a, value_of_b)``; ``DAG(a)`` to the
    value of ``a``. Iterating gives the nodes in topological order.
    """

    __slots__ = (
        "__weakref__",
        "_children",
        "_distinct",
        "_funcs",
        "_index",
        "_nodes",
        "_output_index",
        "_parents",
        "outputs",
    )

    outputs: tuple[Node, ...]
    _nodes: list[Node]
    _funcs: list[TaskFunction[..., Any]]
    _distinct: frozenset[TaskFunction[..., Any]]  # each function once
    _index: dict[str, int]
    _parents: list[tuple[int, ...]]
    _children: list[tuple[int, ...]]
    _output_index: tuple[int, ...]

    def __init__(self, *outputs: Node) -> None:
        if not outputs:
            raise GraphError("DAG() needs at least one node")
        for i, out in enumerate(outputs):
            if type(out) is not Node:
                hint = ""
                if isinstance(out, list | tuple | dict | set):
                    hint = " (pass nodes as separate arguments: DAG(*nodes))"
                elif isinstance(out, DAG):
                    hint = " (combine DAGs with DAG(*dag1.outputs, *dag2.outputs))"
                raise GraphError(
                    f"DAG() takes Node objects; argument {i} is "
                    f"{type(out).__name__} {_short(out)}{hint}"
                )
        self._freeze(outputs)

    def _freeze(self, outputs: Sequence[Node]) -> None:
        order, index = _ancestry(outputs)
        parents = [tuple([index[d.key] for d in node._deps]) for node in order]
        children: list[list[int]] = [[] for _ in order]
        for i, ps in enumerate(parents):
            for p in ps:
                children[p].append(i)
        self.outputs = tuple(outputs)
        self._nodes = order
        self._funcs = list(map(_FUNC, order))  # the runtimes look a node's function up per task
        self._distinct = frozenset(self._funcs)
        self._index = index
        self._parents = parents
        self._children = [tuple(c) for c in children]
        self._output_index = tuple(index[o.key] for o in outputs)

    # -- size and membership -----------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes)

    def __contains__(self, item: object) -> bool:
        key = item.key if isinstance(item, Node) else item
        return isinstance(key, str) and key in self._index

    def __getitem__(self, key: str) -> Node:
        try:
            return self._nodes[self._index[key]]
        except KeyError:
            raise KeyError(f"no node {key!r} in this DAG") from None

    def __repr__(self) -> str:
        return f"<DAG {len(self)} nodes, {len(self.roots)} roots, {len(self.outputs)} outputs>"

    def _pos(self, node: Node | str) -> int:
        key = node.key if isinstance(node, Node) else node
        try:
            return self._index[key]  # type: ignore[index]
        except (KeyError, TypeError):
            raise KeyError(f"{node!r} is not a node of this DAG") from None

    # -- structure -----------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """All nodes in topological order (parents before children)."""
        return tuple(self._nodes)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(n.key for n in self._nodes)

    def topological_order(self) -> list[Node]:
        """The nodes, every parent before each of its children."""
        return list(self._nodes)

    @property
    def roots(self) -> tuple[Node, ...]:
        """Nodes without parents (ready at once)."""
        return tuple(n for n, ps in zip(self._nodes, self._parents, strict=True) if not ps)

    @property
    def sinks(self) -> tuple[Node, ...]:
        """Nodes without children in this DAG."""
        return tuple(n for n, cs in zip(self._nodes, self._children, strict=True) if not cs)

    def parents(self, node: Node | str) -> tuple[Node, ...]:
        return tuple(self._nodes[p] for p in self._parents[self._pos(node)])

    def children(self, node: Node | str) -> tuple[Node, ...]:
        return tuple(self._nodes[c] for c in self._children[self._pos(node)])

    def fan_in(self, node: Node | str) -> int:
        """Number of distinct parents."""
        return len(self._parents[self._pos(node)])

    def fan_out(self, node: Node | str) -> int:
        """Number of distinct children."""
        return len(self._children[self._pos(node)])

    def edges(self) -> Iterator[tuple[Node, Node]]:
        """``(parent, child)`` pairs."""
        for i, ps in enumerate(self._parents):
            for p in ps:
                yield self._nodes[p], self._nodes[i]

    @property
    def n_edges(self) -> int:
        return sum(len(ps) for ps in self._parents)

    def depth(self) -> int:
        """Number of nodes on the longest path (1 for a single node)."""
        level = [0] * len(self._nodes)
        for i, ps in enumerate(self._parents):
            level[i] = 1 + max((level[p] for p in ps), default=0)
        return max(level)

    def to_dot(self, name: str = "dag") -> str:
        """The graph in Graphviz DOT, one vertex per node labelled with its function."""
        lines = [f"digraph {_dot_id(name)} {{", "  rankdir=BT;", "  node [shape=box];"]
        for node in self._nodes:
            lines.append(f"  {_dot_id(node.key)} [label={_dot_id(node.name)}];")
        for parent, child in self.edges():
            lines.append(f"  {_dot_id(parent.key)} -> {_dot_id(child.key)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    # -- pickling ------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        if getattr(_finding, "on", False):  # (see Node.__reduce__)
            raise GraphInResult(repr(self))
        return (_restore_dag, (_flat_records(self.outputs),))


def _restore_dag(records: list[tuple[Any, ...]]) -> DAG:
    return DAG(*_rebuild(records))


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- what compute() returns


def _no_client(*xs: Any, **client_options: Any) -> Any:
    raise RuntimeError("node.compute() needs dagrt.client, which `import dagrt` loads")


#: What ``Node.compute`` calls: :func:`dagrt.compute`. The client sits above this
#: module (it builds on nodes and DAGs), so it hands its ``compute`` down when it is
#: imported (:func:`computes_nodes`), rather than this module importing upwards.
_compute: Callable[..., Any] = _no_client


def computes_nodes(compute: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``compute`` what ``node.compute(**options)`` calls (a decorator)."""
    global _compute
    _compute = compute
    return compute


def plan_outputs(xs: tuple[Any, ...]) -> tuple[DAG | None, Callable[[list[Any]], Any]]:
    """The DAG to run for ``compute(*xs)`` and a function shaping its results.

    Each of ``xs`` may be a node, a DAG (its value, or a tuple of its outputs'
    values), or any tree of nodes and constants (the same tree comes back with
    values in place of nodes). One argument gives its result; several a tuple.
    """
    if len(xs) == 1 and isinstance(xs[0], DAG):  # the common case: no refreeze
        given = xs[0]
        if len(given.outputs) == 1:
            return given, lambda values: values[0]
        return given, tuple
    dag, shape = Shape.of(xs)
    return dag, shape.fill


class Shape:
    """Where the values of a DAG's outputs go in a tree of nodes, DAGs and constants
    (:meth:`of`), to give the tree back with values in place (:meth:`fill`). Plain
    data: it pickles (a sub-run keeps the shape of the graph its task returned)."""

    __slots__ = ("leaves", "single", "spans", "treedef")

    def __init__(
        self,
        leaves: list[Any],
        spans: list[tuple[int, int, bool] | None],
        treedef: TreeDef,
        single: bool,
    ) -> None:
        self.leaves = leaves  # the constants; None where values go
        self.spans = spans  # for each leaf: None (a constant), or (start, count, as_tuple)
        self.treedef = treedef
        self.single = single

    @classmethod
    def of(cls, xs: tuple[Any, ...]) -> tuple[DAG | None, Shape]:
        """The DAG of the nodes in ``xs`` (None if there are none) and their shape."""
        leaves, treedef = flatten(xs, is_leaf=lambda x: isinstance(x, DAG))
        outputs: list[Node] = []
        spans: list[tuple[int, int, bool] | None] = []
        constants: list[Any] = []
        for leaf in leaves:
            if type(leaf) is Node:
                spans.append((len(outputs), 1, False))
                outputs.append(leaf)
                constants.append(None)
            elif isinstance(leaf, DAG):
                spans.append((len(outputs), len(leaf.outputs), len(leaf.outputs) > 1))
                outputs.extend(leaf.outputs)
                constants.append(None)
            else:
                spans.append(None)
                constants.append(leaf)
        shape = cls(constants, spans, treedef, len(xs) == 1)
        return (DAG(*outputs) if outputs else None), shape

    def fill(self, values: list[Any]) -> Any:
        """The tree with ``values`` (the DAG's output values, in order) in place."""
        filled = []
        for leaf, span in zip(self.leaves, self.spans, strict=True):
            if span is None:
                filled.append(leaf)
            else:
                start, count, as_tuple = span
                filled.append(tuple(values[start : start + count]) if as_tuple else values[start])
        result = unflatten(self.treedef, filled)
        return result[0] if self.single else result

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.leaves, self.spans, self.treedef, self.single)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.leaves, self.spans, self.treedef, self.single = state
