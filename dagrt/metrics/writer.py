"""``MetadataStorage``: the event log's writer. It buffers events and writes them in batches.

Anything (a worker, a client, the in-process runtime, from any thread) calls
``emit()`` with an event in wire form (:mod:`.wire`); it costs an append. A
flusher task writes the buffer as one write (planned by :mod:`.plan`: entries of
up to ``ENTRY_EVENTS`` events of one run on the stream ``dagrt:events``, and what
they change in the runs index, :mod:`.runs_index`). When task events are written
is the :class:`~.policy.FlushPolicy`: after each task, every ``interval`` seconds,
when the buffer holds ``max_events``, any combination, and always when closed. Run
and worker events (submitted, finished, started, heartbeat, stopped) are written at
once under every policy: they are few, and readers wait for them.

The flusher belongs to a task group: the caller's (``start(task_group)``), the one
``async with`` opens, or one the writer holds in a task of its own until
``aclose()`` (plain ``start()``: a client may be closed from another task than the
one that started it). Closing writes what is left in a shielded scope.

A flush that fails (the metrics server is away) keeps the events and tries
again later; the buffer is bounded (``max_buffer`` events, a batch counting as
the events it holds): beyond it task events are dropped, newest first, and
counted per run, and each run's count is logged as an ``events-dropped`` event
once the store is back. Run and worker lifecycle events are never dropped (a
handful per run). Closing waits at most ``close_timeout`` for the last write;
what it could not write is logged as lost. Metrics never fail a task.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc

from .. import keys as K
from ..exceptions import StorageError
from ..storage import RedisStorage, Storage
from ..storage import commands as C
from ..storage.base import NoScriptError
from .events import (
    EventsDropped,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    TasksFinished,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)
from .plan import PendingWrite, Record, build_records, plan_write
from .policy import FlushPolicy
from .runs_index import LOG_RUN
from .wire import BATCH_ROWS, Item, event_count, position, wire

__all__ = ["MAX_RECORDS", "MetadataStorage"]

log = logging.getLogger("dagrt.metrics")

MAX_RECORDS = 1000  # graph records waiting for the store, at most (the oldest go first)

_RUN = position(TaskExecutionMetrics, "run_id")
_TASK_CODES = frozenset({TaskExecutionMetrics.code, TaskFailed.code, TasksFinished.code})
# never dropped for a full buffer (a few per run or worker), and written at once
_KEPT = frozenset(
    m.code for m in (RunSubmitted, RunFinished, WorkerStarted, WorkerStopped, EventsDropped)
)
_PROMPT = _KEPT | {WorkerHeartbeat.code}


class MetadataStorage:
    """The event log's writer. ``async with`` it (or ``start()``/``aclose()``).

    ``storage`` is a :class:`~dagrt.storage.Storage` (or a ``redis://`` URL, whose
    connections this object then owns and closes); ``source`` names the writer
    (a worker or client id) in the ``events-dropped`` notes it logs.
    """

    def __init__(
        self,
        storage: Storage | str,
        policy: FlushPolicy | None = None,
        *,
        stream: str = K.events(),
        source: str = "",
    ) -> None:
        self._owns_storage = isinstance(storage, str)
        if isinstance(storage, str):
            storage = RedisStorage(storage)
        if not isinstance(storage, Storage):
            raise TypeError(
                "MetadataStorage needs a dagrt Storage (RedisStorage(url), InMemoryStorage())"
                f" or a redis:// URL, got {storage!r}"
            )
        if policy is not None and not isinstance(policy, FlushPolicy):
            raise TypeError(f"policy must be a dagrt.metrics.FlushPolicy, got {policy!r}")
        if not isinstance(stream, str) or not stream:
            raise TypeError(f"stream must be a non-empty key name, got {stream!r}")
        self.storage = storage
        self.policy = policy or FlushPolicy()
        self.stream = stream
        self.source = source
        self.written = 0  # events written so far
        self.lost = 0  # events never written: dropped for a full buffer, or left at close
        self._drops: dict[str, int] = {}  # run -> events dropped, not yet reported
        self._buffer: deque[Item] = deque()
        self._size = 0  # events in the buffer (a batch counts its rows)
        self._sources: list[Any] = []  # objects whose collect() returns wire events
        self._ended: list[tuple[Any, Any]] = []  # removed sources, collected once more
        self._at_close: list[Callable[[], Any]] = []  # closing events' builders
        self._records: list[Record] = []  # written first
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._woken = False  # a wake-up is on its way to the flusher: don't send another
        self._stopped: anyio.Event | None = None  # set when the flusher stops (started)
        self._host: asyncio.Task[None] | None = None  # holds the flusher's group (start())
        self._exit: AsyncExitStack | None = None  # closes the group ``async with`` opened
        self._flushing: asyncio.Lock | None = None  # made on the loop, by start()
        self._writing: anyio.CancelScope | None = None  # the write under way
        self._close_by = math.inf  # closing: no write goes on past this (anyio clock)
        self._failing = False
        self._closing = False
        # Writes carry this writer's id and a sequence number: the log applies each once.
        self._writer = f"{source or 'writer'}-{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = 0
        self._unsent: PendingWrite | None = None  # a write whose outcome is unknown: sent again
        self._held = 0  # what it holds against the bound

    def __repr__(self) -> str:
        return f"<MetadataStorage {self.storage!r} buffered={self._size}>"

    @property
    def dropped(self) -> int:
        """Events dropped for a full buffer and not yet reported in the log."""
        return sum(self._drops.values())

    @property
    def buffered(self) -> int:
        """Events waiting to be written (a write to send again, and what the sources
        hold, included)."""
        return self._size + self._held + sum(map(len, self._sources))

    # -- emitting (any thread) ---------------------------------------------------------

    def emit(self, item: Item) -> None:
        """Buffer one event in wire form (``events.wire`` or a tuple in field order)."""
        self.emit_many((item,))

    def emit_event(self, event: Any) -> None:
        self.emit(wire(event))

    def emit_many(self, items: Iterable[Item]) -> None:
        """Buffer several events at once (one lock)."""
        policy = self.policy
        each_task = policy.after_each_task
        bound = policy.max_buffer
        trigger = False
        with self._lock:
            for item in items:
                code = item[0]
                n = 1 if code not in BATCH_ROWS else event_count(item)
                if self._failing and self._size + self._held + n > bound and code not in _KEPT:
                    self._drop(item[_RUN], n)
                    continue
                self._buffer.append(item)
                self._size += n
                trigger = trigger or code in _PROMPT or (each_task and code in _TASK_CODES)
            size = self._size
        if trigger or (policy.max_events is not None and size >= policy.max_events):
            self._trigger()

    def _drop(self, run_id: str, n: int) -> None:
        """Count ``n`` events of ``run_id`` lost to the bound (the lock is held)."""
        if not self._drops:
            log.warning(
                "metrics: the buffer is full (%d events, the store does not take them):"
                " dropping events, counted per run",
                self._size,
            )
        self._drops[run_id] = self._drops.get(run_id, 0) + n
        self.lost += n

    def add_record(self, key: str, build: bytes | Callable[[], bytes]) -> None:
        """Write ``build()`` (bytes) at ``key`` with the next flush, before its events.

        A run's graph goes this way: built in a thread, off the run's critical path.
        At most ``MAX_RECORDS`` wait for a store that is away (the oldest go first).
        """
        with self._lock:
            self._records.append((key, build))
            if len(self._records) > MAX_RECORDS:
                gone, _ = self._records.pop(0)
                log.warning("metrics: too many records wait for the store: %s dropped", gone)
        self._trigger()

    def at_close(self, build: Callable[[], Any]) -> None:
        """Log the event ``build()`` makes when closing, after every other (a worker's
        worker-stopped, with its counts)."""
        self._at_close.append(build)

    def add_source(self, source: Any) -> None:
        """Collect ``source.collect()`` on every flush (a run's cheap task recorder)."""
        self._sources.append(source)

    def remove_source(self, source: Any, then: Any = None) -> None:
        """Stop collecting ``source``; the next flush takes what it still holds, then
        buffers the event ``then`` (a run's run-finished follows its tasks in the log).

        Nothing is collected here: the run that ends does not wait for its events.
        """
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)
                self._ended.append((source, then))
                found = True
            else:
                found = False
        if found:
            self._trigger()  # a run ended: its events are written soon, whatever the policy
        elif then is not None:
            self.emit_event(then)

    def tasks_added(self) -> None:
        """A source took task events (a worker's batch): flush if the policy says so
        (after each task, or the buffer and the sources reached the size)."""
        policy = self.policy
        if policy.after_each_task or (
            policy.max_events is not None and self.buffered >= policy.max_events
        ):
            self._trigger()

    def flush_soon(self) -> None:
        """Have the flusher write the buffer now, whatever the policy (any thread)."""
        self._trigger()

    def _trigger(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or self._woken:
            return  # not started, or the flusher is already called (a hop per task costs)
        self._woken = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop is closed: close() writes what is left
                self._woken = False

    # -- the flusher ----------------------------------------------------------------------

    async def __aenter__(self) -> MetadataStorage:
        """Start the flusher in a task group of this block's own."""
        async with AsyncExitStack() as stack:
            group = await stack.enter_async_context(anyio.create_task_group())
            await self.start(group)
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        exit_group, self._exit = self._exit, None
        try:
            await self.aclose()
        finally:
            if exit_group is not None:  # the flusher has stopped: the group closes empty,
                await exit_group.aclose()  # and what the block raised goes on as it was

    async def start(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        """Start the flusher, a task of ``task_group`` (or, without one, of a task group
        this writer holds in a task of its own); ``aclose()`` stops it and writes what is
        left. Cancelling ``task_group`` stops the flusher too (then ``aclose()`` writes)."""
        if self._stopped is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._closing = False
        self._close_by = math.inf
        self._stopped = anyio.Event()
        if task_group is not None:
            await task_group.start(self._flusher, name="dagrt metrics flusher")
            return
        # start() and aclose() may be called from different tasks (a client opened in a
        # fixture's set-up and closed in its tear-down), so the group is held in a task.
        ready: asyncio.Future[None] = self._loop.create_future()
        self._host = asyncio.create_task(self._hold_group(ready), name="dagrt metrics writer")
        await ready

    async def _hold_group(self, ready: asyncio.Future[None]) -> None:
        """The task group of the flusher, open until it stops."""
        try:
            async with anyio.create_task_group() as group:
                await group.start(self._flusher, name="dagrt metrics flusher")
                ready.set_result(None)
        finally:
            if not ready.done():
                ready.cancel()

    async def _flusher(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Write the buffer when the policy says, until ``aclose()`` asks it to stop."""
        wake, stopped = self._wake, self._stopped
        assert wake is not None
        assert stopped is not None
        task_status.started()
        interval = self.policy.interval
        try:
            while not self._closing:
                with anyio.move_on_after(interval if interval is not None else math.inf):
                    await wake.wait()
                wake.clear()
                self._woken = False  # before taking: a later trigger wakes the next round
                try:
                    await self.flush()
                except Exception:  # pragma: no cover - _write keeps or counts what fails
                    log.exception("metrics: a flush failed")
        except Exception:  # pragma: no cover - flush() keeps its own errors
            log.exception("metrics: the flusher failed")
        finally:
            stopped.set()

    async def aclose(self) -> None:
        """Stop the flusher and write what is buffered (also when cancelled).

        The flusher is asked to stop, not cancelled: a flush under way finishes, but
        no write goes on past ``policy.close_timeout``; what is left then is lost
        (and logged as lost).
        """
        stopped, self._stopped = self._stopped, None
        host, self._host = self._host, None
        with anyio.CancelScope(shield=True):
            self._close_by = anyio.current_time() + self.policy.close_timeout
            if self._writing is not None:
                self._writing.deadline = min(self._writing.deadline, self._close_by)
            if stopped is not None:
                self._closing = True
                if self._wake is not None:
                    self._wake.set()
                await stopped.wait()
            if host is not None:  # its group closes as the flusher stops
                await asyncio.wait([host])
                if not host.cancelled() and host.exception() is not None:  # pragma: no cover
                    log.error("metrics: the flusher failed", exc_info=host.exception())
            self._collect()  # then the closing events, which may count what it held
            for build in self._at_close:
                self.emit_event(build())
            self._at_close = []
            await self.flush()
            unsent, self._unsent, self._held = self._unsent, None, 0
            with self._lock:
                left = self._size + (unsent.count if unsent is not None else 0)
                records = len(self._records) + (len(unsent.records) if unsent else 0)
                earlier = sum(self._drops.values())  # counted in ``lost`` when dropped
                self._buffer.clear()
                self._records.clear()
                self._size = 0
                self._drops = {}
                self.lost += left
            if left or records or earlier:
                log.warning(
                    "metrics: closing with %d events and %d records that the event log at %r"
                    " did not take: they are lost (and %d dropped earlier for a full buffer)",
                    left,
                    records,
                    self.storage,
                    earlier,
                )
            if self._owns_storage:
                await self.storage.aclose()

    # -- writing --------------------------------------------------------------------------

    def _collect(self) -> None:
        """Buffer what the sources (recorders) hold, ended ones last, each with its
        closing event."""
        for source in list(self._sources):
            self.emit_many(source.collect())
        with self._lock:
            ended, self._ended = self._ended, []
        for source, then in ended:
            self.emit_many(source.collect())
            if then is not None:
                self.emit_event(then)

    def _take(self) -> tuple[list[Item], dict[str, int]]:
        """The buffered events (the recorders' too), and the drops to report."""
        self._collect()
        with self._lock:
            items = list(self._buffer)
            self._buffer.clear()
            self._size = 0
            drops, self._drops = self._drops, {}
        return items, drops

    def _drop_notes(self, drops: dict[str, int]) -> list[Item]:
        """An ``events-dropped`` event per run that lost events to the bound."""
        now = time.time()
        return [
            wire(
                EventsDropped(
                    kind="events-dropped", ts=now, run_id=run, worker_id=self.source, count=n
                )
            )
            for run, n in drops.items()
        ]

    async def flush(self) -> int:
        """Write every buffered event now; how many were written."""
        lock = self._flushing
        if lock is None:
            return await self._flush_once()
        async with lock:
            written = await self._flush_once()
        return written

    def _next_write(self, limit: int) -> PendingWrite | None:
        """The write to send: one whose outcome is unknown (it is sent again as it
        was: the log skips what it applied already), else the buffer, planned."""
        with self._lock:
            records, self._records = self._records, []
        pending, self._unsent = self._unsent, None
        if pending is not None:
            pending.records += records
            self._collect()  # the sources' rows wait in the buffer, under its bound
            return pending
        items, drops = self._take()
        if not items and not drops and not records:
            return None
        notes = self._drop_notes(drops) if drops else []
        pending, self._seq, lost = plan_write(
            self.stream, items, notes, records, writer=self._writer, seq=self._seq, limit=limit
        )
        if lost:
            log.error("metrics: %d events cannot be written (too large, or not encodable)", lost)
            self.lost += lost
        return pending

    async def _flush_once(self) -> int:
        """Write what waits: a write to send again first, then (if it went) the buffer."""
        again = self._unsent is not None
        written, sent = await self._flush_step()
        if again and sent:
            written += (await self._flush_step())[0]
        return written

    async def _flush_step(self) -> tuple[int, bool]:
        """Send one write; how many events it held, and whether it went."""
        if self._unsent is None and not (self._size or self._records or self._sources):
            with self._lock:
                if not (self._ended or self._drops or self._size):
                    return 0, True  # nothing to write
        try:
            limit = await self.storage.amax_value_size()  # asked once, then known
        except StorageError as exc:  # the store is away: what is buffered stays
            self._failed(exc)
            self._collect()  # (the sources' rows too, in the buffer: under its bound)
            # (records wait as the bytes they are built into, not what they are built from)
            with self._lock:
                records, self._records = self._records, []
            built = await anyio.to_thread.run_sync(build_records, records)
            with self._lock:
                self._records[:0] = built
            return 0, False
        pending = self._next_write(limit)
        if pending is None:
            return 0, True
        # A write taken from the buffer is sent (or kept to be sent again) whatever
        # happens to the task that flushes: a cancelled flush must not lose it. Only
        # closing bounds it (its deadline).
        sent = False
        try:
            with anyio.CancelScope(shield=True, deadline=self._close_by) as scope:
                self._writing = scope
                sent = await self._send(pending)
        finally:
            self._writing = None
            if not sent:
                self._hold(pending)
        if not sent or scope.cancelled_caught:
            return 0, False
        return pending.count, True

    def _hold(self, pending: PendingWrite) -> None:
        """Keep a write that failed, to send as it is next time."""
        self._unsent = pending
        self._held = pending.size

    async def _send(self, pending: PendingWrite) -> bool:
        try:
            if pending.records:
                pending.records = await anyio.to_thread.run_sync(build_records, pending.records)
            await self.storage._adrive(_send_flow(pending))
        except StorageError as exc:
            return self._failed(exc)
        return self._sent(pending)

    def _failed(self, exc: StorageError) -> bool:
        if not self._failing:
            log.warning("metrics: cannot write events (kept for later): %s", exc)
        self._failing = True
        return False

    def _sent(self, pending: PendingWrite) -> bool:
        if self._failing:
            log.warning("metrics: the event log is reachable again")
        self._failing = False
        self._held = 0
        self.written += pending.count
        return True

    def flush_sync(self) -> int:
        """Write the buffer from sync code (no event loop); on a storage error the
        events are kept, as by :meth:`flush`."""
        try:
            limit = self.storage.max_value_size()
        except StorageError as exc:
            self._failed(exc)
            return 0
        pending = self._next_write(limit)
        if pending is None:
            return 0
        try:
            pending.records = build_records(pending.records)
            self.storage._drive(_send_flow(pending))
        except StorageError as exc:
            self._failed(exc)
            self._hold(pending)
            return 0
        self._sent(pending)
        return pending.count


def _send_flow(pending: PendingWrite) -> Generator[Any, Any, None]:
    """Sending a write (its records built by :func:`.plan.build_records`): the records
    in one pipeline, then the planned ``log_run`` calls in another (every command is
    that script, so a server that forgot it refuses them all, and all are sent again)."""
    if pending.records:
        yield [C.set_(key, value) for key, value in pending.records if isinstance(value, bytes)]
        pending.records = []
    if not pending.cmds:
        return
    try:
        yield pending.cmds
    except NoScriptError:  # the server forgot its scripts (a restart)
        yield [C.Cmd(("SCRIPT", "LOAD", LOG_RUN.source))]
        yield pending.cmds
