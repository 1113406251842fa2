"""Tasks that add tasks: a task whose result holds nodes has returned a graph.

A task function may build nodes and return them (a node, a DAG, or any tree of them
and constants, as :meth:`dagrt.Client.compute` takes): the fan-out of the graph is
then known only when the task runs. (Nodes inside objects of other types, which
dagrt does not walk, are returned as they are, like any value.) The graph runs as a
run of its own, a *sub-run*, with an id derived from the task's (:func:`dagrt.keys.sub_run_id`);
the task's value is the graph's result, in the shape returned, and its children see
that. (In process, the graph must be one the task built during its call: a node
built before it and returned is a value there.) Nothing holds a thread or a slot while
the graph runs: in-process the task awaits it on the event loop; on workers nobody
waits at all (the sub-run's end completes the task: :mod:`dagrt.workers.subruns`).

A failure in the graph fails the task that returned it, with the original exception
and the failing task's traceback (:func:`nested_failure`): each task of the graph
retried first by its own ``retries``; the parent's ``retries`` cover its own call
only. A run that ends (cancelled, failed elsewhere) stops its sub-runs.
"""

from __future__ import annotations

from typing import Any

from .exceptions import TaskError
from .graph import DAG, Node, Shape
from .pytree import any_leaf

__all__ = ["has_graph", "nested_failure", "returned_graph"]


def _is_graph(x: Any) -> bool:
    t = type(x)
    return t is Node or t is DAG


def has_graph(value: Any) -> bool:
    """Does ``value`` hold a node or a DAG (itself, or inside lists, tuples, dicts,
    sets: the trees :mod:`dagrt.pytree` walks)?"""
    return any_leaf(value, _is_graph)


def returned_graph(value: Any, key: str) -> tuple[DAG, Shape]:
    """The DAG a task's result asks for and its shape, which puts the DAG's output
    values in the result's place (:meth:`~dagrt.graph.Shape.fill`). A node inside
    something that is not a tree (a class instance, say) cannot run: ``TypeError``."""
    dag, shape = Shape.of((value,))
    if dag is None:
        raise TypeError(
            f"task {key} returned nodes inside a {type(value).__name__} that dagrt does not"
            " walk: return a node, a DAG, or nodes in lists, tuples, dicts and sets, and"
            " the graph runs, its result in their place"
        )
    return dag, shape


def nested_failure(err: BaseException, sub: str) -> tuple[BaseException, str]:
    """What the task that returned a graph fails with when its sub-run ``sub`` failed
    with ``err``: the original exception where it could be rebuilt (else ``err``),
    and a traceback that says which task of the graph raised it."""
    if not isinstance(err, TaskError):
        return err, ""
    where = f"in task {err.task!r} ({err.name}) of the graph it returned (run {sub})"
    if err.worker:
        where += f", on {err.worker}"
    tb = err.remote_traceback.rstrip()
    text = f"{where}:\n{tb}\n" if tb else f"{where}: {err.exc_type}: {err.message}\n"
    return (err.exception if err.exception is not None else err), text
