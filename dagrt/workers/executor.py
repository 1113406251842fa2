"""Calling task functions: on the loop, in threads, or inline when they are tiny.

``async def`` functions are awaited on the worker's event loop. Sync functions
run in threads bounded by one ``CapacityLimiter`` per worker, so the loop stays
free, except functions this worker has measured to be tiny: a hop to a thread
costs tens of microseconds, more than a task like ``add`` itself, so once a
function's last ``INLINE_AFTER`` calls have each taken under ``INLINE_MAX``
seconds, it is called inline. A call slower than ``INLINE_BAN`` sends it back
to threads (it may earn its way back); two such calls in a row, or one slower
than ``INLINE_NEVER``, send it to threads for good. Times are wall clock (a
function that sleeps blocks the loop as much as one that computes), so one slow
reading may be a tiny call that the OS paused: banning on that alone once put a
worker that shared its cores with a busy browser on the thread path for every
later ``add`` (ten times its CPU per task, for the rest of its life).
Serializing a result happens where the call ran.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from .. import native_threads
from ..exceptions import SerializationError, TaskTimeout, exception_type_name, user_traceback
from ..expand import has_graph
from ..graph import GraphInResult, finding_graphs
from ..outcomes import plain_exception
from ..pytree import unflatten
from ..records import TaskRecord
from ..serialize import Frame, dumps, dumps_frame
from ..tasks import is_async_callable, retry_wait

__all__ = ["Executor", "Outcome", "error_record", "permanent"]

INLINE_MAX = 2e-4  # seconds: calls shorter than this may run on the loop
INLINE_BAN = 5e-3  # seconds: a call longer than this sends the function back to threads
INLINE_NEVER = 0.1  # seconds: one call longer than this and it stays in threads for good
INLINE_AFTER = 3  # fast calls in a row before a function may run inline


@dataclass
class _Profile:
    """What this worker has measured of one sync function."""

    calls: int = 0  # fast calls in a row
    slow: int = 0  # calls slower than INLINE_BAN in a row
    inline: bool = False
    banned: bool = False

    def measured(self, elapsed: float) -> None:
        """Take one call's wall-clock time into account."""
        if elapsed > INLINE_BAN:
            self.inline = False
            self.calls = 0
            self.slow += 1
            self.banned = self.banned or self.slow >= 2 or elapsed > INLINE_NEVER
            return
        self.slow = 0
        if elapsed > INLINE_MAX:
            self.calls = 0
            self.inline = False
        elif not self.banned:
            self.calls += 1
            self.inline = self.calls >= INLINE_AFTER


@dataclass
class Outcome:
    """The result of running one task (after its retries)."""

    ok: bool
    value: Any = None
    frame: bytes | Frame | None = b""  # None: the value holds a graph to run (dagrt.expand)
    error: BaseException | None = None
    traceback: str = ""
    attempt: int = 1
    started: float = 0.0  # when the last attempt's call began (in its thread)
    ended: float = 0.0
    attempt_started: float = 0.0  # when the last attempt began (before waiting for a thread)
    stopped: bool = False  # not called: its run ended while it waited (see ``alive``)
    profile: dict[str, float] = field(default_factory=dict)


