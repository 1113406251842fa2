"""``MetadataStorage``: buffer events, write them to the persistent event log in batches.

Anything (a worker, a client, the in-process runtime, from any thread) calls
``emit()`` with an event in wire form; it costs an append. A flusher task
writes the buffer as one pipeline: entries of up to ``ENTRY_EVENTS`` events of
one run on the stream ``dagrt:events``, plus the runs index that readers use
(``dagrt:run:<id>`` hashes: first/last entry ids, status and counts; the
``dagrt:runs`` sorted set by submission time). When it flushes is the
:class:`FlushPolicy`: after each task, every ``interval`` seconds, when the
buffer holds ``max_events``, any combination, and always when closed.

A flush that fails (the metrics server is away) keeps the events and tries
again later; the buffer is bounded (``max_buffer``): beyond it events are
dropped and counted, and the count is logged as an ``events-dropped`` event
once the store is back. Metrics never fail a task.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from .. import keys as K
from ..exceptions import StorageError
from ..serialize import pack
from ..storage import Script, Storage
from ..storage import commands as C
from .events import (
    FIELDS,
    EventsDropped,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    TasksFinished,
    Transfer,
    Transfers,
    wire,
    wire_column,
    wire_column_length,
)

__all__ = ["ENTRY_EVENTS", "FlushPolicy", "MetadataStorage"]

log = logging.getLogger("dagrt.metrics")

ENTRY_EVENTS = 256  # events per stream entry, at most


def _pos(model: Any, field: str) -> int:
    """Where ``field`` sits in the wire form of ``model``."""
    return 1 + FIELDS[model.code].index(field)


_WORKER = _pos(TaskExecutionMetrics, "worker_id")
_FAILED_FINAL = _pos(TaskFailed, "final")
_BYTES, _LOCAL = _pos(Transfer, "bytes"), _pos(Transfer, "local")
_STATUS, _MAKESPAN = _pos(RunFinished, "status"), _pos(RunFinished, "makespan")
_TS, _N_TASKS, _CLIENT = (_pos(RunSubmitted, f) for f in ("ts", "n_tasks", "client_id"))
_RUN = _pos(TaskExecutionMetrics, "run_id")
_FINISHED = TaskExecutionMetrics.code
_BATCH_FINISHED = TasksFinished.code
_BATCH_TRANSFERS = Transfers.code
_BATCH_WORKER = _pos(TasksFinished, "worker_id")

_FAILED = TaskFailed.code
_TRANSFER = Transfer.code
_SUBMITTED = RunSubmitted.code
_RUN_FINISHED = RunFinished.code
_TASK_CODES = frozenset({_FINISHED, _FAILED, _BATCH_FINISHED})


class FlushPolicy(BaseModel):
    """When buffered events are written. The conditions combine (any one flushes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_each_task: bool = Field(False, description="flush after every finished/failed task")
    interval: float | None = Field(1.0, gt=0, description="flush every this many seconds")
    max_events: int | None = Field(2000, ge=1, description="flush when this many are buffered")
    max_buffer: int = Field(500_000, ge=1, description="beyond this, drop (and count) events")


class MetadataStorage:
    """The event log's writer. ``async with`` it (or ``start()``/``aclose()``)."""

    def __init__(
        self,
        storage: Storage,
        policy: FlushPolicy | None = None,
        *,
        stream: str = K.events(),
    ) -> None:
        self.storage = storage
        self.policy = policy or FlushPolicy()
        self.stream = stream
        self.dropped = 0  # events lost to a full buffer, not yet reported
        self.written = 0
        self._buffer: deque[list[Any] | tuple[Any, ...]] = deque()
        self._sources: list[Any] = []  # objects whose collect() returns wire events
        self._ended: list[tuple[Any, Any]] = []  # removed sources, collected once more
        self._records: list[tuple[str, Any]] = []  # (key, builder of bytes) to write first
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._woken = False  # a wake-up is on its way to the flusher: don't send another
        self._flusher: asyncio.Task[None] | None = None
        self._flushing: asyncio.Lock | None = None  # made on the loop, by start()
        self._failing = False
        self._closing = False

    def __repr__(self) -> str:
        return f"<MetadataStorage {self.storage!r} buffered={len(self._buffer)}>"

    # -- emitting (any thread) ---------------------------------------------------------

    def emit(self, item: list[Any] | tuple[Any, ...]) -> None:
        """Buffer one event in wire form (``events.wire`` or a tuple in field order)."""
        policy = self.policy
        with self._lock:
            if len(self._buffer) >= policy.max_buffer:
                self.dropped += 1
                return
            self._buffer.append(item)
            size = len(self._buffer)
        if (policy.after_each_task and item[0] in _TASK_CODES) or (
            policy.max_events is not None and size >= policy.max_events
        ):
            self._trigger()

    def emit_event(self, event: Any) -> None:
        self.emit(wire(event))

    def emit_many(self, items: Iterable[list[Any] | tuple[Any, ...]]) -> None:
        """Buffer several events at once (one lock)."""
        policy = self.policy
        trigger = False
        with self._lock:
            for item in items:
                if len(self._buffer) >= policy.max_buffer:
                    self.dropped += 1
                    continue
                self._buffer.append(item)
                trigger = trigger or (policy.after_each_task and item[0] in _TASK_CODES)
            size = len(self._buffer)
        if trigger or (policy.max_events is not None and size >= policy.max_events):
            self._trigger()

    def add_record(self, key: str, build: Any) -> None:
        """Write ``build()`` (bytes) at ``key`` with the next flush, before its events.

        A run's graph goes this way: built in a thread, off the run's critical path.
        """
        with self._lock:
            self._records.append((key, build))
        self._trigger()

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
                return
        if then is not None:
            self.emit_event(then)

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
            loop.call_soon_threadsafe(wake.set)

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
        self._flusher = asyncio.create_task(self._run(), name="dagrt metrics flusher")

    async def _run(self) -> None:
        assert self._wake is not None
        interval = self.policy.interval
        while not self._closing:
            with anyio.move_on_after(interval if interval is not None else float("inf")):
                await self._wake.wait()
            self._wake.clear()
            self._woken = False  # before taking: a later trigger wakes the next round
            await self.flush()

    async def aclose(self) -> None:
        """Stop the flusher and write what is buffered (also when cancelled).

        The flusher is asked to stop, not cancelled: a flush under way finishes.
        """
        flusher, self._flusher = self._flusher, None
        with anyio.CancelScope(shield=True):
            if flusher is not None:
                self._closing = True
                if self._wake is not None:
                    self._wake.set()
                try:
                    await flusher
                except Exception:  # pragma: no cover - flush() keeps its own errors
                    log.exception("metrics: the flusher failed")
            await self.flush()

    # -- writing --------------------------------------------------------------------------

    def _take(self) -> tuple[list[list[Any] | tuple[Any, ...]], int]:
        """The buffered events (the recorders' too), and the count dropped meanwhile."""
        for source in list(self._sources):
            self.emit_many(source.collect())
        with self._lock:
            ended, self._ended = self._ended, []
        for source, then in ended:
            self.emit_many(source.collect())
            if then is not None:
                self.emit_event(then)
        with self._lock:
            items = list(self._buffer)
            self._buffer.clear()
            dropped, self.dropped = self.dropped, 0
        return items, dropped

    @staticmethod
    def _with_drops(items: list[Any], dropped: int) -> list[Any]:
        if not dropped:
            return items
        note = EventsDropped(kind="events-dropped", ts=time.time(), count=dropped)
        return [*items, wire(note)]

    def _give_back(self, items: list[list[Any] | tuple[Any, ...]], dropped: int) -> None:
        """A flush failed: put the events back in front, within the bound."""
        with self._lock:
            room = self.policy.max_buffer - len(self._buffer)
            keep = items[-room:] if room > 0 else []
            self.dropped += dropped + len(items) - len(keep)
            self._buffer.extendleft(reversed(keep))

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
        items, dropped = self._take()
        if not items and not dropped and not records:
            return 0
        # Events taken from the buffer are written (or given back) whatever happens
        # to the task that flushes: a cancelled flush must not lose them.
        written = 0
        try:
            with anyio.CancelScope(shield=True):
                written = await self._write(records, items, dropped)
        except BaseException:
            self._give_back(items, dropped)
            with self._lock:
                self._records[:0] = records
            raise
        return written

    async def _write(self, records: list[tuple[str, Any]], items: list[Any], dropped: int) -> int:
        try:
            if records:
                built = await anyio.to_thread.run_sync(_build_records, records)
                if built:
                    await self.storage.apipeline([C.set_(k, v) for k, v in built])
                records = []
            await write_events(self.storage, self.stream, self._with_drops(items, dropped))
        except StorageError as exc:
            if not self._failing:
                log.warning("metrics: cannot write events (kept for later): %s", exc)
            self._failing = True
            with self._lock:
                self._records[:0] = records
            self._give_back(items, dropped)
            return 0
        if self._failing:
            log.warning("metrics: the event log is reachable again")
        self._failing = False
        self.written += len(items)
        return len(items)

    def flush_sync(self) -> int:
        """Write the buffer from sync code (no event loop)."""
        with self._lock:
            records, self._records = self._records, []
        built = _build_records(records)
        if built:
            self.storage.pipeline([C.set_(k, v) for k, v in built])
        items, dropped = self._take()
        items = self._with_drops(items, dropped)
        if items:
            for cmds, after in _plan(self.stream, items):
                replies = self.storage.pipeline(cmds)
                for key, first, last in after(replies):
                    self.storage.run_script(RUN_RANGE, [key], [first, last])
            self.written += len(items)
        return len(items)


def _build_records(records: list[tuple[str, Any]]) -> list[tuple[str, bytes]]:
    """Each record's bytes; one that cannot be built is logged and left out (the
    events still go: a broken record must not stop the log)."""
    built = []
    for key, build in records:
        try:
            built.append((key, build()))
        except Exception:
            log.exception("metrics: cannot build the record %s (left out)", key)
    return built


async def write_events(
    storage: Storage, stream: str, items: list[list[Any] | tuple[Any, ...]]
) -> None:
    """Append events (wire form) to the log and update the runs index."""
    for cmds, after in _plan(stream, items):
        replies = await storage.apipeline(cmds)
        for key, first, last in after(replies):
            await storage.arun_script(RUN_RANGE, [key], [first, last])


def _run_range_twin(redis: Any, keys: list[str], argv: list[Any]) -> Any:
    """``run_range.lua`` for InMemoryStorage."""
    [key] = keys
    first = redis.call("HGET", key, "first")
    if first is None or K.entry_order(argv[0]) < K.entry_order(first):
        redis.call("HSET", key, "first", argv[0])
    last = redis.call("HGET", key, "last")
    if last is None or K.entry_order(last) < K.entry_order(argv[1]):
        redis.call("HSET", key, "last", argv[1])
    return 1


RUN_RANGE = Script.from_package("run_range.lua", _run_range_twin)


def _plan(stream: str, items: list[list[Any] | tuple[Any, ...]]) -> list[Any]:
    """The commands that log ``items``: stream entries, then the runs index (which needs
    the entries' ids, so it goes in a second round trip)."""
    by_run: dict[str, list[list[Any] | tuple[Any, ...]]] = {}
    for item in items:
        by_run.setdefault(item[_RUN], []).append(item)
    entries: list[C.Cmd] = []
    owners: list[str] = []
    index_now: list[C.Cmd] = []
    for run_id, events in by_run.items():
        for start in range(0, len(events), ENTRY_EVENTS):
            chunk = events[start : start + ENTRY_EVENTS]
            entries.append(C.xadd(stream, {"r": run_id, "n": len(chunk), "d": pack(chunk)}))
            owners.append(run_id)
        if run_id:
            index_now += _index_updates(run_id, events)

    def after(replies: list[Any]) -> list[tuple[str, Any, Any]]:
        """Each run's record key and the range of entries just written (for RUN_RANGE)."""
        first: dict[str, bytes] = {}
        last: dict[str, bytes] = {}
        for run_id, entry_id in zip(owners, replies, strict=False):
            if run_id:
                first.setdefault(run_id, entry_id)
                last[run_id] = entry_id
        return [(K.run_record(r), first[r], last[r]) for r in first]

    return [(entries + index_now, after)]


def _index_updates(run_id: str, events: list[list[Any] | tuple[Any, ...]]) -> list[C.Cmd]:
    """The runs index: counts, bytes moved, workers, status, for one run's new events."""
    key = K.run_record(run_id)
    done = failed = moved = 0
    workers: set[str] = set()
    fields: dict[str, Any] = {}
    cmds: list[C.Cmd] = []
    for item in events:
        code = item[0]
        if code == _FINISHED:
            done += 1
            workers.add(item[_WORKER])
        elif code == _FAILED:
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
            )
            cmds.append(C.zadd(K.runs_index(), {run_id: item[_TS]}))
        elif code == _RUN_FINISHED:
            fields.update(status=item[_STATUS], finished=item[_TS], makespan=item[_MAKESPAN])
    if done:
        cmds.append(C.hincrby(key, "done", done))
    if failed:
        cmds.append(C.hincrby(key, "failed", failed))
    if moved:
        cmds.append(C.hincrby(key, "bytes", moved))
    workers.discard("")
    if workers:
        fields.update({f"w:{w}": 1 for w in workers})
    if fields:
        cmds.append(C.hset(key, fields))
    return cmds
