"""Dask collections on dagrt: a Dask scheduler that runs each Dask task as a dagrt task.

``dask.compute(x, scheduler=dagrt.dask.get)``, ``dask.config.set(scheduler=client.get)``
or :func:`enable` route a Dask computation here. :func:`get` takes what Dask hands a
scheduler (an expression with ``__dask_graph__()`` since Dask 2025.4, a
``HighLevelGraph`` or a plain dict, legacy tuples included: ``convert_legacy_graph``)
and the keys it wants, possibly nested lists; it returns their values in the same
nesting (lists become tuples, as Dask's own schedulers return them).

The conversion (:func:`convert`) keeps one dagrt task per Dask task and nothing more:

* a ``Task`` becomes a call of the task itself (:func:`_call`) on the values of its
  dependencies, named as the task names them (``Task.__call__`` rebuilds nested
  arguments, inner tasks and fused subgraphs itself); its dagrt key is the Dask key
  (``repr`` of a tuple key) and its name the key's prefix (``sum-aggregate``), so the
  event log, report, dashboard and error messages say what Dask says;
* an ``Alias`` is resolved at conversion (chains followed, a cycle is an error): its
  consumers read the target's output, under the alias's name;
* a ``DataNode`` is a constant: passed to its consumers as an argument, never run (a
  key that is wanted and is one comes back as its value); one of ``LARGE_DATA`` bytes or
  more (an array chunk, a partition from ``from_pandas``) is a ``dask-data`` task of its
  own instead, whose output its consumers read (one copy, not one per consumer);
* only what the wanted keys need is converted (culled); a wanted key that is not in the
  graph is a ``KeyError``, as Dask's schedulers raise.

No recursion anywhere (a 10,000-link chain converts). A task that fails raises its
original exception on the client (:class:`~dagrt.TaskError` carries the remote
traceback as its cause), as Dask's schedulers do.

Where it runs: ``get(..., client=c)`` (or ``c.get``, or :func:`enable`'s client) on that
client's runtime (a local cluster, a pool by URL, or in-process); without one, in this
process (one ``Client(processes=False)`` for every such call, its loop in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .exceptions import TaskError
from .persist import Pin, read_failure, stand_in
from .tasks import TaskFunction, task

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Persisted", "acompute", "convert", "enable", "get", "persist", "wait"]


def get(dsk: Any, keys: Any, *, client: Client | None = None, **kwargs: Any) -> Any:
    """Dask's scheduler protocol: the values of ``keys`` (a key, or nested lists of
    keys) in graph ``dsk``, computed on dagrt (``client``, else :func:`enable`'s, else
    in this process). Other keywords Dask forwards are ignored."""
    client = client if client is not None else (_enabled.client or _background())
    nodes, shape = convert(dsk, keys, external=_persisted_pins(dsk, client))
    return shape(_unwrapped(lambda: _compute(nodes, client)))


def _unwrapped(call: Callable[[], Any]) -> Any:
    """``call()``; a task's failure raised as its original exception (as Dask's
    schedulers raise it), the :class:`~dagrt.TaskError` with the remote traceback as
    its cause."""
    try:
        return call()
    except TaskError as exc:
        _reraise(exc)


def _reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc``; a :class:`~dagrt.TaskError` as its original exception (the
    TaskError, with the remote traceback, as its cause) when it has one."""
    if isinstance(exc, TaskError) and exc.exception is not None:
        raise exc.exception from exc
    raise exc


def _get_persist(collections: Any, **kwargs: Any) -> Any:
    """Dask's persist protocol for ``scheduler=dagrt.dask.get`` (a function attribute:
    Dask looks for ``persist`` on the scheduler)."""
    client = _enabled.client or _background()
    return client.persist(collections, **kwargs)


get.persist = _get_persist  # type: ignore[attr-defined]


