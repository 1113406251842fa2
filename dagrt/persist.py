"""Values kept in the pool between runs: :meth:`dagrt.Client.persist`.

``client.persist(x)`` starts a run of ``x`` whose outputs are not read back: each is
kept under a key of its own, a *pin* (``persisted-<hex>``), where the runtime keeps cache
entries: on the server (``dagrt:cache:persisted-<hex>``, sealed as cache entries are,
with a time to live) for worker processes, the object itself in the in-process runtime.
The call returns at once a *stand-in* for each value: a node of :data:`stand_in` whose
argument is the :class:`Pin`. Later graphs use it as any node. A run that reads a pin
first waits for the run that makes it (its error, if it failed, is the reader's), then
takes the entry as a task found in the cache (the same copy into the run's output key,
the same seal check): the stand-in never runs. If the entry is gone it does run, and
raises :class:`~dagrt.PersistedLostError`.

A pin is released (its entry deleted) when the last object holding it is
garbage-collected (the stand-in node, or a Dask collection persisted on dagrt) or when
its client closes; a client that dies leaves its pins to their time to live. Releases
from other threads (the garbage collector runs anywhere) are batched onto the client's
loop (:class:`Pins`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from . import keys as K
from .exceptions import PersistedLostError, TaskError
from .tasks import task

if TYPE_CHECKING:
    import anyio.abc

    from .futures import RunFuture
    from .graph import DAG, Node

__all__ = [
    "DAY",
    "Pin",
    "Pins",
    "copied",
    "copied_error",
    "makers",
    "persist_tree",
    "pinned_reads",
    "read_failure",
    "stand_in",
    "wait_made",
]

log = logging.getLogger(__name__)

DAY = 86400.0  #: a pin's default time to live on a server (seconds)


class Pin:
    """One persisted value: its key (``persisted-<hex>``) and the run that makes it
    (``None`` once unpickled elsewhere: only the key travels)."""

    __slots__ = ("__weakref__", "key", "made")

    def __init__(self, key: str, made: RunFuture | None = None) -> None:
        self.key = key
        self.made = made

    def __reduce__(self) -> tuple[Any, ...]:
        return (Pin, (self.key,))

    def __repr__(self) -> str:
        return f"Pin({self.key!r})"


@task(name="persisted", cache=False)
def stand_in(pin: Pin) -> NoReturn:
    """The task whose node stands for a persisted value: it runs only when the value is
    gone. (Module level under its own name: it pickles by reference, so that a
    stand-in that travels is still one.)"""
    raise PersistedLostError(
        f"the persisted value {pin.key!r} is gone: released (its handle was"
        " garbage-collected or its client closed), past its time to live, too large"
        " for the server, or persisted on another server than this run's"
    )


@task(name="persisted-copy", cache=False)
def copied(value: Any) -> Any:
    """The task that persists anew what a stand-in of another client (or one that came
    here pickled) stands for: its value, read as any stand-in's and kept under a pin
    of this client's own."""
    return value


def pinned_reads(dag: DAG) -> dict[int, str]:
    """The stand-ins of ``dag``: task index -> its pin's key."""
    if stand_in not in dag._distinct:
        return {}
    nodes = dag._nodes
    return {i: nodes[i]._leaves[0].key for i, f in enumerate(dag._funcs) if f is stand_in}


def makers(dag: DAG) -> list[RunFuture]:
    """The runs that make the persisted values ``dag`` reads (known to this process:
    not the pins that came here pickled)."""
    if stand_in not in dag._distinct:
        return []
    nodes = dag._nodes
    made = {
        id(m): m
        for i, f in enumerate(dag._funcs)
        if f is stand_in and (m := nodes[i]._leaves[0].made) is not None
    }
    return list(made.values())


