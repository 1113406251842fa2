"""A worker's life: start, serve, stop. :class:`Worker` puts the parts together.

``Worker.run()`` owns its event loop (the ``dagrt worker`` command);
``Worker.async_run()`` runs inside one (tests, embedding); ``burst=True`` makes
it return once the stream is drained and nothing is in flight.

What happens to one stream entry, and where:

1. :mod:`.consume` reads it (the read window) and admits it: its run's table
   (:mod:`.runs`), or a dead letter;
2. a lane runs it: :mod:`.fast_lane` (tiny tasks, in batches, on the loop) or
   :mod:`.chain` (everything else, a task of its own), with its inputs from
   :mod:`.inputs` (memory, storage, or made again) and the call in :mod:`.executor`;
3. :mod:`.completer` stores the output and calls the ``complete`` script
   (:mod:`dagrt.scheduler`), whose reply may hand the worker a child to run next;
4. :mod:`.tasklog` logs what happened; :mod:`.liveness` keeps the worker's
   heartbeat and takes over entries of workers that died.

With a host object store (``store``), large outputs stay on the host
(:mod:`dagrt.objects`): the worker joins the host's store when it starts (the
last process of the host to leave empties it), serves its objects to other hosts
on a data endpoint, removes a run's objects when the run ends, and every minute
removes those of runs whose keys are gone.

Native libraries (BLAS, OpenMP) of its tasks are held to ``native_threads`` threads per
task thread while it serves (:mod:`dagrt.native_threads`).

Stopping (SIGTERM/SIGINT, stdin closing with ``watch_stdin``, or :meth:`stop`):
no new entries, tasks in flight get ``graceful_timeout`` (none after a second
signal), then the last heartbeat and the last events, in a shielded scope.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .. import keys as K
from .. import native_threads
from ..exceptions import DagrtError, StorageConnectionError, StorageError
from ..metrics.writer import MetadataStorage
from ..objects import DataPlane, DataServer, HostStore, default_root, namespace_of, this_host
from ..scheduler import load_scripts_cmds
from ..secret import check_authenticated, loopback_host, unauthenticated_allowed
from ..storage import RedisStorage, Storage
from ..storage import commands as C
from .cache import ValueCache
from .chain import Chains
from .completer import Completer
from .consume import Consumer
from .executor import Executor
from .failpoints import Failpoints
from .fast_lane import FastLane
from .inputs import Inputs
from .liveness import Liveness
from .runs import FunctionCache, RunTable
from .settings import WorkerSettings
from .subruns import SubRuns
from .tasklog import TaskLog

__all__ = ["READY_LINE", "Worker"]

log = logging.getLogger("dagrt.worker")
STUCK_EXIT = 3  # the exit code of a worker whose task threads are all stuck
STUCK_GRACE = 1.0  # seconds they must stay stuck for it to stop

READY_LINE = "dagrt-worker ready"
DEFAULT_PRELOAD = ("numpy",)  # imported at start when installed (``preload`` unset)
STOP_TIMEOUT = 2.0  # seconds the last heartbeat ("stopped") may take
SWEEP_SECONDS = 60.0  # between sweeps of the host's store for runs whose keys are gone


def preload(modules: str | None) -> None:
    """Import ``modules`` (comma-separated; ``None``: numpy if it is installed) before
    any task runs: Python lets a thread that would deadlock on an import in progress
    see the module half-initialized (seen: numpy's ``ImportError: cannot import name
    ... partially initialized module`` in a fresh worker whose two task threads
    imported it while an array was unpickled)."""
    if modules is None:
        for name in DEFAULT_PRELOAD:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        return
    for name in filter(None, (m.strip() for m in modules.split(","))):
        if name == "none":
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:  # (a DagrtError: `dagrt worker` says it in one line)
            raise DagrtError(f"cannot preload module {name!r}: {exc}") from exc


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
        if isinstance(self.storage, RedisStorage):
            check_authenticated(
                settings.keyring,
                self.storage.config.url,
                "a dagrt worker",
                unauthenticated=settings.unauthenticated or unauthenticated_allowed(),
            )
        host = this_host()
        self.id = settings.name or f"{host}-{os.getpid()}-{os.urandom(2).hex()}"
        self.counts = {
            "done": 0,
            "failed": 0,
            "kept": 0,
            "dead": 0,
            "claimed": 0,
            "local": 0,
            "screened": 0,
            "fused": 0,
        }
        self.ready = anyio.Event()  # set once the worker serves
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics: MetadataStorage | None = None
        if settings.metrics:
            metrics_storage = (
                RedisStorage(settings.metrics_url) if settings.metrics_url else self.storage
            )
            self.metrics = MetadataStorage(metrics_storage, settings.flush, source=self.id)

        # the parts, each with what it needs
        self.executor = Executor(settings.thread_count, settings.native_budget)
        self.executor.on_stuck = self._on_stuck
        self.stuck = False  # every task thread is stuck in a call past its timeout
        self._stuck_check: asyncio.TimerHandle | None = None
        self.runs = RunTable(self.storage, settings.keyring)
        self.functions = FunctionCache(self.storage)
        self.values = ValueCache(settings.cache_bytes)
        self.plane: DataPlane | None = None
        self.data_server: DataServer | None = None
        failpoints = Failpoints()
        if settings.store:
            if settings.store != "auto":
                root = Path(settings.store)
            elif isinstance(self.storage, RedisStorage):
                root = default_root(namespace_of(self.storage.config.url))
            else:  # a storage of this process only
                root = default_root(f"process-{os.getpid()}")
            store = HostStore(root, settings.store_bytes)
            self.plane = DataPlane(
                store,
                settings.host_id or host,
                min_bytes=settings.store_min_bytes,
                keyring=settings.keyring,
            )
            self.data_server = DataServer(
                store,
                settings.data_bind,
                keyring=settings.keyring,
                mid_send=(lambda i: failpoints.hit("mid_send", str(i), self.id))
                if failpoints.armed("mid_send")
                else None,
            )
        # runs whose objects the host's store must drop (while the worker serves)
        self._ended_runs: MemoryObjectSendStream[str] | None = None
        running: dict[bytes, str] = {}  # entry id -> key of the task it runs now
        self.log = TaskLog(self.id, self.metrics)
        completer = Completer(
            self.storage,
            settings,
            self.id,
            self.values,
            self.log,
            self.counts,
            failpoints,
            self.plane,
        )
        self.inputs = inputs = Inputs(
            self.storage,
            self.executor,
            self.functions,
            self.values,
            self.log,
            self.counts,
            self.plane,
        )
        fast = FastLane(
            settings, self.executor, self.functions, inputs, completer, self.log, failpoints
        )
        subruns = SubRuns(self.storage, settings, self.id, completer, self.log)
        chains = Chains(
            self.storage,
            self.id,
            self.executor,
            self.functions,
            inputs,
            completer,
            fast,
            self.log,
            failpoints,
            running,
            self._forget,
            subruns,
        )
        self.consumer = Consumer(
            self.storage,
            settings,
            self.id,
            self.runs,
            fast,
            chains,
            completer,
            self.log,
            self.counts,
            running,
            self._forget,
        )
        self.liveness = Liveness(
            self.storage, settings, self.id, self.consumer, self.log, self.counts
        )

    def __repr__(self) -> str:
        return f"<dagrt.Worker {self.id} {self.storage!r}>"

    def _forget(self, run_id: str) -> None:
        """Drop what this worker holds of a run that ended."""
        self.values.drop_run(run_id)
        self.inputs.drop_run(run_id)
        self.runs.forget(run_id)
        if self._ended_runs is not None:  # its objects in the host's store go too
            try:
                self._ended_runs.send_nowait(run_id)
            except anyio.WouldBlock:  # the sweep will find them
                pass

    # -- running -----------------------------------------------------------------------

    def run(self, *, watch_stdin: bool = False) -> None:
        """Run until SIGTERM/SIGINT (or stdin closes, with ``watch_stdin``)."""
        gc.freeze()  # what start-up made lives for good: keep it out of collections
        anyio.run(self._main, watch_stdin)
        if self.stuck:  # (a pool restarts a worker that exits so: LocalCluster, compose)
            logging.shutdown()
            sys.stdout.flush()
            os._exit(STUCK_EXIT)
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
                if self.consumer.stopping.is_set():  # a second one: stop waiting
                    log.warning("worker %s got signal %s again: stopping now", self.id, signum)
                    self.consumer.hurry()
                    continue
                log.info("worker %s got signal %s: shutting down", self.id, signum)
                self.stop()

    def _on_stuck(self, stuck: int) -> None:
        """Calls past their timeout hold ``stuck`` task threads (they cannot be stopped):
        when they hold them all, this worker can run nothing more. It stops (no new
        entries) and its process exits with ``STUCK_EXIT``, for its pool to replace it."""
        if stuck < self.executor.threads or self.stuck or self._stuck_check is not None:
            return
        # a call that returns a moment later frees its thread: look again in a while
        self._stuck_check = asyncio.get_running_loop().call_later(STUCK_GRACE, self._still_stuck)

    def _still_stuck(self) -> None:
        self._stuck_check = None
        stuck = self.executor.stuck
        if stuck < self.executor.threads or self.stuck:
            return
        self.stuck = True
        log.error(
            "worker %s: all %d task threads are stuck in calls past their timeout; stopping"
            " (exit code %d: a pool starts another worker)",
            self.id,
            stuck,
            STUCK_EXIT,
        )
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
            loop.call_soon_threadsafe(self.consumer.stop)
        else:
            self.consumer.stop()

    async def async_run(
        self,
        *,
        announce: bool = False,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until stopped (or, in burst mode, until the stream is drained)."""
        self._loop = asyncio.get_running_loop()
        # The native thread budget, before any task imports a library that reads it.
        with native_threads.Limits(self.settings.native_budget):
            await anyio.to_thread.run_sync(preload, self.settings.preload)
            await self._serve(announce, task_status)

    async def _serve(self, announce: bool, task_status: anyio.abc.TaskStatus[None]) -> None:
        await self._connect()
        async with anyio.create_task_group() as log_writer:  # the event log's flusher
            if self.metrics is not None:
                await self.metrics.start(log_writer)
            try:
                async with anyio.create_task_group() as service:
                    if self.plane is not None:
                        await self._join_store(service)
                    s = self.settings
                    self.log.worker_started(s.thread_count, s.concurrency, s.resources)
                    await self.liveness.beat(status="started")
                    if announce:
                        print(f"{READY_LINE} {self.id}", flush=True)
                    self.ready.set()
                    task_status.started()
                    service.start_soon(self.liveness.heartbeats)
                    service.start_soon(self.liveness.reclaimer)
                    service.start_soon(self._follow_run_ends)
                    await self.consumer.serve()
                    service.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        with anyio.move_on_after(STOP_TIMEOUT):  # a server that does not answer
                            await self.liveness.beat(status="stopped")
                    except StorageError:
                        pass
                    if self.metrics is not None:  # the last events, always (SIGTERM too)
                        self.log.worker_stopped(self.counts["done"], self.counts["failed"])
                        await self.metrics.aclose()  # (its flusher stops: the group ends)
                    if self.plane is not None:  # the host's last process empties its store
                        await anyio.to_thread.run_sync(self.plane.store.close)

    async def _join_store(self, service: anyio.abc.TaskGroup) -> None:
        """Join the host's object store, serve it to other hosts, and keep it clean."""
        assert self.plane is not None
        assert self.data_server is not None
        await anyio.to_thread.run_sync(self.plane.store.open)
        self.plane.address = await service.start(
            self.data_server.serve, self.settings.data_advertise
        )
        server_host = (
            urlsplit(self.storage.config.url).hostname
            if isinstance(self.storage, RedisStorage)
            else None
        )
        if loopback_host(self.plane.address.rpartition(":")[0]) and not loopback_host(server_host):
            log.warning(
                "worker %s: its data endpoint %s is on loopback but the server is not:"
                " workers of other machines cannot fetch its outputs (they compute them"
                " again); start it with --data-bind 0.0.0.0:PORT --data-advertise ADDRESS",
                self.id,
                self.plane.address,
            )
        await self._sweep()
        send, receive = anyio.create_memory_object_stream[str](1 << 16)
        self._ended_runs = send
        service.start_soon(self._drop_ended_runs, receive)

    async def _drop_ended_runs(self, receive: MemoryObjectReceiveStream[str]) -> None:
        """Remove the objects of runs that ended, as the worker hears of them, and
        sweep the store for runs whose keys are gone every minute."""
        assert self.plane is not None
        try:
            while True:
                with anyio.move_on_after(SWEEP_SECONDS) as idle:
                    run_id = await receive.receive()
                if idle.cancelled_caught:
                    await self._sweep()
                else:
                    await anyio.to_thread.run_sync(self.plane.drop_run, run_id)
        finally:
            sender, self._ended_runs = self._ended_runs, None
            if sender is not None:
                sender.close()
            receive.close()

    async def _sweep(self) -> None:
        assert self.plane is not None
        store = self.plane.store
        try:
            runs = [r for r in await anyio.to_thread.run_sync(store.runs) if K.valid_run_id(r)]
            replies = await self.storage.apipeline([C.exists([K.RunKeys(r).meta]) for r in runs])
            gone = [r for r, alive in zip(runs, replies, strict=True) if not alive]
            await anyio.to_thread.run_sync(store.sweep, gone)
        except (StorageError, OSError) as exc:
            log.warning("worker %s: sweeping the object store failed: %s", self.id, exc)

    async def _follow_run_ends(self) -> None:
        """Hear of runs that ended (the control stream) until cancelled; a lost
        connection is retried, as the stream reads are."""
        while True:
            try:
                await self.runs.follow_ends(
                    self._forget, block=self.settings.block, on_lanes=self.consumer.lanes_rung
                )
            except StorageError as exc:
                log.warning("worker %s: following run ends failed: %s", self.id, exc)
                with anyio.move_on_after(1.0):
                    await self.consumer.stopping.wait()

    async def _connect(self) -> None:
        """Retry the first connection with warnings, so start order does not matter."""
        s = self.settings
        deadline = time.monotonic() + s.connect_timeout
        delay = 0.2
        stopping = self.consumer.stopping
        while True:
            try:
                await self.consumer.make_groups()
                await self.storage.apipeline(load_scripts_cmds())
                return
            except StorageConnectionError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("worker %s: %s; retrying in %.1f s", self.id, exc, delay)
                with anyio.move_on_after(delay):
                    await stopping.wait()
                if stopping.is_set():
                    raise
                delay = min(delay * 2, 5.0)


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