def convert(
    dsk: Any, keys: Any, external: Callable[[Any], Pin | None] | None = None
) -> tuple[list[Any], Any]:
    """The dagrt nodes (or constants) of the distinct wanted keys of a Dask graph, and a
    function that shapes their values as ``keys`` is nested. ``external``: the pin of a
    key the graph does not have (a persisted chunk: :func:`persist_collections`), or
    None (then it is a ``KeyError``)."""
    from dask._task_spec import Alias, DataNode, GraphNode, Task, convert_legacy_graph

    graph = dsk if isinstance(dsk, Mapping) else dsk.__dask_graph__()
    if not all(isinstance(v, GraphNode) for v in graph.values()):
        graph = convert_legacy_graph(dict(graph))

    def outside(key: Any) -> Pin:
        pin = external(key) if external is not None else None
        if pin is None:
            raise KeyError(key)
        return pin

    wanted = _flat_keys(keys)
    for key in wanted:
        if key not in graph:
            outside(key)

    def resolve(key: Any) -> Any:
        if not isinstance(graph.get(key), Alias):  # (the common case)
            return key
        seen = set()
        while isinstance(graph.get(key), Alias):
            if key in seen:
                raise ValueError(f"the Dask graph's aliases form a cycle at {key!r}")
            seen.add(key)
            key = graph[key].target  # (one the graph has not: persisted, or an error)
        return key

    built: dict[Any, Any] = {}  # producing key -> its Node, or _Constant
    stack = [resolve(k) for k in reversed(wanted)]
    while stack:  # post-order, iterative
        key = stack[-1]
        if key in built:
            stack.pop()
            continue
        node = graph.get(key)
        if node is None and key not in graph:  # (persisted, or a KeyError)
            made = stand_in(outside(key))
            made.key = key if isinstance(key, str) else repr(key)
            built[key] = made
            stack.pop()
            continue
        if isinstance(node, DataNode):
            if _large(node.value):  # (a task of its own: stored once, read by each consumer)
                made = _value(_Constant(node.value))
                made.key = key if isinstance(key, str) else repr(key)
                built[key] = made
            else:  # (small: in the arguments of each consumer)
                built[key] = _Constant(node.value)
            stack.pop()
            continue
        if not isinstance(node, Task):  # (convert_legacy_graph makes nothing else)
            raise TypeError(f"Dask graph node {key!r} is a {type(node).__name__}")
        names = list(node.dependencies)  # (any order: the values follow it)
        producers = [resolve(name) for name in names]
        missing = [p for p in producers if p not in built]
        if missing:
            stack.extend(missing)
            continue
        stack.pop()
        # (opaque to the argument walker: a key is a tuple, a constant may be a big list)
        made = _caller(key)(_Spec(node, names), *(built[p] for p in producers))
        made.key = key if isinstance(key, str) else repr(key)  # (Dask's, in logs and errors)
        built[key] = made

    distinct: dict[Any, int] = {}
    outputs: list[Any] = []
    for key in wanted:
        producer = resolve(key)
        if producer not in distinct:
            distinct[producer] = len(outputs)
            made = built[producer]
            outputs.append(_value(made) if isinstance(made, _Constant) else made)

    def shape(values: list[Any]) -> Any:
        by_key = {k: values[i] for k, i in distinct.items()}
        return _nested(keys, lambda k: by_key[resolve(k)])

    return outputs, shape


def persist(*collections: Any, client: Client | None = None, **kwargs: Any) -> Any:
    """``dask.persist(*collections)`` on dagrt: each collection comes back at once with
    its chunks kept in the pool (:meth:`dagrt.Client.persist`), to use in later
    computations (``client``, else :func:`enable`'s, else this process)."""
    from dask.base import persist as dask_persist

    scheduler = client.get if client is not None else (_enabled.client or _background()).get
    return dask_persist(*collections, scheduler=scheduler, **kwargs)  # type: ignore[no-untyped-call]


def wait(*collections: Any) -> None:
    """Block until the runs persisting the chunks of ``collections`` end (their error,
    if one failed), as ``distributed.wait`` does."""
    made = {}
    for collection in collections:
        for value in dict(collection.__dask_graph__()).values():
            if isinstance(value, Persisted) and value.pin.made is not None:
                made[id(value.pin.made)] = value.pin.made
    for future in made.values():
        failure: BaseException | None = None
        try:
            future.result()
        except (asyncio.CancelledError, Exception) as exc:  # (this thread is not cancelled)
            failure = exc
        if failure is not None:
            _reraise(read_failure(future, failure))


