"""The worker process: consume ready tasks from the stream, run them, complete them.

``Worker.run()`` owns its event loop (the ``dagrt worker`` command);
``Worker.async_run()`` runs inside one (tests, ``LocalCluster`` in-process);
``burst=True`` makes it return once the stream is drained and nothing is in flight.

One stream entry names one ready task. The worker loads its inputs (from memory
when it produced them, else one ``MGET``), runs it, and sends the output and the
``complete`` script in one pipelined round trip. If the script hands it a child
(Wukong's "become": the worker holds one of the child's inputs), it runs that
child next in the same slot; the entry is acknowledged, inside the script, only
when the chain ends. Entries of a worker that died are taken over with
``XAUTOCLAIM`` after ``claim_timeout`` seconds of idleness; a live worker renews
its own entries on every heartbeat, so a long task is never taken over.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from .. import keys as K
from ..exceptions import (
    SerializationError,
    StorageConnectionError,
    StorageError,
    ValueTooLargeError,
    WorkerLostError,
    exception_type_name,
    user_traceback,
)
from ..graph import retry_wait
from ..metrics.events import RUN_ENDED, WorkerHeartbeat, WorkerStarted, WorkerStopped
from ..metrics.policy import FlushPolicy
from ..metrics.recorder import (
    DOWNLOAD,
    LOCAL,
    UPLOAD,
    BatchRows,
    TransferBatch,
    task_failed,
    task_finished,
    task_started,
)
from ..metrics.wire import wire
from ..metrics.writer import MetadataStorage
from ..scheduler import (
    Completion,
    complete_cmd,
    fail_cmd,
    load_scripts_cmds,
    load_spec,
    trim_acked,
)
from ..serialize import Frame, loads, pack
from ..storage import RedisStorage, Storage
from ..storage import commands as C
from ..storage.base import NoScriptError
from .executor import Executor, error_record, permanent
from .runs import FunctionCache, RunContext, RunTable, ValueCache

__all__ = ["Worker", "WorkerSettings"]

log = logging.getLogger("dagrt.worker")

READY_LINE = "dagrt-worker ready"
MAX_LOST = 3  # deliveries of one task whose workers died before a task counts as lost
BIG_FRAME = 1 << 20  # frames larger than this are deserialized in a thread
IDLE_FLUSH = 0.5  # seconds a worker with buffered events waits idle before writing them
STOP_TIMEOUT = 2.0  # seconds the last heartbeat ("stopped") may take
# Outputs at least this large try to stay in memory (their one child running here);
# smaller ones are cheaper to upload at once than to risk a second round trip.
LOCAL_MIN = 64 * 1024


@dataclass
class WorkerSettings:
    # Stream entries in flight at once. Tiny tasks are run in batches, so a large
    # window is what makes them fast; tasks that run in threads are held to
    # threads + 1 in flight, so that heavy work is not hoarded by one worker.
    concurrency: int = 128
    threads: int | None = None  # threads for sync task functions (default: cores)
    name: str | None = None
    stream: str = K.tasks_stream()
    group: str = K.TASKS_GROUP
    claim_timeout: float = 30.0  # idle seconds before another worker takes an entry over
    heartbeat: float = 5.0
    burst: bool = False
    keep_children: bool = True  # run a ready child whose input is here (Wukong "become")
    cache_bytes: int = 256 * 1024 * 1024  # outputs kept in memory for local children
    secret: bytes | None = None
    graceful_timeout: float = 10.0  # seconds in-flight tasks get at shutdown
    connect_timeout: float = 30.0  # seconds to keep retrying the first connection
    block: float = 2.0  # seconds one stream read waits
    heartbeat_file: str | None = None  # touched on every heartbeat (container health checks)
    metrics: bool = True  # log task, transfer and worker events
    metrics_url: str | None = None  # the event log's server (default: the same as tasks)
    flush: FlushPolicy = field(default_factory=FlushPolicy)

    def __post_init__(self) -> None:
        for label in ("concurrency",):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an int >= 1, got {self.threads!r}")
        if self.claim_timeout <= 0 or self.heartbeat <= 0:
            raise ValueError("claim_timeout and heartbeat must be > 0")
        if not isinstance(self.flush, FlushPolicy):
            raise TypeError(f"flush must be a dagrt.metrics.FlushPolicy, got {self.flush!r}")


class Worker:
    """One worker: consumes the tasks stream of the server behind ``storage``."""

    def __init__(
        self, storage: Storage | str, settings: WorkerSettings | None = None, **options: Any
    ) -> None:
        if settings is None:
            settings = WorkerSettings(**options)
        elif options:
            raise TypeError("pass either settings or keyword options, not both")
        self.settings = settings
        self.storage = RedisStorage(storage) if isinstance(storage, str) else storage
        host = socket.gethostname().split(".")[0]
        self.id = settings.name or f"{host}-{os.getpid()}-{os.urandom(2).hex()}"
        self.executor = Executor(settings.threads or os.cpu_count() or 1)
        self.runs = RunTable(self.storage, settings.secret)
        self.functions = FunctionCache(self.storage)
        self.values = ValueCache(settings.cache_bytes)
        # (run, task) -> set once the download of that output by another task here ended
        self._fetching: dict[tuple[str, int], anyio.Event] = {}
        self._slots = anyio.Semaphore(settings.concurrency)
        self._threads = settings.threads or os.cpu_count() or 1
        self._slow = 0  # chains in flight outside the fast lane
        self._fast_seen = False  # the last entry admitted was a tiny task: read wide
        self._slow_freed = anyio.Event()
        self._in_flight: dict[bytes, float] = {}  # entry id -> time taken
        self._running: dict[bytes, str] = {}  # entry id -> key of the task it runs now
        self._stopping = anyio.Event()
        self._grace: anyio.CancelScope | None = None  # the wait for tasks in flight at stop
        self._hurried = False  # a second signal: no waiting for tasks in flight
        self.ready = anyio.Event()  # set once the worker serves
        self._idle: anyio.Event | None = None
        self._read_scope: anyio.CancelScope | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task_group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._owned: dict[bytes, bool] = {}  # entries whose chain runs in a task of its own
        self.counts = {"done": 0, "failed": 0, "kept": 0, "dead": 0, "claimed": 0, "local": 0}
        self.metrics: MetadataStorage | None = None
        if settings.metrics:
            metrics_storage = (
                RedisStorage(settings.metrics_url) if settings.metrics_url else self.storage
            )
            self.metrics = MetadataStorage(metrics_storage, settings.flush, source=self.id)
        # The fast lane's finished tasks and transfers, per run, until the next flush.
        self._batch_rows = BatchRows(self.id)
        if self.metrics is not None:
            self.metrics.add_source(self._batch_rows)
        self._failpoints = {
            tuple(item.split(":", 1))
            for item in os.environ.get("DAGRT_FAILPOINTS", "").split(",")
            if ":" in item
        }

    def __repr__(self) -> str:
        return f"<dagrt.Worker {self.id} {self.storage!r}>"

    # -- lifecycle ---------------------------------------------------------------

    def run(self, *, watch_stdin: bool = False) -> None:
        """Run until SIGTERM/SIGINT (or stdin closes, with ``watch_stdin``)."""
        gc.freeze()  # what start-up made lives for good: keep it out of collections
        anyio.run(self._main, watch_stdin)
        if self.executor.in_threads:
            # Sync tasks past the graceful timeout: their entries stay pending and another
            # worker takes them over. Python would wait for their threads at exit.
            log.warning(
                "worker %s: %d task(s) still running in threads: exiting without them",
                self.id,
                self.executor.in_threads,
            )
            logging.shutdown()
            sys.stdout.flush()
            os._exit(0)

    async def _main(self, watch_stdin: bool) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_signals)
            if watch_stdin:
                tg.start_soon(_watch_stdin, self.stop)
            await self.async_run(announce=True)
            tg.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self._stopping.is_set():  # a second one: do not wait for tasks in flight
                    log.warning("worker %s got signal %s again: stopping now", self.id, signum)
                    self._hurried = True
                    if self._grace is not None:
                        self._grace.cancel()
                    continue
                log.info("worker %s got signal %s: shutting down", self.id, signum)
                self.stop()

    def stop(self) -> None:
        """Ask the worker to stop: no new entries; in-flight tasks get ``graceful_timeout``.

        Thread-safe.
        """
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._stop_now)
        else:
            self._stop_now()

    def _stop_now(self) -> None:
        self._stopping.set()
        if self._read_scope is not None:
            self._read_scope.cancel()  # a blocked read drops its connection

    async def async_run(
        self,
        *,
        announce: bool = False,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until stopped (or, in burst mode, until the stream is drained)."""
        self._loop = asyncio.get_running_loop()
        await self._connect()
        if self.metrics is not None:
            await self.metrics.start()
            self._emit(
                [
                    wire(
                        WorkerStarted(
                            kind="worker-started",
                            ts=time.time(),
                            worker_id=self.id,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            threads=self._threads,
                            concurrency=self.settings.concurrency,
                        )
                    )
                ]
            )
        await self._heartbeat_once(status="started")
        if announce:
            print(f"{READY_LINE} {self.id}", flush=True)
        self.ready.set()
        task_status.started()
        try:
            async with anyio.create_task_group() as service:
                service.start_soon(self._heartbeats)
                service.start_soon(self._reclaimer)
                # One task per stream entry, in asyncio's own task group: it
                # costs a tenth of anyio's per spawn, which counts at 10k tasks/s.
                async with asyncio.TaskGroup() as tasks:
                    self._task_group = tasks
                    await self._consume(tasks)
                    # stop taking entries; give in-flight tasks a bounded time (none
                    # after a second signal)
                    with anyio.move_on_after(self.settings.graceful_timeout) as grace:
                        self._grace = grace
                        if not self._hurried:
                            await self._drained()
                    self._grace = None
                    for task in list(self._tasks):
                        task.cancel()
                service.cancel_scope.cancel()
        finally:
            self._task_group = None
            with anyio.CancelScope(shield=True):
                try:
                    with anyio.move_on_after(STOP_TIMEOUT):  # a server that does not answer
                        await self._heartbeat_once(status="stopped")
                except StorageError:
                    pass
                if self.metrics is not None:  # the last events, always (SIGTERM too)
                    self._emit(
                        [
                            wire(
                                WorkerStopped(
                                    kind="worker-stopped",
                                    ts=time.time(),
                                    worker_id=self.id,
                                    done=self.counts["done"],
                                    failed=self.counts["failed"],
                                )
                            )
                        ]
                    )
                    await self.metrics.aclose()

    async def _connect(self) -> None:
        """Retry the first connection with warnings, so start order does not matter."""
        deadline = time.monotonic() + self.settings.connect_timeout
        delay = 0.2
        while True:
            try:
                await self.storage.axgroup_create(self.settings.stream, self.settings.group, "0")
                await self.storage.apipeline(load_scripts_cmds())
                return
            except StorageConnectionError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("worker %s: %s; retrying in %.1f s", self.id, exc, delay)
                with anyio.move_on_after(delay):
                    await self._stopping.wait()
                if self._stopping.is_set():
                    raise
                delay = min(delay * 2, 5.0)

    async def _drained(self) -> None:
        if self._in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    # -- consuming -------------------------------------------------------------------

    async def _consume(self, tg: asyncio.TaskGroup) -> None:
        s = self.settings
        # stop() cancels this scope: waiting for a slot, or a read the server does not
        # answer (entries read and not yet admitted stay pending, for reclaim). One
        # scope for the loop: entering one per read cost ~5 us a read.
        with anyio.CancelScope() as scope:
            self._read_scope = scope
            while not self._stopping.is_set():
                reply = await self._read(s)
                entries = [e for _, es in reply for e in es]
                if entries:
                    for entry_id, _ in entries:
                        try:  # a free slot is taken without a turn of the loop
                            self._slots.acquire_nowait()
                        except anyio.WouldBlock:
                            await self._slots.acquire()
                        self._in_flight[entry_id] = time.monotonic()
                    self._spawn(tg, self._process_batch(entries))
                if s.burst and not entries and not self._in_flight:
                    return
        self._read_scope = None

    async def _read(self, s: WorkerSettings) -> list[Any]:
        """The next entries to work on (after waiting for room for them), or none."""
        # Wait for a free slot without holding it while the read blocks (the
        # reclaimer takes free slots too).
        if not self._slots.value:
            await self._slots.acquire()
            self._slots.release()
        taken = max(1, self._slots.value)
        if self._slow or not self._fast_seen:
            # Heavy work in flight, or tasks of unknown cost: take one more entry
            # than threads can run, so that other workers get their share.
            room = self._threads + 1 - self._slow
            if room <= 0:
                self._slow_freed = anyio.Event()
                await self._slow_freed.wait()
                return []
            taken = min(taken, room)
        block = min(s.block, 0.2) if s.burst else s.block
        reply: list[Any] = []
        try:
            # A read that does not wait goes through the shared pipelined
            # connection; only when nothing is there do we block (on a
            # connection of its own).
            reply = await self.storage.axreadgroup(s.group, self.id, {s.stream: ">"}, count=taken)
            if not reply:
                # Idle with events buffered (a run just ended, most likely): wait a
                # moment only, then write them, so the log is complete soon after.
                idle = (
                    self.metrics is not None
                    and s.flush.when_idle
                    and not self._in_flight
                    and self.metrics.buffered > 0
                )
                reply = await self.storage.axreadgroup(
                    s.group,
                    self.id,
                    {s.stream: ">"},
                    count=taken,
                    block=min(block, IDLE_FLUSH) if idle else block,
                )
                if idle and not reply and self.metrics is not None:
                    self.metrics.flush_soon()
        except StorageConnectionError as exc:
            log.warning("worker %s: reading the stream failed: %s", self.id, exc)
            reply = []
            with anyio.move_on_after(1.0):
                await self._stopping.wait()
        except StorageError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group vanished (flushed, or a server without
            # persistence restarted): make them again and go on.
            log.warning("worker %s: %s; creating the group again", self.id, exc)
            await self.storage.axgroup_create(s.stream, s.group, "0")
            reply = []
        return reply

    def _spawn(self, tg: asyncio.TaskGroup, coro: Any) -> None:
        task = tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self, entry_id: bytes) -> None:
        """An entry's work is over (done, failed, or left for reclaim): free its slot."""
        self._running.pop(entry_id, None)
        if self._in_flight.pop(entry_id, None) is not None:
            self._slots.release()
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    def _start(
        self, tg: asyncio.TaskGroup, entry_id: bytes, fields: dict[bytes, bytes], *, reclaimed: bool
    ) -> None:
        """Process one entry on its own (reclaimed entries)."""
        self._in_flight[entry_id] = time.monotonic()
        self._spawn(tg, self._process_batch([(entry_id, fields)], reclaimed=reclaimed))

    async def _process_batch(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]], reclaimed: bool = False
    ) -> None:
        """Admit entries read together; cheap tasks go through the fast lane as one batch,
        the others each get a chain of their own."""
        fast: dict[str, tuple[RunContext, list[tuple[list[bytes], int]]]] = {}
        try:
            for entry_id, fields in entries:
                try:
                    admitted = await self._admit(entry_id, fields)
                except StorageError as exc:
                    log.warning("worker %s: entry %s left for reclaim: %s", self.id, entry_id, exc)
                    admitted = None
                if admitted is None:
                    self._finish(entry_id)
                    continue
                ctx, index = admitted
                self._running[entry_id] = ctx.record(index).key
                if not reclaimed and self._fast_eligible(ctx, index):
                    fast.setdefault(ctx.run_id, (ctx, []))[1].append(([entry_id], index))
                    self._fast_seen = True
                else:
                    self._fast_seen = False
                    self._chain_apart(ctx, [entry_id], index, check_done=reclaimed)
            for ctx, work in fast.values():
                handoffs = await self._guarded(self._run_fast(ctx, work), [w[0][0] for w in work])
                for acks, index, attempt, failed in handoffs or []:
                    self._chain_apart(ctx, acks, index, attempt=attempt, failed=failed)
        except Exception:  # never let one batch take the worker down; entries await reclaim
            log.exception("worker %s: internal error on a batch", self.id)
        finally:
            for entry_id, _ in entries:
                if entry_id in self._in_flight and not self._owned.get(entry_id):
                    self._finish(entry_id)

    async def _guarded(self, coro: Any, entry_ids: list[bytes]) -> Any:
        try:
            return await coro
        except StorageError as exc:
            # The entries stay pending; a worker takes them over after claim_timeout.
            log.warning("worker %s: entries %s left for reclaim: %s", self.id, entry_ids, exc)
        except Exception:
            log.exception("worker %s: internal error on entries %s", self.id, entry_ids)

    def _chain_apart(
        self,
        ctx: RunContext,
        acks: list[bytes],
        index: int,
        *,
        check_done: bool = False,
        attempt: int = 1,
        failed: int = 0,
    ) -> None:
        """Run a chain starting at ``index`` in a task of its own (it owns the entry);
        ``attempt`` and ``failed``: the first task's attempt, and its failures so far."""
        assert self._task_group is not None
        entry_id = acks[0]
        self._owned[entry_id] = True
        self._slow += 1

        async def chain() -> None:
            try:
                await self._guarded(
                    self._chain(ctx, acks, index, check_done, attempt, failed), [entry_id]
                )
            finally:
                self._owned.pop(entry_id, None)
                self._slow -= 1
                self._slow_freed.set()
                self._finish(entry_id)

        self._spawn(self._task_group, chain())

    async def _admit(
        self, entry_id: bytes, fields: dict[bytes, bytes]
    ) -> tuple[RunContext, int] | None:
        """The run and task an entry names, or ``None`` after acking or dead-lettering it."""
        try:
            run_id = fields[b"r"].decode()
            index = int(fields[b"t"])
            if not K.valid_run_id(run_id) or index < 0:
                raise ValueError("bad run id or task index")
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            await self._dead_letter(entry_id, fields, f"malformed entry: {exc}")
            return None
        try:
            ctx = await self.runs.get(run_id)
            if ctx is not None:
                ctx.record(index)
        except KeyError:
            if await self.storage.aexists(K.RunKeys(run_id).end):
                # The run ended while its table was loading (an empty table): no bad entry.
                self.runs.forget(run_id)
                await self._ack([entry_id])
            else:
                await self._dead_letter(entry_id, fields, f"run {run_id} has no task {index}")
            return None
        except (ValueError, SerializationError) as exc:
            await self._reject(run_id, index, entry_id, fields, exc)
            return None
        if ctx is None:
            if await self.storage.aexists(K.RunKeys(run_id).end):
                await self._ack([entry_id])  # a run that just ended: nothing to do
            else:
                await self._dead_letter(entry_id, fields, f"unknown run {run_id}")
            return None
        return ctx, index

    async def _reject(
        self, run_id: str, index: int, entry_id: bytes, fields: dict[bytes, bytes], exc: Exception
    ) -> None:
        """A record or function table that fails its signature: never run it, and fail
        the run so that its client hears why at once."""
        await self._dead_letter(entry_id, fields, f"rejected task record: {exc}")
        record = {
            "task": f"{run_id}#{index}",
            "index": index,
            "name": "?",
            "exc_type": "dagrt.SignatureError",
            "message": f"worker {self.id} rejected the task record: {exc}",
            "traceback": "",
            "worker": self.id,
            "attempt": 1,
            "run_id": run_id,
        }
        s = self.settings
        await self._send(
            [
                fail_cmd(
                    K.RunKeys(run_id),
                    index,
                    self.id,
                    record,
                    acks=[],
                    stream=s.stream,
                    group=s.group,
                )
            ]
        )

    async def _chain(
        self,
        ctx: RunContext,
        acks: list[bytes],
        index: int,
        check_done: bool,
        attempt: int = 1,
        failed: int = 0,
    ) -> None:
        """Run a task, then each child the completion hands back, one at a time.

        ``check_done``: the entry was taken over from a worker that went silent: its
        chain's tasks that worker completed are found done (their decisions stand),
        and the first that is not done is the one it was running; the tasks after
        that one it never started, so they run as they are.
        """
        current: int | None = index
        kept = False
        while current is not None and not ctx.stopped:
            current, was_done = await self._run_task(
                ctx, current, acks, check_done, kept, attempt, failed
            )
            check_done = check_done and was_done
            kept = True
            attempt, failed = 1, 0
            if current is not None:
                self.counts["kept"] += 1
                if not check_done and self._fast_eligible(ctx, current):
                    handoffs = await self._run_fast(ctx, [(acks, current)], ran_kept={current})
                    current = None
                    if handoffs:
                        _, current, attempt, failed = handoffs[0]
        if ctx.stopped:
            self.values.drop_run(ctx.run_id)
            self.runs.forget(ctx.run_id)

    # -- the fast lane -------------------------------------------------------------------

    def _fast_eligible(self, ctx: RunContext, index: int) -> bool:
        """Is the task's function measured tiny (and everything it needs at hand)?"""
        if self._failpoints:
            return False
        rec = ctx.record(index)
        if rec.leaves is None:
            return False
        fn = self.functions.cached(rec.fn)
        return fn is not None and self.executor.inline(fn)

    async def _run_fast(
        self,
        ctx: RunContext,
        work: list[tuple[list[bytes], int]],
        ran_kept: set[int] | None = None,
    ) -> list[tuple[list[bytes], int, int, int]]:
        """Run tiny tasks of one run as a batch: one MGET for their inputs, one round trip
        for their outputs and one ``complete`` call for all; then their kept children.
        ``ran_kept``: tasks of ``work`` this worker kept (runs after their parent).

        Returns the chains to go on outside the lane, to run by their owner: a kept
        child that is not tiny, a task with retries whose first attempt failed, as
        ``(acks, task, attempt, failures so far)``.

        The batch's span (from loading its inputs to its completion's reply) is
        shared out in the log among its tasks in the order they ran: each gets its
        call, its share of the download and of the upload, and an equal share of the
        rest, one after another, so their spans tile the batch's.
        """
        s = self.settings
        handoffs: list[tuple[list[Any], int, int, int]] = []
        rk = ctx.keys
        limit = await self.storage.amax_value_size()
        ttl = ctx.ttl_ms / 1000
        kept_now: set[int] = set(ran_kept or ())
        metrics = self.metrics is not None
        while work and not ctx.stopped:
            batch_start = time.time()
            recs = [ctx.record(index) for _, index in work]
            # (the run's rows are looked up where they are added: a flush between
            # two awaits takes them, and the next add goes to new ones)
            inputs = await self._load_inputs(ctx, recs, self._moves_of(ctx) if metrics else None)
            cmds: list[C.Cmd] = []
            items: list[Completion] = []
            made: list[tuple[Any, bytes | Frame, float, Loaded, float]] = []
            for (acks, index), rec, loaded in zip(work, recs, inputs, strict=True):
                if loaded is None:  # the run's data is gone: it ended
                    ctx.stopped = True
                    cmds.append(C.xack(s.stream, s.group, acks))
                    continue
                fn = self.functions.cached(rec.fn)
                assert fn is not None  # eligible for the fast lane: loaded
                began = time.time()
                try:
                    t0 = time.perf_counter()
                    value, frame = self.executor.call_inline(fn, rec, loaded.values)
                    elapsed = time.perf_counter() - t0
                    if len(frame) > limit:
                        raise ValueTooLargeError(
                            f"value for {rk.output(index)!r} is {len(frame):,} bytes; the "
                            f"server accepts at most {limit:,} (proto-max-bulk-len)"
                        )
                except Exception as exc:
                    tb = user_traceback(exc)
                    if (
                        rec.retries
                        and not isinstance(exc, ValueTooLargeError)
                        and not permanent(exc)
                    ):
                        # The next attempts wait (the retry delay): not in a batch.
                        self._emit(
                            [
                                self._started_event(ctx, rec, began, 1),
                                self._failed_event(ctx, rec, exc, tb, 1, final=False),
                            ]
                        )
                        handoffs.append((acks, index, 2, 1))
                        continue
                    cmds.append(self._fail_cmd(ctx, rec, exc, tb, 1, acks, started_at=began))
                    continue
                local = len(frame) >= LOCAL_MIN and self._local_ok(ctx, rec)
                if not local:
                    cmds.append(C.set_(rk.output(index), frame, ex=ttl))
                may_keep = s.keep_children and ctx.keep_children and bool(rec.children)
                items.append(Completion(index, rec.children, acks, may_keep, local))
                made.append((value, frame, elapsed, loaded, began))
            if items:
                cmds.append(complete_cmd(rk, items, self.id, stream=s.stream, group=s.group))
            if not cmds:
                break
            sent = time.time()
            sent_replies = await self._send(cmds)
            replies = list(sent_replies[-1]) if items else []
            # Outputs kept in memory whose child was not ready after all: store them
            # and complete them again (the script changed nothing for them).
            retry = [j for j, r in enumerate(replies) if _text(r[0]) == "upload"]
            if retry:
                again = [
                    Completion(items[j].index, items[j].children, items[j].acks, items[j].may_keep)
                    for j in retry
                ]
                second = [C.set_(rk.output(items[j].index), made[j][1], ex=ttl) for j in retry]
                second.append(complete_cmd(rk, again, self.id, stream=s.stream, group=s.group))
                for j, reply in zip(retry, (await self._send(second))[-1], strict=True):
                    replies[j] = reply
                    items[j] = again[retry.index(j)]
            ended = time.time()
            upload_share = (ended - sent) / max(1, len(items))
            nxt: list[tuple[list[Any], int]] = []
            finish = move = None
            if metrics:
                done, moves = self._batch_rows.of(ctx.run_id)
                finish, move = done.rows.extend, moves.rows.extend
            spans = _shares(
                batch_start,
                ended,
                [
                    elapsed + loaded.seconds + (0.0 if item.local else upload_share)
                    for item, (_, _, elapsed, loaded, _) in zip(items, made, strict=True)
                ],
            )
            for item, (value, frame, elapsed, loaded, _), reply, (start, end) in zip(
                items, made, replies, spans, strict=True
            ):
                code, kept = _text(reply[0]), _text(reply[1])
                size = len(frame)
                self.counts["done"] += 1
                self.counts["local"] += item.local
                if finish is not None and move is not None:  # the rows FinishedBatch.add
                    # and TransferBatch.add append (inline: a call per row costs here)
                    finish(
                        (
                            item.index,
                            1,
                            start,
                            end,
                            elapsed,
                            loaded.nbytes,
                            size,
                            loaded.seconds,
                            0.0 if item.local else upload_share,
                            item.index in kept_now,
                        )
                    )
                    if not item.local:
                        move((size, upload_share, UPLOAD, item.index, -1, False))
                if item.children:
                    self.values.put(ctx.run_id, item.index, value, size)
                if code == "stop":
                    ctx.stopped = True
                elif kept:
                    self.counts["kept"] += 1
                    child = int(kept.rstrip("*"))
                    kept_now.add(child)
                    if self._fast_eligible(ctx, child):
                        nxt.append((list(item.acks), child))
                    else:
                        handoffs.append((list(item.acks), child, 1, 0))
            if self.metrics is not None:
                self.metrics.tasks_added()
            work = nxt
        if ctx.stopped:
            self.values.drop_run(ctx.run_id)
            self.runs.forget(ctx.run_id)
        return handoffs

    def _moves_of(self, ctx: RunContext) -> Callable[[], TransferBatch]:
        return lambda: self._batch_rows.of(ctx.run_id)[1]

    async def _load_inputs(
        self,
        ctx: RunContext,
        recs: list[Any],
        moves: TransferBatch | Callable[[], TransferBatch] | None,
    ) -> list[Loaded | None]:
        """Parent values of each task: from memory, else one MGET for all of them.

        ``None`` for a task whose parent's output is gone (the run ended). Notes a
        transfer per input in ``moves`` (or the batch ``moves()`` gives, asked again
        after the download): ``local`` when it was in memory here.
        """
        run_id = ctx.run_id
        out: list[Loaded | None] = []
        wanted: dict[int, None] = {}
        move = _rows_of(moves)  # the rows TransferBatch.add appends, extended inline
        for rec in recs:
            loaded = Loaded([])
            for p in rec.parents:
                found, value, size = self.values.get(run_id, p)
                if found:
                    self.values.used(run_id, p, len(ctx.record(p).children))
                    loaded.values.append(value)
                    loaded.nbytes += size
                    if move is not None:
                        move((size, 0.0, LOCAL, p, rec.index, True))
                else:
                    loaded.values.append(_MISSING)
                    wanted[p] = None
            out.append(loaded)
        if wanted:
            fetched = await self._fetch(ctx, list(wanted))
            move = _rows_of(moves)
            for j, rec in enumerate(recs):
                partial = out[j]
                assert partial is not None
                loaded = partial
                for k, p in enumerate(rec.parents):
                    if loaded.values[k] is not _MISSING:
                        continue
                    value, size, share, local = fetched[p]
                    if value is _MISSING:  # a parent's output is gone: the run ended
                        out[j] = None
                        break
                    self.values.used(run_id, p, len(ctx.record(p).children))
                    loaded.values[k] = value
                    loaded.nbytes += size
                    loaded.seconds += share
                    if move is not None:
                        move((size, share, LOCAL if local else DOWNLOAD, p, rec.index, local))
        return out

    async def _fetch(
        self, ctx: RunContext, keys: list[int]
    ) -> dict[int, tuple[Any, int, float, bool]]:
        """Outputs of ``keys`` from storage (one MGET): ``{task: (value, bytes, seconds,
        local)}``, ``_MISSING`` for an output that is gone; ``local``: it came from
        this worker's memory after all (another task here had just downloaded it).

        An output with several children is kept in memory once downloaded (other
        children may run here; the cache's budget bounds it), and a download of it
        already under way for another task here is waited for, not repeated: a
        72 MB matrix read by 4 tasks of one worker crossed the network 4 times.
        """
        run_id = ctx.run_id
        mine: list[int] = []
        theirs: list[tuple[int, anyio.Event]] = []
        shared: set[int] = set()
        for p in keys:
            if len(ctx.record(p).children) > 1:
                shared.add(p)
                other = self._fetching.get((run_id, p))
                if other is not None:
                    theirs.append((p, other))
                    continue
                self._fetching[(run_id, p)] = anyio.Event()
            mine.append(p)
        fetched: dict[int, tuple[Any, int, float, bool]] = {}
        try:
            t0 = time.perf_counter()
            frames = await self.storage.amget([ctx.keys.output(p) for p in mine]) if mine else []
            seconds = time.perf_counter() - t0
            total = sum(len(f) for f in frames if f is not None) or 1
            for p, frame in zip(mine, frames, strict=True):
                if frame is None:
                    # Kept in memory by a worker that died? Then compute it again here.
                    found, value, size = (
                        self.values.get(run_id, p)
                        if await self._restore(ctx, p)
                        else (False, None, 0)
                    )
                    fetched[p] = (value, size, 0.0, True) if found else (_MISSING, 0, 0.0, False)
                    continue
                what = f"output of task {p}"
                if len(frame) > BIG_FRAME:
                    value = await anyio.to_thread.run_sync(
                        functools.partial(loads, frame, what=what), limiter=self.executor.limiter
                    )
                else:
                    value = loads(frame, what=what)
                fetched[p] = (value, len(frame), seconds * len(frame) / total, False)
                if p in shared:
                    self.values.put(run_id, p, value, len(frame))
        finally:
            for p in mine:
                if p in shared:
                    self._fetching.pop((run_id, p)).set()
        for p, done in theirs:
            await done.wait()
            found, value, size = self.values.get(run_id, p)
            if found:
                fetched[p] = (value, size, 0.0, True)
            else:  # that download failed, or the cache had no room: read it again
                fetched.update(await self._fetch(ctx, [p]))
        return fetched

    async def _restore(self, ctx: RunContext, index: int) -> bool:
        """Recompute task ``index`` whose output was kept in memory only, by a worker
        that died before its child finished (its done mark ends with ``*``).

        Such outputs form a chain upwards (each was the last parent of the next), so
        the chain is found first and recomputed top down into this worker's memory;
        no recursion, however long. False if the output is gone for another reason
        (the run ended).
        """
        rk = ctx.keys
        chain = [index]
        while True:
            rec = ctx.record(chain[-1])
            here = [q for q in rec.parents if not self.values.get(ctx.run_id, q)[0]]
            replies = await self._send(
                [C.exists([rk.output(q)]) for q in here]
                + [C.hmget(rk.done, [str(q) for q in chain[-1:] + here])]
            )
            marks = replies[-1]
            if not (marks[0] or b"").endswith(b"*"):
                return False  # not kept in memory: truly gone
            local = [
                q
                for q, stored, mark in zip(here, replies[:-1], marks[1:], strict=True)
                if not stored and (mark or b"").endswith(b"*")
            ]
            if not local:
                break
            chain.append(local[0])
        for q in reversed(chain):
            rec = ctx.record(q)
            fn = await self.functions.get(rec.fn)
            # Logged as the task's next attempt, here (its output is made again).
            [lost, _] = await self._send(
                [C.hincrby(rk.lost, str(q), 1), C.expire(rk.lost, ctx.ttl_ms / 1000)]
            )
            attempt = int(lost) + 1
            started = time.time()
            self._emit([self._started_event(ctx, rec, started, attempt)])
            moves = TransferBatch() if self.metrics is not None else None
            [loaded] = await self._load_inputs(ctx, [rec], moves)
            if loaded is None:
                self._emit([self._ended_event(ctx, rec, attempt)])
                return False
            outcome = await self.executor.run(fn, rec, loaded.values, attempt=attempt)
            if not outcome.ok:
                assert outcome.error is not None
                self._emit(
                    [
                        self._failed_event(
                            ctx, rec, outcome.error, outcome.traceback, outcome.attempt, final=True
                        )
                    ]
                )
                return False
            self.values.put(ctx.run_id, q, outcome.value, len(outcome.frame))
            self.counts["restored"] = self.counts.get("restored", 0) + 1
            self._emit_finished(ctx, rec, outcome, started, loaded, moves, 0.0, False)
        return True

    # -- one task --------------------------------------------------------------------

    async def _run_task(
        self,
        ctx: RunContext,
        index: int,
        acks: list[bytes],
        check_done: bool,
        kept: bool,
        attempt: int = 1,
        failed: int = 0,
    ) -> tuple[int | None, bool]:
        """Run one task and complete it; the child to run next, if the script kept one,
        and whether the task was found done (``check_done``) rather than run.

        ``attempt`` numbers its first attempt here and ``failed`` counts the failures
        it had before (each uses up one of its retries, and the backoff goes on).
        """
        rec = ctx.record(index)
        rk = ctx.keys
        s = self.settings
        self._running[acks[0]] = rec.key
        if check_done:
            # A reclaimed entry: the task may be done already (its worker died
            # later); then its output is stored and the remembered decision holds.
            previous, lost, _ = await self._send(
                [
                    C.hget(rk.done, str(index)),
                    C.hincrby(rk.lost, str(index), 1),
                    C.expire(rk.lost, ctx.ttl_ms / 1000),
                ]
            )
            if previous is not None:
                return await self._complete(ctx, index, acks, may_keep=False), True
            if int(lost) > MAX_LOST:
                exc = WorkerLostError(
                    f"the worker running task {rec.key} died {int(lost) - 1} times"
                )
                await self._send([self._fail_cmd(ctx, rec, exc, "", int(lost), acks)])
                return None, False
            # The attempt of the worker that went silent ended with it: say so (its
            # task-started may be in the log), and count this one as the next.
            attempt = int(lost) + 1
            lost_exc = WorkerLostError(
                f"the worker running this attempt went silent; worker {self.id} took the task over"
            )
            self._emit([self._failed_event(ctx, rec, lost_exc, "", attempt - 1, final=False)])
        if failed:  # the first attempt failed in the fast lane: its retry waits first
            await anyio.sleep(retry_wait(rec.retry_delay, failed))
        started = time.time()
        self._emit([self._started_event(ctx, rec, started, attempt)])
        if rec.leaves is None and rec.spec_key is not None:
            frame = await self.storage.aget(rec.spec_key)
            if frame is None:
                ctx.stopped = True
                self._emit([self._ended_event(ctx, rec, attempt)])
                await self._ack(acks)
                return None, False
            load_spec(rec, frame)
        moves = TransferBatch() if self.metrics is not None else None
        try:
            fn = await self.functions.get(rec.fn)
            [loaded] = await self._load_inputs(ctx, [rec], moves)
        except SerializationError as exc:
            cause = exc.__cause__ or exc
            await self._send([self._fail_cmd(ctx, rec, cause, _tb(exc), attempt, acks)])
            return None, False
        if loaded is None:  # the run's data is gone: it ended
            ctx.stopped = True
            self._emit([self._ended_event(ctx, rec, attempt)])
            await self._ack(acks)
            return None, False
        self._failpoint("before_run", rec.name)
        outcome = await self.executor.run(
            fn,
            rec,
            loaded.values,
            on_retry=self._retrying(ctx),
            attempt=attempt,
            retries=max(0, rec.retries - failed),
            on_attempt=self._attempting(ctx, rec),
            alive=lambda: not ctx.stopped,
        )
        if outcome.stopped:  # the run ended while the task waited for a thread
            self._emit([self._ended_event(ctx, rec, attempt)])
            await self._ack(acks)
            return None, False
        if outcome.attempt != attempt:  # a retry: the task's span is its last attempt's
            started = outcome.attempt_started
        if not outcome.ok:
            assert outcome.error is not None
            await self._send(
                [self._fail_cmd(ctx, rec, outcome.error, outcome.traceback, outcome.attempt, acks)]
            )
            return None, False
        upload = C.set_(rk.output(index), outcome.frame, ex=ctx.ttl_ms / 1000)
        may_keep = s.keep_children and bool(rec.children) and ctx.keep_children
        self._failpoint("before_upload", rec.name)
        sent = time.time()
        if len(outcome.frame) >= LOCAL_MIN and self._local_ok(ctx, rec):
            # Its one child may become ready now and run here: then the output
            # never needs to leave this worker (nothing is uploaded).
            [reply] = await self._send([self._complete_cmd(ctx, index, acks, True, local=True)])
            code = reply[0][0]
            if (code.decode() if isinstance(code, bytes) else code) != "upload":
                self.values.put(ctx.run_id, index, outcome.value, len(outcome.frame))
                self.counts["done"] += 1
                self.counts["local"] += 1
                self._emit_finished(ctx, rec, outcome, started, loaded, moves, 0.0, kept)
                return self._decision(ctx, reply), False
        try:
            if self._failpoints:  # crash tests need the gap between the two
                await self._send([upload])
                self._failpoint("after_upload", rec.name)
            replies = await self._send([upload, self._complete_cmd(ctx, index, acks, may_keep)])
        except StorageError as exc:
            if isinstance(exc, StorageConnectionError):
                raise
            # e.g. ValueTooLargeError: the output cannot be stored
            await self._send([self._fail_cmd(ctx, rec, exc, _tb(exc), outcome.attempt, acks)])
            return None, False
        ended = time.time()
        size = len(outcome.frame)
        if moves is not None:
            moves.add(size, ended - sent, "upload", index, None, False)
        self._emit_finished(ctx, rec, outcome, started, loaded, moves, ended - sent, kept)
        if rec.children:
            self.values.put(ctx.run_id, index, outcome.value, size)
        self.counts["done"] += 1
        return self._decision(ctx, replies[1]), False

    def _emit_finished(
        self,
        ctx: RunContext,
        rec: Any,
        outcome: Any,
        started: float,
        loaded: Loaded,
        moves: TransferBatch | None,
        upload: float,
        kept: bool,
    ) -> None:
        """The task-finished event of a chain task, with its transfers."""
        if moves is None:
            return
        ended = time.time()
        self._emit(
            [
                task_finished(
                    ctx.run_id,
                    self.id,
                    rec.index,
                    rec.key,
                    rec.name,
                    outcome.attempt,
                    started,
                    ended,
                    outcome.ended - outcome.started,
                    loaded.nbytes,
                    len(outcome.frame),
                    loaded.seconds,
                    upload,
                    kept,
                ),
                moves.wire(ended, ctx.run_id, self.id),
            ]
        )

    def _local_ok(self, ctx: RunContext, rec: Any) -> bool:
        """May this task's output stay in memory here (see the complete script's mode "L")?

        Only for a task with exactly one child that is not an output of the run,
        when the run and the worker allow it (and no failpoint needs its upload).
        """
        return (
            ctx.keep_outputs
            and ctx.keep_children
            and self.settings.keep_children
            and len(rec.children) == 1
            and rec.index not in ctx.outputs
            and ("before_upload", rec.name) not in self._failpoints
            and ("after_upload", rec.name) not in self._failpoints
        )

    def _retrying(self, ctx: RunContext) -> Any:
        """What the executor calls when an attempt failed and another follows."""

        def on_retry(rec: Any, exc: BaseException, tb: str, attempt: int) -> None:
            self._emit([self._failed_event(ctx, rec, exc, tb, attempt, final=False)])

        return on_retry

    def _attempting(self, ctx: RunContext, rec: Any) -> Any:
        """What the executor calls as a task's next attempt begins."""

        def on_attempt(attempt: int) -> None:
            self._emit([self._started_event(ctx, rec, time.time(), attempt)])

        return on_attempt

    def _started_event(self, ctx: RunContext, rec: Any, ts: float, attempt: int) -> tuple[Any, ...]:
        return task_started(ts, ctx.run_id, self.id, rec.index, rec.key, rec.name, attempt)

    def _failed_event(
        self,
        ctx: RunContext,
        rec: Any,
        exc: BaseException,
        tb: str,
        attempt: int,
        *,
        final: bool,
        exc_type: str | None = None,
    ) -> tuple[Any, ...]:
        return task_failed(
            time.time(),
            ctx.run_id,
            self.id,
            rec.index,
            rec.key,
            rec.name,
            attempt,
            exc_type or exception_type_name(type(exc)),
            str(exc),
            tb,
            final,
        )

    def _ended_event(self, ctx: RunContext, rec: Any, attempt: int) -> tuple[Any, ...]:
        """The end of an attempt that did not run: its run ended first (not a failure
        of the task; the log needs every started attempt to end)."""
        ended = RuntimeError("its run ended (cancelled, failed, or cleaned up) before it ran")
        return self._failed_event(ctx, rec, ended, "", attempt, final=True, exc_type=RUN_ENDED)

    def _fail_cmd(
        self,
        ctx: RunContext,
        rec: Any,
        exc: BaseException,
        tb: str,
        attempt: int,
        acks: list[bytes],
        *,
        started_at: float | None = None,
    ) -> C.Cmd:
        """The ``fail`` call for a task that failed for good (and its events: the
        attempt's start too when ``started_at`` says when it began, not logged yet)."""
        record = error_record(rec, exc, tb, worker=self.id, attempt=attempt, run_id=ctx.run_id)
        failed = self._failed_event(
            ctx, rec, exc, tb, attempt, final=True, exc_type=record["exc_type"]
        )
        if started_at is not None:
            self._emit([self._started_event(ctx, rec, started_at, attempt), failed])
        else:
            self._emit([failed])
        ctx.stopped = True
        self.counts["failed"] += 1
        s = self.settings
        return fail_cmd(
            ctx.keys, rec.index, self.id, record, acks=acks, stream=s.stream, group=s.group
        )

    def _emit(self, events: Sequence[list[Any] | tuple[Any, ...]]) -> None:
        if self.metrics is not None:
            self.metrics.emit_many(events)

    def _complete_cmd(
        self,
        ctx: RunContext,
        index: int,
        acks: list[bytes],
        may_keep: bool,
        local: bool = False,
    ) -> C.Cmd:
        rec = ctx.record(index)
        item = Completion(index, rec.children, acks, may_keep, local)
        return complete_cmd(
            ctx.keys, [item], self.id, stream=self.settings.stream, group=self.settings.group
        )

    async def _complete(
        self, ctx: RunContext, index: int, acks: list[bytes], may_keep: bool
    ) -> int | None:
        [reply] = await self._send([self._complete_cmd(ctx, index, acks, may_keep)])
        return self._decision(ctx, reply)

    def _decision(self, ctx: RunContext, reply: Any) -> int | None:
        [one] = reply  # the script answers one pair per task completed
        code, kept = (x.decode() if isinstance(x, bytes) else str(x) for x in one)
        if code == "stop":
            ctx.stopped = True
            return None
        if code == "missing":  # pragma: no cover - the output was sent in the same pipeline
            raise StorageError(f"output of task {ctx.run_id}/{kept} vanished before completion")
        return int(kept.rstrip("*")) if kept else None

    async def _send(self, cmds: list[C.Cmd]) -> list[Any]:
        """A pipeline; scripts the server forgot (a restart) are loaded and the batch resent."""
        try:
            return await self.storage.apipeline(cmds)
        except NoScriptError:
            await self.storage.apipeline(load_scripts_cmds())
            return await self.storage.apipeline(cmds)

    async def _ack(self, ids: list[bytes]) -> None:
        s = self.settings
        await self.storage.apipeline([C.xack(s.stream, s.group, ids), C.xdel(s.stream, ids)])

    async def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        log.warning("worker %s: dead-lettering entry %s: %s", self.id, entry_id, reason)
        record: dict[str | bytes, Any] = {
            "reason": reason,
            "worker": self.id,
            "entry": entry_id,
            "stream": self.settings.stream,
            "at": time.time(),
        }
        for k, v in fields.items():
            record[b"field:" + k] = v
        s = self.settings
        await self.storage.apipeline(
            [
                C.xadd(K.dead_letter(), record, maxlen=100_000),
                C.xack(s.stream, s.group, [entry_id]),
                C.xdel(s.stream, [entry_id]),
            ]
        )
        self.counts["dead"] += 1

    def _failpoint(self, point: str, name: str) -> None:
        """Crash tests: SIGKILL this process at ``point`` for tasks named ``name``.

        Armed by ``DAGRT_FAILPOINTS="point:name,..."``; each fires once per
        machine (a marker file in ``DAGRT_FAILPOINT_DIR`` says it fired).
        """
        if (point, name) not in self._failpoints:
            return
        marker = os.path.join(
            os.environ.get("DAGRT_FAILPOINT_DIR", "/tmp"), f"dagrt-failpoint-{point}-{name}"
        )
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        log.warning("worker %s: failpoint %s:%s fires", self.id, point, name)
        os.kill(os.getpid(), signal.SIGKILL)

    # -- liveness ---------------------------------------------------------------------

    async def _heartbeat_once(self, status: str = "alive") -> None:
        s = self.settings
        info = {
            "id": self.id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "status": status,
            "ts": time.time(),
            "in_flight": len(self._in_flight),
            **self.counts,
        }
        cmds = [
            C.hset(K.workers(), {self.id: pack(info)}),
            C.set_(K.worker_alive(self.id), status, ex=3 * s.heartbeat)
            if status != "stopped"
            else C.delete([K.worker_alive(self.id)]),
        ]
        if status == "alive" and self.metrics is not None:
            running = list(self._running.values())[:20]
            self._emit(
                [
                    wire(
                        WorkerHeartbeat(
                            kind="worker-heartbeat",
                            ts=time.time(),
                            worker_id=self.id,
                            running=running,
                            memory=_rss(),
                            done=self.counts["done"],
                            failed=self.counts["failed"],
                        )
                    )
                ]
            )
        if self._in_flight and status == "alive":
            # Renew our own pending entries so that a long task is not taken over.
            ids = list(self._in_flight)
            cmds.append(C.Cmd(("XCLAIM", s.stream, s.group, self.id, 0, *ids, "JUSTID")))
        await self.storage.apipeline(cmds)
        if self.settings.heartbeat_file and status != "stopped":
            await anyio.Path(self.settings.heartbeat_file).touch()

    async def _heartbeats(self) -> None:
        while True:
            await anyio.sleep(self.settings.heartbeat)
            try:
                await self._heartbeat_once()
            except StorageError as exc:
                log.warning("worker %s: heartbeat failed: %s", self.id, exc)

    async def _reclaimer(self) -> None:
        """Take over entries whose worker went silent for ``claim_timeout`` seconds."""
        s = self.settings
        interval = max(0.5, min(s.claim_timeout / 2, 10.0))
        while not self._stopping.is_set():
            try:
                await self._reclaim_once()
                await trim_acked(self.storage, s.stream)
            except StorageError as exc:
                log.warning("worker %s: reclaim failed: %s", self.id, exc)
            with anyio.move_on_after(interval):
                await self._stopping.wait()

    async def _reclaim_once(self) -> int:
        s = self.settings
        assert self._task_group is not None
        start: bytes | str = "0-0"
        taken = 0
        while True:
            free = self._slots.value
            if free == 0:
                return taken
            _next, entries, _deleted = await self.storage.axautoclaim(
                s.stream, s.group, self.id, s.claim_timeout, start=start, count=free
            )
            for entry_id, fields in entries:
                if entry_id in self._in_flight:
                    continue
                await self._slots.acquire()
                self.counts["claimed"] += 1
                taken += 1
                self._start(self._task_group, entry_id, fields, reclaimed=True)
            if _next in (b"0-0", "0-0"):
                return taken
            start = _next


