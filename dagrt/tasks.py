"""``@task`` and :class:`TaskFunction`: plain functions whose calls build graph nodes.

``@task`` (bare, or with options: ``name``, ``retries``, ``retry_delay``, ``threads``,
``locality``) wraps a
function; calling the result runs nothing and returns a :class:`~dagrt.graph.Node`
(see :mod:`dagrt.graph`). Whether a function is ``async`` is decided once, here;
arguments are checked against its signature at the call site, so a wrong call fails
where it is written, not later on a worker. A module-level task pickles by
reference, anything else by value.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .graph import Node
from .locality import LocalityOptions
from .resources import check_priority, check_resources

__all__ = ["TaskFunction", "is_async_callable", "retry_wait", "task"]

P = ParamSpec("P")
R = TypeVar("R")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def _key_prefix(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("_") or "task"


def is_async_callable(fn: Any) -> bool:
    """Decide once whether calling ``fn`` returns a coroutine."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the method of callable objects
    return call is not None and not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def retry_wait(retry_delay: float, failures: int) -> float:
    """Seconds before the attempt that follows a task's ``failures``-th failure:
    ``retry_delay`` doubled with each failure (every runtime waits this)."""
    return retry_delay * (2 ** (failures - 1))


def _default_name(fn: Any) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "lambda" if name == "<lambda>" else str(name)


class _ArgCheck:
    """A cheap check of call arguments against the function's signature.

    The common case (positional arguments within range) costs a comparison;
    anything else goes through ``Signature.bind`` for Python's own message.
    """

    __slots__ = ("max_pos", "min_pos", "sig")

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none
            self.sig = None
            return
        self.sig = sig
        kinds = [p.kind for p in sig.parameters.values()]
        positional = [
            p
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        required_kwonly = any(
            p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in sig.parameters.values()
        )
        self.min_pos = sum(1 for p in positional if p.default is p.empty)
        self.max_pos = 1 << 30 if inspect.Parameter.VAR_POSITIONAL in kinds else len(positional)
        if required_kwonly:
            self.min_pos = 1 << 30  # always take the full check

    def __call__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.sig is None:
            return
        if not kwargs and self.min_pos <= len(args) <= self.max_pos:
            return
        try:
            self.sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}(): {exc}") from None