def has_collections(xs: tuple[Any, ...]) -> bool:
    """Whether ``client.persist(*xs)`` was given Dask collections (Dask's protocol passes
    one list of them)."""
    items = xs[0] if len(xs) == 1 and isinstance(xs[0], list | tuple) else xs
    return any(hasattr(type(x), "__dask_graph__") for x in items)


def persist_collections(
    client: Client,
    xs: tuple[Any, ...],
    ttl: float,
    optimize_graph: bool = True,
    **kwargs: Any,
) -> Any:
    """:meth:`Client.persist` of Dask collections: Dask's own ``persist`` (which rebuilds
    each collection around the values its scheduler returns) with a scheduler that
    starts the run keeping the wanted chunks and returns :class:`Persisted` futures
    for them. Dask's protocol call (one list of collections) gets a list back."""
    from dask.base import persist as dask_persist

    from .graph import Node
    from .pytree import flatten

    listed = len(xs) == 1 and isinstance(xs[0], list | tuple)
    collections = list(xs[0]) if listed else list(xs)
    if any(isinstance(leaf, Node) for leaf in flatten(collections)[0]):
        raise TypeError(
            "persist() takes dagrt nodes or Dask collections, not both in one call:"
            " persist each kind in a call of its own"
        )
    scheduler = functools.partial(_persisting, client, ttl)
    out = dask_persist(  # type: ignore[no-untyped-call]
        *collections, scheduler=scheduler, optimize_graph=optimize_graph, traverse=False
    )
    if listed:
        return list(out)
    return out[0] if len(out) == 1 else out


def _persisting(client: Client, ttl: float, dsk: Any, keys: Any, **kwargs: Any) -> list[Any]:
    """The scheduler of :func:`persist_collections`: futures of ``keys`` (a flat list)."""
    nodes, shape = convert(dsk, keys, external=_persisted_pins(dsk, client))
    pins = client._pin(nodes, ttl) if nodes else []
    return [Persisted(k, pin, client) for k, pin in zip(keys, shape(pins), strict=True)]


class Persisted:
    """A chunk of a Dask collection persisted on dagrt: what Dask's graph holds in its
    place (a duck-typed Dask future: ``__dask_future__`` and its ``key``). Computations
    that need it read its pin (:mod:`dagrt.persist`), found by key; it keeps the pin
    (and so the chunk) alive."""

    __dask_future__ = True
    __slots__ = ("__weakref__", "client", "key", "pin")

    def __init__(self, key: Any, pin: Pin, client: Client) -> None:
        self.key, self.pin, self.client = key, pin, client
        ref = weakref.ref(self, _forget(key))  # (made first: the collector may run here)
        with _PERSISTED_LOCK:
            _PERSISTED.setdefault(key, []).append(ref)

    def result(self) -> Any:
        """The chunk's value, brought here (as a Dask distributed future's ``result``;
        Dask's ``assert_eq`` calls it). From another thread than the client's loop."""
        made = stand_in(self.pin)
        made.key = self.key if isinstance(self.key, str) else repr(self.key)
        return _unwrapped(lambda: _on_client(self.client, [made]))

    def __dask_tokenize__(self) -> Any:
        return ("dagrt-persisted", self.pin.key)

    def __repr__(self) -> str:
        return f"<dagrt.dask.Persisted {self.key!r} {self.pin.key}>"


#: Dask key -> the persisted futures of that key still alive (usually one)
_PERSISTED: dict[Any, list[weakref.ref[Persisted]]] = {}
_PERSISTED_LOCK = threading.RLock()  # (the collector may drop one while it is held)


def _forget(key: Any) -> Callable[[weakref.ref[Persisted]], None]:
    def gone(ref: weakref.ref[Persisted]) -> None:
        with _PERSISTED_LOCK:
            refs = _PERSISTED.get(key)
            if refs is not None:
                with contextlib.suppress(ValueError):
                    refs.remove(ref)
                if not refs:
                    del _PERSISTED[key]

    return gone


