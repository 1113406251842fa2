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
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
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
    """When buffered task events are written. The conditions combine (any one flushes);
    with all of them off, task events are written only at close (run and worker
    events are written at once whatever the policy). ``when_idle``: a worker writes
    what it holds once it has been idle a moment (a run just ended)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    after_each_task: bool = Field(False, description="flush after every finished/failed task")
    interval: float | None = Field(
        1.0, ge=0.01, allow_inf_nan=False, description="flush every this many seconds"
    )
    max_events: int | None = Field(2000, ge=1, description="flush when this many are buffered")
    max_buffer: int = Field(500_000, ge=1, description="beyond this, drop (and count) events")
    close_timeout: float = Field(
        5.0, ge=0, allow_inf_nan=False, description="seconds the last write at close may take"
    )
    when_idle: bool = Field(
        True, description="a worker that goes idle writes what it holds (runs' logs fill soon)"
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

    def __repr__(self) -> str:
        return f"<MetadataStorage {self.storage!r} buffered={self._size}>"

    @property
    def dropped(self) -> int:
        """Events dropped for a full buffer and not yet reported in the log."""
        return sum(self._drops.values())

    @property
    def buffered(self) -> int:
        """Events waiting to be written."""
        return self._size

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
                if self._size + n > bound and code not in _KEPT:
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
            with self._lock:
                left, records = self._size, len(self._records)
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

    def _give_back(self, items: list[Item], drops: dict[str, int]) -> None:
        """A write failed: put the events back in front; beyond the bound the newest
        task events go (as when emitting into a full buffer)."""
        with self._lock:
            for run, n in drops.items():
                self._drops[run] = self._drops.get(run, 0) + n
            self._buffer.extendleft(reversed(items))
            self._size += sum(map(_count, items))
            bound = self.policy.max_buffer
            if self._size <= bound:
                return
            kept: list[Item] = []
            while self._size > bound and self._buffer:
                item = self._buffer.pop()
                if item[0] in _KEPT:
                    kept.append(item)
                    continue
                n = _count(item)
                self._size -= n
                self._drop(item[_RUN], n)
            self._buffer.extend(reversed(kept))

    def _records_back(self, records: list[tuple[str, bytes | Callable[[], bytes]]]) -> None:
        with self._lock:
            self._records[:0] = records
            del self._records[: max(0, len(self._records) - MAX_RECORDS)]

    async def flush(self) -> int:
        """Write every buffered event now; how many were written."""
        lock = self._flushing
        if lock is None:
            return await self._flush_once()
        async with lock:
            written = await self._flush_once()
        return written

    async def _flush_once(self) -> int:
        with self._lock:
            records, self._records = self._records, []
        items, drops = self._take()
        if not items and not drops and not records:
            return 0
        # Events taken from the buffer are written (or given back) whatever happens
        # to the task that flushes: a cancelled flush must not lose them. Only
        # closing bounds the write (its deadline).
        written = 0
        state = {"records": records}
        try:
            with anyio.CancelScope(shield=True, deadline=self._close_by) as scope:
                self._writing = scope
                written = await self._write(state, items, drops)
        except BaseException:
            self._give_back(items, drops)
            self._records_back(state["records"])
            raise
        finally:
            self._writing = None
        if scope.cancelled_caught:  # closing, and the store did not answer in time
            self._give_back(items, drops)
            self._records_back(state["records"])
            return 0
        return written

    async def _write(self, state: dict[str, Any], items: list[Item], drops: dict[str, int]) -> int:
        """Write the records, then the events; on a storage error keep both for later.
        ``state["records"]`` holds what is still to write (built ones as bytes)."""
        try:
            if state["records"]:
                state["records"] = await anyio.to_thread.run_sync(_build_records, state["records"])
                await self.storage.apipeline(_record_cmds(state["records"]))
                state["records"] = []
            await write_events(self.storage, self.stream, self._with_drops(items, drops))
        except StorageError as exc:
            if not self._failing:
                log.warning("metrics: cannot write events (kept for later): %s", exc)
            self._failing = True
            self._give_back(items, drops)
            self._records_back(state["records"])
            state["records"] = []
            return 0
        except Exception:  # events that cannot be encoded would fail every retry
            log.exception("metrics: cannot encode %d events: they are dropped", len(items))
            with self._lock:
                for item in items:
                    self._drop(item[_RUN], _count(item))
            return 0
        if self._failing:
            log.warning("metrics: the event log is reachable again")
        self._failing = False
        self.written += len(items)
        return len(items)

    def flush_sync(self) -> int:
        """Write the buffer from sync code (no event loop); on a storage error the
        events are kept, as by :meth:`flush`."""
        with self._lock:
            records, self._records = self._records, []
        items, drops = self._take()
        try:
            records = _build_records(records)
            if records:
                self.storage.pipeline(_record_cmds(records))
            records = []
            write_events_sync(self.storage, self.stream, self._with_drops(items, drops))
        except StorageError as exc:
            log.warning("metrics: cannot write events (kept for later): %s", exc)
            self._give_back(items, drops)
            self._records_back(records)
            return 0
        self.written += len(items)
        return len(items)


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


def _record_cmds(built: list[tuple[str, bytes | Callable[[], bytes]]]) -> list[C.Cmd]:
    """The writes of records :func:`_build_records` built."""
    return [C.set_(key, value) for key, value in built if isinstance(value, bytes)]


def _write_flow(stream: str, items: list[Item]) -> Generator[list[C.Cmd], Any, None]:
    """Logging ``items``: one ``log_run`` call per run, in one pipeline (every command is
    that script, so a server that forgot it fails them all, and all are sent again)."""
    cmds = _plan(stream, items)
    if not cmds:
        return
    try:
        yield cmds
    except NoScriptError:  # the server forgot its scripts (a restart)
        yield [C.Cmd(("SCRIPT", "LOAD", LOG_RUN.source))]
        yield cmds


async def write_events(storage: Storage, stream: str, items: list[Item]) -> None:
    """Append events (wire form) to the log and update the runs index."""
    flow = _write_flow(stream, items)
    reply: Any = None
    error: NoScriptError | None = None
    while True:
        try:
            cmds = flow.throw(error) if error is not None else flow.send(reply)
        except StopIteration:
            return
        error = None
        try:
            reply = await storage.apipeline(cmds)
        except NoScriptError as exc:
            error = exc


def write_events_sync(storage: Storage, stream: str, items: list[Item]) -> None:
    """:func:`write_events` from sync code."""
    flow = _write_flow(stream, items)
    reply: Any = None
    error: NoScriptError | None = None
    while True:
        try:
            cmds = flow.throw(error) if error is not None else flow.send(reply)
        except StopIteration:
            return
        error = None
        try:
            reply = storage.pipeline(cmds)
        except NoScriptError as exc:
            error = exc


def _log_run_twin(redis: Any, keys: list[str], argv: list[Any]) -> Any:
    """``log_run.lua`` for InMemoryStorage."""
    stream, record, entries, runs = keys
    run = argv[0].decode() if isinstance(argv[0], bytes) else str(argv[0])
    pos = 1
    ids = []
    for _ in range(int(argv[pos])):
        ids.append(
            redis.call("XADD", stream, "*", "r", run, "n", argv[pos + 1], "d", argv[pos + 2])
        )
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
    if argv[pos] not in ("", b""):
        redis.call("ZADD", runs, argv[pos], run)
    return ids


LOG_RUN = Script.from_package("log_run.lua", _log_run_twin)


def _plan(stream: str, items: list[Item]) -> list[C.Cmd]:
    """The ``log_run`` calls that log ``items``: per run, its entries (up to
    ``ENTRY_EVENTS`` events each) and what they change in the runs index."""
    by_run: dict[str, list[Item]] = {}
    for item in items:
        by_run.setdefault(item[_RUN], []).append(item)
    cmds: list[C.Cmd] = []
    for run_id, events in by_run.items():
        argv: list[Any] = [run_id, 0]
        largest = 0
        for start in range(0, len(events), ENTRY_EVENTS):
            chunk = events[start : start + ENTRY_EVENTS]
            data = pack(chunk)
            argv += [len(chunk), data]
            argv[1] += 1
            largest = max(largest, len(data))
        counts, fields, listed = _index_updates(events) if run_id else ({}, {}, None)
        argv.append(len(counts))
        for name, amount in counts.items():
            argv += [name, amount]
        argv.append(len(fields))
        for name, value in fields.items():
            argv += [name, value]
        argv.append("" if listed is None else repr(listed))
        keys = (stream, K.run_record(run_id), K.run_entries(run_id), K.runs_index())
        cmds.append(C.Cmd(("EVALSHA", LOG_RUN.sha, len(keys), *keys, *argv), None, stream, largest))
    return cmds


def _index_updates(
    events: list[Item],
) -> tuple[dict[str, int], dict[str, Any], float | None]:
    """What one run's new events change in the runs index: counters to add (tasks done
    and failed, bytes moved, attempts started and ended), fields to set (status, times,
    workers), and the submission time when the run is new."""
    done = failed = moved = started = ended = 0
    workers: set[str] = set()
    fields: dict[str, Any] = {}
    listed: float | None = None
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
            if len(item) <= _FAILED_FINAL or item[_FAILED_FINAL]:  # a retry follows otherwise
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
    counts = {
        name: n
        for name, n in (
            ("done", done),
            ("failed", failed),
            ("bytes", moved),
            ("started", started),
            ("ended", ended),
        )
        if n
    }
    workers.discard("")
    fields.update({f"w:{w}": 1 for w in workers})
    return counts, fields, listed
