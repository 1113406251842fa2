"""``MetadataStorage``: buffer events, write them to the persistent event log in batches.

Anything (a worker, a client, the in-process runtime, from any thread) calls
``emit()`` with an event in wire form; it costs an append. A flusher task
writes the buffer as one pipeline: entries of up to ``ENTRY_EVENTS`` events of
one run on the stream ``dagrt:events``, plus the runs index that readers use
(``dagrt:run:<id>`` hashes: first/last entry ids, status and counts; the list
of the run's entries; the ``dagrt:runs`` sorted set by submission time). When
task events are written is the :class:`FlushPolicy`: after each task, every
``interval`` seconds, when the buffer holds ``max_events``, any combination,
and always when closed. Run and worker events (submitted, finished, started,
heartbeat, stopped) are written at once under every policy: they are few, and
readers wait for them.

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
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import keys as K
from ..exceptions import StorageError
from ..serialize import pack
from ..storage import RedisStorage, Script, Storage
from ..storage import commands as C
from ..storage.base import NoScriptError
from .events import (
    FIELDS,
    RUN_ENDED,
    EventsDropped,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    TasksFinished,
    TaskStarted,
    Transfer,
    Transfers,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
    wire,
    wire_column,
    wire_column_length,
)

__all__ = ["ENTRY_EVENTS", "FlushPolicy", "MetadataStorage"]

log = logging.getLogger("dagrt.metrics")

ENTRY_EVENTS = 256  # events per stream entry, at most
MAX_RECORDS = 1000  # graph records waiting for the store, at most (the oldest go first)


def _pos(model: Any, field: str) -> int:
    """Where ``field`` sits in the wire form of ``model``."""
    return 1 + FIELDS[model.code].index(field)


_WORKER = _pos(TaskExecutionMetrics, "worker_id")
_FAILED_FINAL = _pos(TaskFailed, "final")
_EXC_TYPE = _pos(TaskFailed, "exc_type")
_BYTES, _LOCAL = _pos(Transfer, "bytes"), _pos(Transfer, "local")
_STATUS, _MAKESPAN = _pos(RunFinished, "status"), _pos(RunFinished, "makespan")
_TS, _N_TASKS, _CLIENT, _RUNTIME = (
    _pos(RunSubmitted, f) for f in ("ts", "n_tasks", "client_id", "runtime")
)
_RUN = _pos(TaskExecutionMetrics, "run_id")
_FINISHED = TaskExecutionMetrics.code
_BATCH_FINISHED = TasksFinished.code
_BATCH_TRANSFERS = Transfers.code
_BATCH_WORKER = _pos(TasksFinished, "worker_id")

_FAILED = TaskFailed.code
_DROPPED = EventsDropped.code
_DROPPED_COUNT = _pos(EventsDropped, "count")
_STARTED = TaskStarted.code
_TRANSFER = Transfer.code
_SUBMITTED = RunSubmitted.code
_RUN_FINISHED = RunFinished.code
_TASK_CODES = frozenset({_FINISHED, _FAILED, _BATCH_FINISHED})
# never dropped for a full buffer (a few per run or worker), and written at once
_KEPT = frozenset(
    m.code for m in (RunSubmitted, RunFinished, WorkerStarted, WorkerStopped, EventsDropped)
)
_PROMPT = _KEPT | {WorkerHeartbeat.code}
_BATCH_COLUMN = {_BATCH_FINISHED: "task", _BATCH_TRANSFERS: "bytes"}


def _count(item: list[Any] | tuple[Any, ...]) -> int:
    """How many events a wire item stands for (a batch: its rows)."""
    column = _BATCH_COLUMN.get(item[0])
    return 1 if column is None else max(1, wire_column_length(item, column))


class FlushPolicy(BaseModel):
    """When buffered task events are written. The conditions combine (any one flushes).
    Run and worker events (a worker's heartbeats too) are written at once whatever the
    policy, and what is buffered goes with them: with every condition off, task events
    wait for the next of those, or for close. ``when_idle``: a worker writes what it
    holds once it has been idle a moment (a run just ended)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    after_each_task: bool = Field(
        False, description="write events after every finished or failed task"
    )
    interval: float | None = Field(
        1.0, ge=0.01, allow_inf_nan=False, description="write events every this many seconds"
    )
    max_events: int | None = Field(
        2000, ge=1, description="write events when this many are buffered"
    )
    max_buffer: int = Field(
        500_000,
        ge=1,
        description="events kept while the event log cannot be written; beyond, they are"
        " dropped and counted",
    )
    close_timeout: float = Field(
        5.0, ge=0, allow_inf_nan=False, description="seconds the last write of events may take"
    )
    when_idle: bool = Field(
        True, description="a worker that goes idle writes the events it holds at once"
    )

    @model_validator(mode="after")
    def _size_within_bound(self) -> FlushPolicy:
        if self.max_events is not None and self.max_events > self.max_buffer:
            raise ValueError(
                f"max_events ({self.max_events}) must not exceed max_buffer ({self.max_buffer}):"
                " the buffer would drop events before the size threshold flushed them"
            )
        return self


def flush_options(policy: FlushPolicy) -> dict[str, Any]:
    """``dagrt worker`` flags that give a worker this policy (``""``: a flag alone)."""
    options: dict[str, Any] = {
        "flush-interval": policy.interval or 0,
        "flush-size": policy.max_events or 0,
        "flush-buffer": policy.max_buffer,
        "flush-close-timeout": policy.close_timeout,
    }
    if policy.after_each_task:
        options["flush-each-task"] = ""
    if not policy.when_idle:
        options["no-flush-when-idle"] = ""
    return options


Item = list[Any] | tuple[Any, ...]


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
        self._records: list[tuple[str, bytes | Callable[[], bytes]]] = []  # written first
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._woken = False  # a wake-up is on its way to the flusher: don't send another
        self._flusher: asyncio.Task[None] | None = None
        self._flushing: asyncio.Lock | None = None  # made on the loop, by start()
        self._writing: anyio.CancelScope | None = None  # the write under way
        self._close_by = math.inf  # closing: no write goes on past this (anyio clock)
        self._failing = False
        self._closing = False
        # Writes carry this writer's id and a sequence number: the log applies each once.
        self._writer = f"{source or 'writer'}-{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = 0
        self._unsent: _Write | None = None  # a write whose outcome is unknown: sent again
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
                n = 1 if code not in _BATCH_COLUMN else _count(item)
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
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the flusher task (owned by this object; ``aclose()`` ends it)."""
        if self._flusher is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._closing = False
        self._close_by = math.inf
        self._flusher = asyncio.create_task(self._run(), name="dagrt metrics flusher")

    async def _run(self) -> None:
        assert self._wake is not None
        interval = self.policy.interval
        while not self._closing:
            with anyio.move_on_after(interval if interval is not None else math.inf):
                await self._wake.wait()
            self._wake.clear()
            self._woken = False  # before taking: a later trigger wakes the next round
            try:
                await self.flush()
            except Exception:  # pragma: no cover - _write keeps or counts what fails
                log.exception("metrics: a flush failed")

    async def aclose(self) -> None:
        """Stop the flusher and write what is buffered (also when cancelled).

        The flusher is asked to stop, not cancelled: a flush under way finishes, but
        no write goes on past ``policy.close_timeout``; what is left then is lost
        (and logged as lost).
        """
        flusher, self._flusher = self._flusher, None
        with anyio.CancelScope(shield=True):
            self._close_by = anyio.current_time() + self.policy.close_timeout
            if self._writing is not None:
                self._writing.deadline = min(self._writing.deadline, self._close_by)
            if flusher is not None:
                self._closing = True
                if self._wake is not None:
                    self._wake.set()
                try:
                    await flusher
                except Exception:  # pragma: no cover - flush() keeps its own errors
                    log.exception("metrics: the flusher failed")
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

    def _with_drops(self, items: list[Item], drops: dict[str, int]) -> list[Item]:
        if not drops:
            return items
        now = time.time()
        notes = [
            wire(
                EventsDropped(
                    kind="events-dropped", ts=now, run_id=run, worker_id=self.source, count=n
                )
            )
            for run, n in drops.items()
        ]
        return [*items, *notes]

    async def flush(self) -> int:
        """Write every buffered event now; how many were written."""
        lock = self._flushing
        if lock is None:
            return await self._flush_once()
        async with lock:
            written = await self._flush_once()
        return written

    def _next_write(self, limit: int) -> _Write | None:
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
        cmds, self._seq, lost = _plan(
            self.stream, self._with_drops(items, drops), self._writer, self._seq, limit
        )
        if lost:
            log.error("metrics: %d events cannot be written (too large, or not encodable)", lost)
            self.lost += lost
        return _Write(records, cmds, len(items) - lost, sum(map(_count, items)))

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
            built = await anyio.to_thread.run_sync(_build_records, records)
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

    def _hold(self, pending: _Write) -> None:
        """Keep a write that failed, to send as it is next time."""
        self._unsent = pending
        self._held = pending.size

    async def _send(self, pending: _Write) -> bool:
        try:
            if pending.records:
                pending.records = await anyio.to_thread.run_sync(_build_records, pending.records)
            await self.storage._adrive(_send_flow(pending))
        except StorageError as exc:
            return self._failed(exc)
        return self._sent(pending)

    def _failed(self, exc: StorageError) -> bool:
        if not self._failing:
            log.warning("metrics: cannot write events (kept for later): %s", exc)
        self._failing = True
        return False

    def _sent(self, pending: _Write) -> bool:
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
            pending.records = _build_records(pending.records)
            self.storage._drive(_send_flow(pending))
        except StorageError as exc:
            self._failed(exc)
            self._hold(pending)
            return 0
        self._sent(pending)
        return pending.count


@dataclass
class _Write:
    """One flush's writes, planned once: records still to write, then the log calls
    (each with its writer's sequence number, so a write sent again after a reply that
    never came is applied once)."""

    records: list[tuple[str, bytes | Callable[[], bytes]]]
    cmds: list[C.Cmd]
    count: int  # events in it
    size: int  # what it holds against the buffer's bound (a batch: its rows)


def _build_records(
    records: list[tuple[str, bytes | Callable[[], bytes]]],
) -> list[tuple[str, bytes | Callable[[], bytes]]]:
    """Each record's bytes (built once: a record given back keeps its bytes, not what
    it was built from); one that cannot be built is logged and left out (the events
    still go: a broken record must not stop the log)."""
    built: list[tuple[str, bytes | Callable[[], bytes]]] = []
    for key, build in records:
        try:
            value = build if isinstance(build, bytes | bytearray | memoryview) else build()
            built.append((key, value if isinstance(value, bytes) else bytes(value)))
        except Exception:
            log.exception("metrics: cannot build the record %s (left out)", key)
    return built


def _send_flow(pending: _Write) -> Generator[Any, Any, None]:
    """Sending a write (its records built by :func:`_build_records`): the records in
    one pipeline, then the planned ``log_run`` calls in another (every command is that
    script, so a server that forgot it refuses them all, and all are sent again)."""
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


def _log_run_twin(redis: Any, keys: list[str], argv: list[Any]) -> Any:
    """``log_run.lua`` for InMemoryStorage."""
    stream, record, entries, runs, writer = keys
    seq = int(argv[1])
    if seq <= int(redis.call("GET", writer) or 0):
        return []
    redis.call("SET", writer, seq, "EX", 86400)
    run = argv[0].decode() if isinstance(argv[0], bytes) else str(argv[0])
    pos = 2
    ids = []
    for _ in range(int(argv[pos])):
        n, data = argv[pos + 1], argv[pos + 2]
        ids.append(redis.call("XADD", stream, "*", "r", run, "n", n, "d", data))
        pos += 2
    pos += 1
    if run and ids:
        if redis.call("HGET", record, "first") is None:
            redis.call("HSET", record, "first", ids[0])
        redis.call("HSET", record, "last", ids[-1])
        redis.call("RPUSH", entries, *ids)
    for _ in range(int(argv[pos])):
        redis.call("HINCRBY", record, argv[pos + 1], argv[pos + 2])
        pos += 2
    pos += 1
    n_fields = int(argv[pos])
    if n_fields:
        redis.call("HSET", record, *argv[pos + 1 : pos + 1 + 2 * n_fields])
    pos += 1 + 2 * n_fields
    score, how = argv[pos], argv[pos + 1]
    if how == "S" or (how == "N" and not redis.call("ZSCORE", runs, run)):
        redis.call("ZADD", runs, score, run)
    return ids


LOG_RUN = Script.from_package("log_run.lua", _log_run_twin)

LONG_TEXT = 64 * 1024  # characters of a text field kept in an event too large to write


def _plan(
    stream: str, items: list[Item], writer: str, seq: int, limit: int
) -> tuple[list[C.Cmd], int, int]:
    """The ``log_run`` calls that log ``items``: per run, its entries (up to
    ``ENTRY_EVENTS`` events each, fewer where that would exceed the server's
    ``limit`` on one value) and what they change in the runs index, numbered from
    ``seq + 1``. Also the last number used, and how many events could not be written
    at all (an event with long texts keeps their first ``LONG_TEXT`` characters)."""
    by_run: dict[str, list[Item]] = {}
    for item in items:
        by_run.setdefault(item[_RUN], []).append(item)
    cmds: list[C.Cmd] = []
    lost = 0
    room = max(1024, limit - 4096)  # the script's other arguments travel beside
    for run_id, events in by_run.items():
        entries: list[tuple[int, bytes]] = []
        for start in range(0, len(events), ENTRY_EVENTS):
            lost += _fit(events[start : start + ENTRY_EVENTS], room, entries)
        if not entries:
            continue
        seq += 1
        argv: list[Any] = [run_id, seq, len(entries)]
        for n, data in entries:
            argv += [n, data]
        counts, fields, listed, first_ts = (
            _index_updates(events) if run_id else ({}, {}, None, None)
        )
        argv.append(len(counts))
        for name, amount in counts.items():
            argv += [name, amount]
        argv.append(len(fields))
        for name, value in fields.items():
            argv += [name, value]
        if listed is not None:
            argv += [repr(listed), "S"]
        elif first_ts is not None:
            argv += [repr(first_ts), "N"]  # no submission seen yet: listed all the same
        else:
            argv += ["", ""]
        keys = (
            stream,
            K.run_record(run_id),
            K.run_entries(run_id),
            K.runs_index(),
            K.log_writer(writer),
        )
        largest = max(len(data) for _, data in entries)
        cmds.append(C.Cmd(("EVALSHA", LOG_RUN.sha, len(keys), *keys, *argv), None, stream, largest))
    return cmds, seq, lost


def _fit(chunk: list[Item], room: int, out: list[tuple[int, bytes]]) -> int:
    """Pack ``chunk`` into entries of at most ``room`` bytes (halving it as needed);
    how many of its events could not be packed."""
    try:
        data = pack(chunk)
    except Exception:  # something in it msgpack cannot encode: find it
        data = None
    if data is not None and len(data) <= room:
        out.append((len(chunk), data))
        return 0
    if len(chunk) > 1:
        mid = len(chunk) // 2
        return _fit(chunk[:mid], room, out) + _fit(chunk[mid:], room, out)
    item = _shortened(chunk[0])
    try:
        data = pack([item])
    except Exception:
        log.exception("metrics: an event cannot be encoded (left out): %r", chunk[0][:4])
        return 1
    if len(data) > room:
        log.error("metrics: an event of %d bytes is too large for the log (left out)", len(data))
        return 1
    out.append((1, data))
    return 0


def _shortened(item: Item) -> Item:
    """The event with its long texts (a huge error message or traceback) cut short."""
    return [
        x[:LONG_TEXT] + f"... ({len(x) - LONG_TEXT:,} characters cut)"
        if isinstance(x, str) and len(x) > LONG_TEXT
        else x
        for x in item
    ]


def _index_updates(
    events: list[Item],
) -> tuple[dict[str, int], dict[str, Any], float | None, float]:
    """What one run's new events change in the runs index: counters to add (tasks done
    and failed, bytes moved, attempts started and ended, events dropped), fields to set
    (status, times, workers), the submission time when the run is new, and the time of
    the earliest of these events."""
    done = failed = moved = started = ended = dropped = 0
    workers: set[str] = set()
    fields: dict[str, Any] = {}
    listed: float | None = None
    first_ts = min(item[_TS] for item in events)
    for item in events:
        code = item[0]
        if code == _FINISHED:
            done += 1
            ended += 1
            workers.add(item[_WORKER])
        elif code == _STARTED:
            started += 1
        elif code == _FAILED:
            ended += 1
            final = len(item) <= _FAILED_FINAL or item[_FAILED_FINAL]  # else a retry follows
            if final and item[_EXC_TYPE] != RUN_ENDED:  # (not run: its run had ended)
                failed += 1
            workers.add(item[_WORKER])
        elif code == _TRANSFER:
            if not item[_LOCAL]:  # the bytes crossed the network
                moved += item[_BYTES]
        elif code == _BATCH_FINISHED:  # columns read as they are, no model built
            done += wire_column_length(item, "task")
            workers.update(wire_column(item, "workers") or [item[_BATCH_WORKER]])
        elif code == _BATCH_TRANSFERS:
            sizes = wire_column(item, "bytes")
            local = wire_column(item, "local")
            moved += sum(b for b, here in zip(sizes, local, strict=True) if not here)
        elif code == _SUBMITTED:
            fields.update(
                status="running",
                submitted=item[_TS],
                n_tasks=item[_N_TASKS],
                client=item[_CLIENT] if len(item) > _CLIENT else "",
                runtime=item[_RUNTIME] if len(item) > _RUNTIME else "",
            )
            listed = item[_TS]
        elif code == _RUN_FINISHED:
            fields.update(status=item[_STATUS], finished=item[_TS], makespan=item[_MAKESPAN])
        elif code == _DROPPED:
            dropped += item[_DROPPED_COUNT]
    counts = {
        name: n
        for name, n in (
            ("done", done),
            ("failed", failed),
            ("bytes", moved),
            ("started", started),
            ("ended", ended),
            ("dropped", dropped),
        )
        if n
    }
    workers.discard("")
    fields.update({f"w:{w}": 1 for w in workers})
    return counts, fields, listed, first_ts