def _persisted_pins(dsk: Any, client: Client) -> Callable[[Any], Pin | None]:
    """Where :func:`convert` finds the pins of the persisted chunks a graph reads: the
    :class:`Persisted` futures the collections given hold (Dask's optimizer leaves
    them out of the graph it hands over, as keys it does not have), else those of
    ``client`` still alive (:func:`_persisted_pin`)."""
    held = _held(dsk)

    def pin_of(key: Any) -> Pin | None:
        future = held.get(key)
        return future.pin if future is not None else _persisted_pin(client, key)

    return pin_of


def _held(dsk: Any) -> dict[Any, Persisted]:
    """The :class:`Persisted` futures in a Dask graph or expression, by key: the values
    of its graph mappings (a plain dict, an ``HighLevelGraph``'s materialized layers)
    and of its expressions' operands; lazy layers are not materialized for this, and
    only the types named are looked into (an expression's attributes may compute)."""
    from dask._expr import Expr
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    def inner(value: Any) -> bool:
        return type(value) is dict or isinstance(value, Expr | HighLevelGraph)

    found: dict[Any, Persisted] = {}
    seen: set[int] = set()
    stack = [dsk]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) is dict:
            for value in item.values():
                if isinstance(value, Persisted):
                    found[value.key] = value
                elif isinstance(value, Expr | HighLevelGraph):
                    stack.append(value)
        elif isinstance(item, Expr):
            for operand in item.operands:
                if inner(operand):
                    stack.append(operand)
                elif type(operand) in (list, tuple):
                    stack.extend(o for o in operand if inner(o))
        elif isinstance(item, HighLevelGraph):
            for layer in item.layers.values():
                if isinstance(layer, MaterializedLayer):
                    stack.append(layer.mapping)
    return found


def _persisted_pin(client: Client, key: Any) -> Pin | None:
    """The pin of a chunk of ``key`` that ``client`` persisted and that is still alive:
    the newest whose run has not failed (else the newest), or None. (As Dask
    distributed finds a key among its client's futures: a key names one value.)"""
    with _PERSISTED_LOCK:
        refs = list(_PERSISTED.get(key, ()))
    futures = [f for ref in refs if (f := ref()) is not None and f.client is client]
    for future in reversed(futures):
        made = future.pin.made
        if made is None or not made.done() or made.status == "finished":
            return future.pin
    return futures[-1].pin if futures else None


async def acompute(client: Client, *collections: Any, **kwargs: Any) -> tuple[Any, ...]:
    """``dask.compute(*collections)`` on ``client`` from its own event loop: Dask's
    ``compute`` is synchronous, so it runs in a thread and submits to this loop, which
    stays free meanwhile."""
    from dask.base import compute

    return await asyncio.to_thread(  # type: ignore[no-any-return]
        compute, *collections, scheduler=client.get, **kwargs
    )


@contextlib.contextmanager
def enable(client: Client | None = None) -> Iterator[None]:
    """Route every Dask computation to dagrt while in the block (``client``'s runtime,
    else this process), with the defaults a pool needs: task-based shuffles (Dask's
    default without ``distributed`` writes partd files in the client's folder)."""
    import dask

    previous = _enabled.client
    _enabled.client = client
    scheduler = client.get if client is not None else get
    try:
        with dask.config.set({"scheduler": scheduler, "dataframe.shuffle.method": "tasks"}):
            yield
    finally:
        _enabled.client = previous


class _Enabled(threading.local):
    client: Client | None = None


_enabled = _Enabled()


# --------------------------------------------------------------------------- the tasks


class _Spec:
    """A Dask task and the names of its dependencies, in the order of the values."""

    __slots__ = ("names", "task")

    def __init__(self, task: Any, names: list[Any]) -> None:
        self.task, self.names = task, names

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Spec, (self.task, self.names))