async def wait_made(dag: DAG, within: Collection[str] = ()) -> None:
    """Wait for the runs that make what ``dag`` reads; raise the error one ended with
    (a cancelled one: :class:`~dagrt.PersistedLostError`), ended already or not.
    ``within``: the runs ``dag`` is part of (a graph a task returned: its run and
    theirs); a value one of them persists cannot be waited for (it is made when they
    end): :class:`~dagrt.PersistedLostError` at once, not a wait for ever."""
    for made in makers(dag):
        if made.run_id in within:
            raise PersistedLostError(
                f"this graph reads a value that run {made.run_id} persists, and it is part"
                " of that run: the value is made only when the run ends"
            )
        failure: BaseException | None = None
        try:
            await made
        except asyncio.CancelledError as exc:
            if not made.cancelled():  # (this wait itself is cancelled)
                raise
            failure = exc
        except Exception as exc:
            failure = exc
        if failure is not None:
            raise read_failure(made, failure)


def read_failure(made: RunFuture, exc: BaseException) -> BaseException:
    """What a reader of a value that run ``made`` persists raises, that run having
    ended with ``exc``: :class:`~dagrt.PersistedLostError` if it was cancelled, else a
    copy of its error (each reader's traceback is its own: :func:`copied_error`)."""
    if isinstance(exc, asyncio.CancelledError):
        return PersistedLostError(
            f"run {made.run_id}, which was persisting a value read here, was cancelled"
        )
    return copied_error(exc)


def copied_error(exc: BaseException) -> BaseException:
    """``exc`` again, as a copy of its own (its arguments, attributes, cause, notes and
    traceback as they are; the original exception a :class:`~dagrt.TaskError` carries
    copied too), so that each reader of one failure raises, chains and annotates an
    object of its own. Made without calling the class's ``__init__`` again (which may
    format its message twice, or want arguments ``args`` does not hold); an exception
    that cannot be made so is given as it is."""
    try:
        reduced: Any = exc.__reduce__()  # (a built-in's arguments: an OSError's file name)
        make, args = reduced[0], reduced[1]
        again: BaseException
        init = inspect.getattr_static(make, "__init__", None)
        if isinstance(make, type) and isinstance(init, types.FunctionType):
            again = make.__new__(make, *args)  # (its own __init__ is not run twice)
        else:  # (a built-in's, a StopIteration's value say, or a rebuilding function)
            again = make(*args)
        if not isinstance(again, BaseException):  # pragma: no cover - an odd __reduce__
            return exc
        if len(reduced) > 2 and isinstance(reduced[2], dict):
            again.__dict__.update(reduced[2])
        for klass in type(exc).__mro__:  # (and what a class keeps in slots)
            slots = getattr(klass, "__slots__", ())
            for name in [slots] if isinstance(slots, str) else slots:
                if name not in ("__dict__", "__weakref__") and hasattr(exc, name):
                    setattr(again, name, getattr(exc, name))
    except Exception:
        return exc
    if isinstance(getattr(exc, "__notes__", None), list):
        again.__notes__ = list(exc.__notes__)  # (a reader's add_note is its own)
    again.__cause__, again.__suppress_context__ = exc.__cause__, exc.__suppress_context__
    again.__context__ = exc.__context__
    if isinstance(again, TaskError) and again.exception is not None:
        again.exception = copied_error(again.exception)
    return again.with_traceback(exc.__traceback__)


def persist_tree(
    xs: tuple[Any, ...],
    start: Callable[[list[Node]], list[Pin]],
    held: Callable[[Node], bool] = lambda node: False,
) -> Any:
    """``xs`` (trees of nodes and constants) with each node replaced by the stand-in of
    its persisted value (one argument: its tree; several: a tuple). ``start`` starts
    the run that persists the distinct nodes given and returns their pins. A stand-in
    ``held`` (by the persisting client: :meth:`Pins.held`) stays as it is, and so does
    a tree without nodes to persist."""
    from .graph import DAG, Node
    from .pytree import flatten, unflatten

    leaves, treedef = flatten(xs)
    if any(isinstance(leaf, DAG) for leaf in leaves):
        raise TypeError("persist() takes nodes or trees of them, not a DAG: pass its outputs")
    distinct: dict[int, Node] = {}
    for leaf in leaves:
        if isinstance(leaf, Node) and not held(leaf):
            distinct.setdefault(id(leaf), leaf)
    if distinct:
        pins = start(list(distinct.values()))
        made = {n: stand_in(pin) for n, pin in zip(distinct, pins, strict=True)}
        leaves = [made.get(id(leaf), leaf) for leaf in leaves]
    out = unflatten(treedef, leaves)
    return out[0] if len(xs) == 1 else out