_MISSING: Any = object()


def _shares(start: float, end: float, parts: list[float]) -> list[tuple[float, float]]:
    """``[start, end]`` cut into consecutive spans, one per part, each at least its part
    (plus an equal share of what the parts leave; scaled down if they exceed it)."""
    if not parts:
        return []
    total = end - start
    used = sum(parts)
    if used > total > 0:
        parts = [p * total / used for p in parts]
        used = total
    rest = max(0.0, total - used) / len(parts)
    out = []
    at = start
    for part in parts:
        out.append((at, at + part + rest))
        at += part + rest
    return out


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class Loaded:
    """A task's inputs, with what loading them took."""

    __slots__ = ("nbytes", "seconds", "values")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.nbytes = 0
        self.seconds = 0.0


def _rss() -> int:
    """Resident memory of this process, in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _tb(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


async def _watch_stdin(stop: Any) -> None:
    """Stop when stdin reaches its end: the parent that started us is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
    except (OSError, ValueError):  # stdin is not a pipe: nothing to watch
        return
    try:
        while await reader.read(65536):
            pass
        stop()
    finally:
        transport.close()


def worker_info(raw: bytes) -> dict[str, Any]:
    """A heartbeat record from ``dagrt:workers``."""
    from ..serialize import unpack

    info: dict[str, Any] = unpack(raw)
    return info


def _rows_of(moves: TransferBatch | Callable[[], TransferBatch] | None) -> Any:
    """The ``extend`` of a transfer batch's rows (``None`` without metrics)."""
    if moves is None:
        return None
    return (moves() if callable(moves) else moves).rows.extend