class TaskFunction(Generic[P, R]):
    """A function whose calls build :class:`Node` objects instead of running.

    Made by :func:`task`. ``fn`` is the plain function (call it directly to run
    it eagerly); ``options(...)`` returns a copy with other options.
    """

    __slots__ = (
        "__dict__",
        "_check",
        "_prefix",
        "cache",
        "fn",
        "is_async",
        "locality",
        "name",
        "priority",
        "resources",
        "retries",
        "retry_delay",
        "threads",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        threads: int | None = None,
        locality: LocalityOptions | dict[str, Any] | bool | None = None,
        timeout: float | None = None,
        cache: bool | float | None = None,
        resources: Mapping[str, float | str] | None = None,
        priority: int | None = None,
    ) -> None:
        if isinstance(fn, TaskFunction):  # re-wrapping a task takes its plain function
            fn = fn.__dict__["__wrapped__"]
        if not callable(fn):
            raise TypeError(f"@dagrt.task needs a callable, got {type(fn).__name__} {fn!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"task name must be a non-empty string, got {name!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if (
            isinstance(retry_delay, bool)
            or not isinstance(retry_delay, int | float)
            or not retry_delay >= 0
        ):
            raise ValueError(f"retry_delay must be a number of seconds >= 0, got {retry_delay!r}")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
        self.fn = fn
        self.name = name or _default_name(fn)
        try:  # the name travels in records and the event log as UTF-8
            self.name.encode()
        except UnicodeEncodeError:
            raise ValueError(
                f"task name {self.name!r} cannot be written as UTF-8 (a lone surrogate?)"
            ) from None
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self.threads = threads
        self.timeout = check_timeout(timeout, "timeout")
        self.cache = check_cache(cache)
        self.resources = check_resources(resources)
        self.priority = check_priority(priority) or 0
        # only the fields given count: the others are the run's (Client(locality=...))
        self.locality = None if locality is None else LocalityOptions.of(locality)
        self.is_async = is_async_callable(fn)
        self._check = _ArgCheck(fn)
        self._prefix = _key_prefix(self.name)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __call__(self, *args: Any, **kwargs: Any) -> Node:
        # Any argument may be a Node standing for a value of the declared type, so
        # the function's parameter types (P) cannot apply to a call.
        self._check(self.name, args, kwargs)
        return Node._build(self, args, kwargs)

    def options(
        self,
        *,
        name: str | None = None,
        retries: int | None = None,
        retry_delay: float | None = None,
        threads: int | None = None,
        locality: LocalityOptions | dict[str, Any] | bool | None = None,
        timeout: float | None = None,
        cache: bool | float | None = None,
        resources: Mapping[str, float | str] | None = None,
        priority: int | None = None,
    ) -> TaskFunction[P, R]:
        """A copy of this task function with some options replaced (``resources={}``:
        none)."""
        return TaskFunction(
            self.fn,
            name=self.name if name is None else name,
            retries=self.retries if retries is None else retries,
            retry_delay=self.retry_delay if retry_delay is None else retry_delay,
            threads=self.threads if threads is None else threads,
            locality=self.locality if locality is None else locality,
            timeout=self.timeout if timeout is None else timeout,
            cache=self.cache if cache is None else cache,
            resources=self.resources if resources is None else resources,
            priority=self.priority if priority is None else priority,
        )

    def __repr__(self) -> str:
        kind = "async task" if self.is_async else "task"
        return f"<dagrt {kind} {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # A module-level task (`@task def f` in an importable module) is pickled
        # by reference, like any function; anything else by value (cloudpickle
        # then carries the function's code).
        module = getattr(self, "__module__", None)
        qualname = getattr(self, "__qualname__", None)
        if module and qualname and module != "__main__" and "<locals>" not in qualname:
            try:
                found = _lookup(module, qualname)
            except (ImportError, AttributeError):
                found = None
            if found is self:
                return (_lookup, (module, qualname))
        return (
            _make_task_function,
            (
                self.fn,
                self.name,
                self.retries,
                self.retry_delay,
                self.threads,
                self.locality,
                self.timeout,
                self.cache,
                self.resources,
                self.priority,
            ),
        )


def check_timeout(value: object, what: str) -> float | None:
    """``value`` as a timeout in seconds (a number > 0, or None); else a ValueError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{what} must be a number of seconds > 0 or None, got {value!r}")
    return None if value == float("inf") else float(value)


def check_cache(value: object) -> bool | float | None:
    """``@task(cache=...)``: ``True`` (cache, for the client's policy's time), a number of
    seconds > 0 (cache for that long), ``False`` (never, whatever the policy) or None
    (as the policy says); else a ValueError."""
    if value is None or isinstance(value, bool):
        return value
    if not isinstance(value, int | float) or not value > 0:
        raise ValueError(
            f"cache must be True, False, None or a number of seconds > 0, got {value!r}"
        )
    return float(value)


def _lookup(module: str, qualname: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _make_task_function(
    fn: Callable[P, R],
    name: str | None,
    retries: int,
    retry_delay: float,
    threads: int | None = None,
    locality: LocalityOptions | dict[str, Any] | bool | None = None,
    timeout: float | None = None,
    cache: bool | float | None = None,
    resources: Mapping[str, float | str] | None = None,
    priority: int | None = None,
) -> TaskFunction[P, R]:
    """A task function from its options in order (what a pickled one is made again
    from, and what ``@task(...)`` makes)."""
    return TaskFunction(
        fn,
        name=name,
        retries=retries,
        retry_delay=retry_delay,
        threads=threads,
        locality=locality,
        timeout=timeout,
        cache=cache,
        resources=resources,
        priority=priority,
    )


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...
@overload
def task(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    threads: int | None = None,
    locality: LocalityOptions | dict[str, Any] | bool | None = None,
    timeout: float | None = None,
    cache: bool | float | None = None,
    resources: Mapping[str, float | str] | None = None,
    priority: int | None = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    threads: int | None = None,
    locality: LocalityOptions | dict[str, Any] | bool | None = None,
    timeout: float | None = None,
    cache: bool | float | None = None,
    resources: Mapping[str, float | str] | None = None,
    priority: int | None = None,
) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Make ``fn`` a task: calling it builds a :class:`Node` instead of running.

    Use bare (``@task``) or with options (``@task(name="load", retries=2)``).
    ``retries`` re-runs a failing call up to that many more times, waiting
    ``retry_delay * 2**(attempt-1)`` seconds between attempts. ``async def``
    functions are awaited on the event loop; plain functions run in threads.
    ``threads``: native threads (BLAS, OpenMP) the call may use, beyond the budget every
    task gets (:mod:`dagrt.native_threads`): on a worker it also takes that many of the
    worker's task threads, so that fewer tasks run beside it.
    ``locality``: :class:`~dagrt.LocalityOptions` (or a dict of its fields, or ``False``
    for ``enabled=False``) for what happens at this task's completion on a worker:
    whether its output may stay in memory, whether its children may run where it ran
    (kept, clustered, waited for) and whether a chain may be fused from it. The fields
    given replace the run's (``Client(locality=...)``); the others stay the run's.
    ``timeout``: seconds one call may take (default: the client's ``task_timeout``, or
    none); past it the attempt fails with :class:`~dagrt.TaskTimeout` (retried while
    retries are left; then the run fails with :class:`~dagrt.TaskTimeoutError`). An
    ``async def`` task is cancelled; a sync task's thread cannot be stopped: its result
    is discarded, and its thread stays busy until it returns.
    ``cache``: keep the task's output under a key made of the function's content and
    its inputs (:mod:`dagrt.cachekeys`), and reuse it in later runs, across clients and
    restarts, instead of running the task: ``True`` (for the client's policy's time,
    :class:`~dagrt.CacheOptions`), a number of seconds, or ``False`` (never, even when
    the client caches every task).
    ``resources``: what one call holds while it runs, ``{"gpu": 1, "memory": "4GB"}``
    (numbers > 0, or sizes): it runs only on a worker that has them all
    (``dagrt worker --resources gpu=2,memory=32GB``), and a worker runs at once no more
    such calls than its amounts allow (:mod:`dagrt.resources`); a run whose task no live
    worker can hold fails with :class:`~dagrt.ResourceError`.
    ``priority``: an int (default 0); ready work of higher priority is taken first (the
    run's ``compute(..., priority=)`` is added to it), without starving lower priorities.
    """

    def make(f: Callable[P, R]) -> TaskFunction[P, R]:
        return _make_task_function(
            f, name, retries, retry_delay, threads, locality, timeout, cache, resources, priority
        )

    return make if fn is None else make(fn)