def build_arguments(rec: TaskRecord, values: list[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's ``(args, kwargs)``: the record's leaves with parent values in place."""
    assert rec.leaves is not None
    leaves = list(rec.leaves)
    slots = rec.slots
    for j in range(0, len(slots), 2):
        leaves[slots[j]] = values[slots[j + 1]]
    if rec.treedef is True:
        return tuple(leaves), {}
    args, kwargs = unflatten(rec.treedef, leaves)
    return args, kwargs


def error_record(
    rec: TaskRecord,
    exc: BaseException,
    tb: str,
    *,
    worker: str,
    attempt: int,
    run_id: str,
) -> dict[str, Any]:
    """The JSON error record of a failed task: the original exception pickled if
    possible, and its type and plain arguments if it has only plain ones (a client that
    cannot check the record rebuilds it from those: :func:`dagrt.outcomes.exception_of`)."""
    record: dict[str, Any] = {
        "task": rec.key,
        "index": rec.index,
        "name": rec.name,
        "exc_type": exception_type_name(type(exc)),
        "message": str(exc),
        "traceback": tb,
        "worker": worker,
        "attempt": attempt,
        "run_id": run_id,
    }
    try:
        record["exception"] = base64.b64encode(dumps(exc)).decode()
    except Exception:  # an exception that does not pickle still has its text
        pass
    plain = plain_exception(exc)
    if plain is not None:
        record["plain"] = plain
    return record


class Executor:
    """Runs task functions for one worker."""

    def __init__(self, threads: int, native: int = 1) -> None:
        self.threads = threads
        self.native = native  # native threads per task thread (the budget)
        self.limiter = anyio.CapacityLimiter(threads)
        self._gathering = anyio.Lock()  # one wide task gathers its threads at a time
        self.in_threads = 0  # calls running in threads now (abandoned ones included)
        # calls past their timeout still running in their threads (each holds a thread)
        self.stuck = 0
        # told each time the number of stuck calls changes (the worker's health)
        self.on_stuck: Callable[[int], None] | None = None
        self._counting = threading.Lock()
        self._profiles: dict[int, _Profile] = {}
        self._async: dict[int, bool] = {}

    def _is_async(self, fn: Callable[..., Any]) -> bool:
        key = id(fn)
        known = self._async.get(key)
        if known is None:
            known = self._async[key] = is_async_callable(fn) or inspect.isasyncgenfunction(fn)
        return known

    def inline(self, fn: Callable[..., Any]) -> bool:
        """Has this sync function been measured tiny enough to call on the loop?"""
        profile = self._profiles.get(id(fn))
        return profile is not None and profile.inline

    def call_inline(
        self, fn: Callable[..., Any], rec: TaskRecord, values: list[Any]
    ) -> tuple[Any, bytes | Frame | None]:
        """Call a tiny function right here; its value and serialized frame (None: the
        value holds a graph to run)."""
        args, kwargs = build_arguments(rec, values)
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        self._profiles[id(fn)].measured(time.perf_counter() - t0)
        return value, result_frame(value, rec)

    async def run(
        self,
        fn: Callable[..., Any],
        rec: TaskRecord,
        values: list[Any],
        on_retry: Callable[[TaskRecord, BaseException, str, int], None] | None = None,
        *,
        attempt: int = 1,
        retries: int | None = None,
        on_attempt: Callable[[int], None] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> Outcome:
        """Call ``fn`` for ``rec`` with its retries; serialize the result where it ran.

        ``attempt`` numbers the first call (a task taken over from a worker that died
        goes on counting); ``retries`` is how many more calls may follow a failure
        (default: the task's own). ``on_retry`` hears each failure that another
        attempt follows, ``on_attempt`` each attempt after the first as it begins.
        ``alive`` is asked as the call is about to begin (a thread is free): False, and
        the task is not called (its run ended while it waited).
        """
        left = rec.retries if retries is None else retries
        while True:
            began = time.time()
            started = began
            try:
                args, kwargs = build_arguments(rec, values)
                if rec.timeout is None:
                    value, frame, started, ended = await self._call(fn, args, kwargs, rec, alive)
                else:
                    value, frame, started, ended = await self._call_timed(
                        fn, args, kwargs, rec, alive
                    )
            except _RunEnded:
                return Outcome(False, attempt=attempt, stopped=True)
            except Exception as exc:
                tb = user_traceback(exc)
                if left > 0 and not permanent(exc):
                    if on_retry is not None:
                        on_retry(rec, exc, tb, attempt)
                    failures = rec.retries - left + 1  # backoff doubles with each failure
                    left -= 1
                    await anyio.sleep(retry_wait(rec.retry_delay, failures))
                    attempt += 1
                    if on_attempt is not None:
                        on_attempt(attempt)
                    continue
                return Outcome(
                    False,
                    error=exc,
                    traceback=tb,
                    attempt=attempt,
                    started=started,
                    ended=time.time(),
                    attempt_started=began,
                )
            return Outcome(
                True,
                value,
                frame,
                attempt=attempt,
                started=started,
                ended=ended,
                attempt_started=began,
            )

    async def _call_timed(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        rec: TaskRecord,
        alive: Callable[[], bool] | None,
    ) -> tuple[Any, bytes | Frame | None, float, float]:
        """:meth:`_call` within the task's timeout, counted from when the call begins
        (waiting for a thread is not counted), else :class:`TaskTimeout`. An async call
        is cancelled; a thread cannot be: it runs on, its result dropped, and it holds a
        task thread (a token of the limiter) until it returns."""
        assert rec.timeout is not None
        call = _Timed(asyncio.get_running_loop())
        task = asyncio.ensure_future(self._call(fn, args, kwargs, rec, alive, call))
        try:
            began = asyncio.ensure_future(call.began.wait())
            try:
                await asyncio.wait({task, began}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                began.cancel()
            if not task.done():
                await asyncio.wait({task}, timeout=rec.timeout)
            if task.done():
                return task.result()
        finally:
            if not task.done():
                task.cancel()  # (a thread's waiter leaves at once: abandon_on_cancel)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if not self._is_async(fn):
            wide = rec.threads is not None and rec.threads > self.native
            self._abandon(call, min(rec.threads or 1, self.threads) if wide else 1)
        more = "" if self._is_async(fn) else "; its thread runs on, its result discarded"
        raise TaskTimeout.of(rec.key, rec.name, rec.timeout, more)

    def _abandon(self, call: _Timed, tokens: int) -> None:
        """A thread left running past its timeout keeps its task threads (``tokens``:
        more than one for a call that asked for native threads) taken until it returns
        (the limiter gave them back when the wait was cancelled)."""
        loop = asyncio.get_running_loop()
        borrowers = [object() for _ in range(tokens)]

        def give_back() -> None:
            for borrower in borrowers:
                self.limiter.release_on_behalf_of(borrower)
            self.stuck -= 1
            if self.on_stuck is not None:
                self.on_stuck(self.stuck)

        def when_returned() -> None:
            if not call.finish(lambda: loop.call_soon_threadsafe(give_back)):
                give_back()  # it returned meanwhile

        async def take(rest: list[object]) -> None:
            for borrower in rest:
                await self.limiter.acquire_on_behalf_of(borrower)
            when_returned()

        if call.done:
            return
        self.stuck += 1
        if self.on_stuck is not None:
            self.on_stuck(self.stuck)
        for k, borrower in enumerate(borrowers):
            try:
                self.limiter.acquire_on_behalf_of_nowait(borrower)
            except anyio.WouldBlock:  # (another call took a token first: wait for them)
                task = asyncio.ensure_future(take(borrowers[k:]))
                _BACKGROUND.add(task)
                task.add_done_callback(_BACKGROUND.discard)
                return
        when_returned()

    async def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        rec: TaskRecord,
        alive: Callable[[], bool] | None = None,
        timed: _Timed | None = None,
    ) -> tuple[Any, bytes | Frame | None, float, float]:
        """The value, its frame (None: it holds a graph to run), and when the call and
        its serialization began and ended (wall clock, taken where it ran: waiting for a
        thread is not counted)."""
        if self._is_async(fn):
            if alive is not None and not alive():
                raise _RunEnded
            if timed is not None:
                timed.begin()
            began = time.time()
            value = await fn(*args, **kwargs)
            return value, result_frame(value, rec), began, time.time()
        key = id(fn)
        profile = self._profiles.get(key)
        if profile is None:
            profile = self._profiles[key] = _Profile()

        def call() -> tuple[Any, bytes | Frame | None, float, float, float]:
            if alive is not None and not alive():
                raise _RunEnded
            if timed is not None:
                timed.begin()
            began = time.time()
            t0 = time.perf_counter()
            value = fn(*args, **kwargs)
            elapsed = time.perf_counter() - t0
            return value, result_frame(value, rec), elapsed, began, time.time()

        def in_thread() -> tuple[Any, bytes | Frame | None, float, float, float]:
            with self._counting:
                self.in_threads += 1
            try:
                return call()
            finally:
                with self._counting:
                    self.in_threads -= 1
                if timed is not None:
                    timed.returned()

        wide = rec.threads is not None and rec.threads > self.native
        if profile.inline and not wide and timed is None:
            value, frame, elapsed, began, ended = call()
        elif wide:
            asked = rec.threads or 1

            def wide_call() -> tuple[Any, bytes | Frame | None, float, float, float]:
                with native_threads.widened(asked):
                    return in_thread()

            async with self._hold(asked):
                value, frame, elapsed, began, ended = await anyio.to_thread.run_sync(
                    wide_call, limiter=self.limiter, abandon_on_cancel=True
                )
        else:
            # Cancelled (a worker shutting down past its graceful timeout), the waiter
            # leaves at once; the thread runs on, and the worker exits without it.
            value, frame, elapsed, began, ended = await anyio.to_thread.run_sync(
                in_thread, limiter=self.limiter, abandon_on_cancel=True
            )
        profile.measured(elapsed)
        return value, frame, began, ended

    @contextlib.asynccontextmanager
    async def _hold(self, threads: int) -> AsyncIterator[None]:
        """Hold ``threads - 1`` more of this worker's task threads (the call takes its
        own), so that fewer tasks run beside a task that asked for native threads. Wide
        tasks gather theirs one at a time: two gathering at once could each hold part."""
        held: list[object] = []
        try:
            async with self._gathering:
                for _ in range(min(threads, self.threads) - 1):
                    borrower = object()
                    await self.limiter.acquire_on_behalf_of(borrower)
                    held.append(borrower)
            yield
        finally:
            for borrower in held:
                self.limiter.release_on_behalf_of(borrower)


_BACKGROUND: set[asyncio.Future[None]] = set()  # waits for a token for an abandoned thread


class _Timed:
    """A call with a timeout, as its thread and the waiter see it: whichever comes
    second of "returned" and "abandoned" runs what releases its thread."""

    __slots__ = ("_lock", "_loop", "_then", "began", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lock = threading.Lock()
        self._loop = loop
        self.began = asyncio.Event()  # the call began (its timeout runs from here)
        self.done = False
        self._then: Callable[[], object] | None = None

    def begin(self) -> None:
        """The call begins (in its thread, or on the loop)."""
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self.began.set()
        else:
            self._loop.call_soon_threadsafe(self.began.set)

    def returned(self) -> None:
        """Its thread is done (called in that thread)."""
        with self._lock:
            self.done = True
            then, self._then = self._then, None
        if then is not None:
            then()

    def finish(self, then: Callable[[], object]) -> bool:
        """Run ``then`` when the thread returns; False if it has already (run nothing)."""
        with self._lock:
            if self.done:
                return False
            self._then = then
            return True


def result_frame(value: Any, rec: TaskRecord) -> bytes | Frame | None:
    """A task's result serialized, or None if it holds a graph to run: a node or DAG,
    alone or in lists, tuples, dicts and sets (found while pickling, so results without
    one pay nothing to be looked into). Nodes inside other objects are values like any
    other, as in-process."""
    what = f"result of task {rec.key} ({rec.name})"
    finding_graphs(True)
    try:
        return dumps_frame(value, what=what, by_value=False)
    except SerializationError as exc:
        if not isinstance(exc.__cause__, GraphInResult):
            raise
    finally:
        finding_graphs(False)
    if has_graph(value):
        return None
    return dumps_frame(value, what=what, by_value=False)


class _RunEnded(Exception):
    """The task's run ended while it waited for a thread: it is not called."""


def permanent(exc: BaseException) -> bool:
    """Errors that another attempt cannot fix."""
    return isinstance(exc, SerializationError)
