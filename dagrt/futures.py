"""``RunFuture``: the handle of one submitted run, and helpers over many.

A ``RunFuture`` is awaitable from its client's event loop (and from another one:
woken from its own) and also answers ``result(timeout=)`` from other threads, like
:class:`concurrent.futures.Future`.
Awaiting it never cancels the run (the await is shielded); ``cancel()`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from .graph import DAG

__all__ = ["RunFuture", "as_completed", "gather"]

T = TypeVar("T")

Status = Literal["pending", "finished", "error", "cancelled"]


class RunFuture:
    """The eventual result of one run (what :meth:`dagrt.Client.submit` returns)."""

    __slots__ = (
        "__weakref__",
        "_cancel_hook",
        "_done",
        "_fut",
        "_loop",
        "_priority",
        "_xs",
        "dag",
        "run_id",
    )

    def __init__(self, run_id: str, dag: DAG | None, loop: asyncio.AbstractEventLoop) -> None:
        self.run_id = run_id
        self.dag = dag
        self._xs: tuple[Any, ...] | None = None  # what was submitted (Client.retry)
        self._priority = 0  # the run's priority (Client.retry keeps it)
        self._loop = loop
        self._fut: asyncio.Future[Any] = loop.create_future()
        self._done = threading.Event()
        self._cancel_hook: Callable[[], None] | None = None
        self._fut.add_done_callback(lambda _: self._done.set())

    # -- state -------------------------------------------------------------

    def done(self) -> bool:
        return self._done.is_set()

    def cancelled(self) -> bool:
        return self._done.is_set() and self._fut.cancelled()

    @property
    def status(self) -> Status:
        if not self._done.is_set():
            return "pending"
        if self._fut.cancelled():
            return "cancelled"
        return "error" if self._fut.exception() is not None else "finished"

    def __repr__(self) -> str:
        return f"<RunFuture {self.run_id} {self.status}>"

    # -- results -------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop or running is None:  # (the common case)
            return asyncio.shield(self._fut).__await__()
        return self._from(running).__await__()

    async def _from(self, loop: asyncio.AbstractEventLoop) -> Any:
        """Awaited on another event loop than its run's (another client's, or a
        thread's): woken from the run's loop when it ends."""
        if not self._done.is_set():
            woken = loop.create_future()

            def wake() -> None:
                if not woken.done():
                    woken.set_result(None)

            def ended(_: object) -> None:
                with contextlib.suppress(RuntimeError):  # (the waiting loop is closed)
                    loop.call_soon_threadsafe(wake)

            try:
                self._loop.call_soon_threadsafe(self._fut.add_done_callback, ended)
            except RuntimeError:  # (its loop is closed: the run never ends now)
                if not self._done.is_set():
                    raise RuntimeError(
                        f"run {self.run_id} belongs to an event loop that is closed"
                    ) from None
            else:
                await woken
        return self._fut.result()

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run ends and return its value (or raise its error).

        Inside the event loop that runs the client, use ``await future`` instead.
        """
        self._wait(timeout)
        return self._fut.result()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The run's error, or ``None`` if it succeeded (blocks like :meth:`result`)."""
        self._wait(timeout)
        return self._fut.exception()

    def _wait(self, timeout: float | None) -> None:
        if self._done.is_set():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError(
                "RunFuture.result() would block the event loop that runs this run; "
                "use `await future` (or `await client.gather(...)`) instead"
            )
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} did not finish within {timeout} s")

    def add_done_callback(self, fn: Callable[[RunFuture], object]) -> None:
        """Call ``fn(self)`` on the event loop once the run ends."""
        self._fut.add_done_callback(lambda _: fn(self))

    # -- cancellation ------------------------------------------------------

    def cancel(self) -> bool:
        """Stop the run: no more of its tasks start, and its data is dropped.

        Returns ``False`` if the run had already ended. Thread-safe.
        """
        if self._done.is_set():
            return False
        if on_loop(self._loop):
            self._cancel_now()
        else:
            self._loop.call_soon_threadsafe(self._cancel_now)
        return True

    def _cancel_now(self) -> None:
        if self._fut.done():
            return
        hook = self._cancel_hook
        if hook is not None:
            hook()  # the runner notices and marks the future cancelled
        else:
            self._fut.cancel()

    # -- used by the runner -----------------------------------------------------

    def _set_result(self, value: Any) -> None:
        if not self._fut.done():
            self._fut.set_result(value)

    def _set_exception(self, exc: BaseException) -> None:
        if not self._fut.done():
            self._fut.set_exception(exc)
            # Retrieved or not, a failed run is reported where it is awaited;
            # mark it retrieved so asyncio does not log it again at exit.
            self._fut.exception()

    def _set_cancelled(self) -> None:
        self._fut.cancel()


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this thread is running ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def call_on(loop: asyncio.AbstractEventLoop, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The value of ``await make()`` on ``loop`` (a client's), from another thread,
    which blocks until it is there."""
    if loop.is_closed() or not loop.is_running():
        raise RuntimeError("the dagrt client's event loop is not running (its client is gone)")
    return asyncio.run_coroutine_threadsafe(make(), loop).result()


def _check_futures(futures: Iterable[RunFuture], where: str) -> list[RunFuture]:
    if isinstance(futures, RunFuture):
        raise TypeError(f"{where}() takes an iterable of RunFuture objects, got a single RunFuture")
    try:
        futs = list(futures)
    except TypeError:
        raise TypeError(
            f"{where}() takes an iterable of RunFuture objects, got {type(futures).__name__}"
        ) from None
    for f in futs:
        if not isinstance(f, RunFuture):
            raise TypeError(f"{where}() takes RunFuture objects, got {type(f).__name__} {f!r}")
    return futs


async def gather(futures: Iterable[RunFuture], *, return_exceptions: bool = False) -> list[Any]:
    """Wait for all ``futures``; their values in the same order.

    The first failure is raised at once (the other runs go on) unless
    ``return_exceptions`` is true, in which case errors take their place in the list.
    """
    futs = _check_futures(futures, "gather")
    if not futs:
        return []
    inner = [f._fut for f in futs]
    pending = set(inner)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        if return_exceptions:
            continue
        for f in inner:  # the first failure, in the order given
            if f in done and (f.cancelled() or f.exception() is not None):
                f.result()  # raises
    if not return_exceptions:
        return [f.result() for f in inner]
    return [_outcome(f) for f in inner]


def _outcome(f: asyncio.Future[Any]) -> Any:
    if f.cancelled():
        return asyncio.CancelledError("run cancelled")
    exc = f.exception()
    return exc if exc is not None else f.result()


async def as_completed(futures: Iterable[RunFuture]) -> AsyncIterator[RunFuture]:
    """Yield each future as soon as its run ends (success, failure or cancellation)."""
    futs = _check_futures(futures, "as_completed")
    queue: asyncio.Queue[RunFuture] = asyncio.Queue()
    for f in futs:
        f.add_done_callback(queue.put_nowait)
    for _ in range(len(futs)):
        yield await queue.get()