class Pins:
    """A client's pins: made on its loop (:meth:`persist`), released when their holders
    are gone (from any thread, batched onto the loop; a pin whose run has not ended yet
    is released when it ends), all deleted when it closes."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task_group: anyio.abc.TaskGroup,
        release: Callable[[list[str]], Awaitable[None]],
        start: Callable[[DAG, dict[int, tuple[str, float]]], RunFuture],
    ) -> None:
        self.live: dict[str, RunFuture] = {}  # pin -> the run that makes it
        self._loop = loop
        self._task_group = task_group
        self._release = release
        self._start = start
        # (re-entrant: the collector may run a finalizer while this thread holds it)
        self._lock = threading.RLock()
        self._dropped: list[str] = []
        self._scheduled = False
        self._closed = False

    def persist(self, nodes: list[Node], ttl: float) -> list[Pin]:
        """Start the run that keeps the values of ``nodes`` (distinct) for ``ttl``
        seconds (on the client's loop); their pins, in order. A stand-in of this
        client's keeps its own pin (and time to live); one of another client's, or one
        that came here pickled, is copied under a pin of its own (its value read as any
        stand-in's: it lives as long as this client holds it). Nodes that are one task
        of the run share one pin."""
        from .graph import plan_outputs

        if self._closed:
            raise RuntimeError("the client is closing: nothing more is persisted")
        # what the run computes for each node (None: its own pin is kept)
        targets = [None if self.held(n) else copied(n) if n.func is stand_in else n for n in nodes]
        fresh = [t for t in targets if t is not None]
        by_index: dict[int, Pin] = {}
        pins: Iterator[Pin] = iter(())
        if fresh:
            dag, _ = plan_outputs(tuple(fresh))
            assert dag is not None
            for i in dag._output_index:
                by_index.setdefault(i, Pin(K.new_pin()))
            made = self._start(dag, {i: (pin.key, ttl) for i, pin in by_index.items()})
            for pin in by_index.values():
                pin.made = made
                self.live[pin.key] = made
                weakref.finalize(pin, self._gone, pin.key).atexit = False
            pins = iter([by_index[i] for i in dag._output_index])
        return [
            n._leaves[0] if t is None else next(pins) for n, t in zip(nodes, targets, strict=True)
        ]

    def held(self, node: Node) -> bool:
        """Is ``node`` a stand-in of a pin this client holds (this very pin: not one
        that came back pickled, whose lifetime is not this client's to keep)?"""
        if node.func is not stand_in:
            return False
        pin = node._leaves[0]
        return isinstance(pin, Pin) and pin.made is not None and self.live.get(pin.key) is pin.made

    def _gone(self, key: str) -> None:
        """Its last holder is gone (any thread, at any allocation): release it soon."""
        if self._closed:
            return
        with self._lock:
            self._dropped.append(key)
            wake, self._scheduled = not self._scheduled, True
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._flush)
            except RuntimeError:  # (the loop is closed: the client is gone)
                pass

    def _flush(self) -> None:
        with self._lock:
            keys, self._dropped, self._scheduled = self._dropped, [], False
        if self._closed:
            return
        now = []
        for key in keys:
            made = self.live.get(key)
            if made is None:
                continue
            if made.done():
                now.append(key)
            else:  # (its run may still write it: released once it ends)
                made.add_done_callback(functools.partial(self._ended, key))
        if now:
            self._task_group.start_soon(self._delete, now, name="dagrt release pins")

    def _ended(self, key: str, made: RunFuture) -> None:
        self._gone(key)

    async def _delete(self, keys: list[str]) -> None:
        try:
            await self._release(keys)
        except Exception as exc:  # (they expire by their time to live anyway)
            log.warning("could not release %d persisted values: %s", len(keys), exc)
        for key in keys:  # (until deleted they are live: closing deletes them too)
            self.live.pop(key, None)

    async def close(self) -> None:
        """Release every pin still held (the client closes: its runs are over)."""
        self._closed = True
        keys, self.live = sorted(self.live), {}
        if keys:
            await self._delete(keys)