def _call(spec: _Spec, *values: Any) -> Any:
    """Run a Dask task on the values of its dependencies, by the names it uses."""
    values = tuple(v.value if type(v) is _Constant else v for v in values)
    return spec.task(dict(zip(spec.names, values, strict=True)))


def _value_of(constant: _Constant) -> Any:
    return constant.value


_CALLERS: dict[str, TaskFunction[..., Any]] = {}


def _caller(key: Any) -> TaskFunction[..., Any]:
    """The dagrt task that runs Dask tasks of ``key``'s prefix (named by it)."""
    from dask.utils import key_split

    prefix = key_split(key)
    caller = _CALLERS.get(prefix)
    if caller is None:
        caller = _CALLERS[prefix] = task(name=prefix)(_call)
    return caller


_value = task(name="dask-data")(_value_of)


#: a ``DataNode`` whose value holds this many bytes or more (``nbytes``: arrays, frames)
#: becomes a task, instead of travelling in the record of each task that reads it
LARGE_DATA = 64 * 1024


def _large(value: Any) -> bool:
    try:
        size = getattr(value, "nbytes", None)
        if size is None and hasattr(value, "memory_usage"):  # (a pandas DataFrame)
            size = value.memory_usage(deep=False).sum()
        return int(size or 0) >= LARGE_DATA
    except Exception:  # (an nbytes or memory_usage that is not a number of bytes)
        return False


class _Constant:
    """A ``DataNode``'s value, passed to consumers as an argument (opaque to the
    argument walker)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Constant, (self.value,))


def _flat_keys(keys: Any) -> list[Any]:
    out: list[Any] = []
    stack = [keys]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _nested(keys: Any, value_of: Any) -> Any:
    """``keys`` with each key replaced by its value, lists as tuples (no recursion)."""
    if not isinstance(keys, list):
        return value_of(keys)
    stack: list[tuple[Iterator[Any], list[Any]]] = [(iter(keys), [])]
    while True:
        items, done = stack[-1]
        for item in items:
            if isinstance(item, list):
                stack.append((iter(item), []))
                break
            done.append(value_of(item))
        else:
            stack.pop()
            if not stack:
                return tuple(done)
            stack[-1][1].append(tuple(done))


def _compute(nodes: list[Any], client: Client) -> list[Any]:
    """The values of ``nodes`` (in order), on ``client``."""
    if not nodes:
        return []
    got = _on_client(client, nodes)
    return list(got) if len(nodes) > 1 else [got]


#: the client class (``dagrt.client`` sits above this module: it hands it down)
_client_class: Any = None


def uses_client_class(cls: Any) -> Any:
    """Make ``cls`` the client :func:`get` starts when given none (a decorator)."""
    global _client_class
    _client_class = cls
    return cls


class _Background:
    """One in-process client for :func:`get` without one: started at the first call,
    its loop in a daemon thread (Dask's ``compute`` is synchronous), closed at exit."""

    lock = threading.Lock()
    client: Any = None


def _background() -> Client:
    with _Background.lock:
        if _Background.client is None:
            import atexit

            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="dagrt-dask", daemon=True)
            thread.start()
            client = _client_class(processes=False)
            asyncio.run_coroutine_threadsafe(client.__aenter__(), loop).result()

            def close() -> None:
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(client.close(), loop).result(10)
                loop.call_soon_threadsafe(loop.stop)

            atexit.register(close)
            _Background.client = client
        return _Background.client  # type: ignore[no-any-return]


def _on_client(client: Client, nodes: list[Any]) -> Any:
    """``client.compute(*nodes)`` from this thread: the client's loop runs elsewhere
    (a thread of the caller's, e.g. a notebook's); on the loop itself it would wait
    for itself."""
    from .futures import call_on, on_loop

    loop = client._loop
    if loop is None:
        raise RuntimeError("the dagrt client is not started (use `async with Client()`)")
    if on_loop(loop):
        raise RuntimeError(
            "dask.compute is synchronous and this is the dagrt client's event loop: call it"
            " from another thread (await asyncio.to_thread(dask.compute, x,"
            " scheduler=client.get))"
        )
    return call_on(loop, lambda: client.compute(*nodes))
