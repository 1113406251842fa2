"""``Client``: submit DAGs and get their results, plus the sync ``compute``.

The client is async first: ``async with Client(...) as client`` starts a
runtime, ``client.submit(...)`` returns a :class:`~dagrt.RunFuture` at once,
``await client.compute(...)`` waits for the value. Every run is a task in the
client's task group; leaving the ``async with`` cancels runs still going.

Where it runs (a :class:`~dagrt.runtime.Runtime`):

* ``Client(processes=False)``: in this process (:mod:`dagrt.local`).
* ``Client()``: a :class:`~dagrt.LocalCluster` the client starts and stops
  (a private Redis-compatible server and ``n_workers`` worker processes).
* ``Client("redis://...")``: an existing worker pool behind that server.

What it logs is :mod:`dagrt.clientlog`'s; the dashboard it may serve runs in a
process of its own (:mod:`dagrt.dashboard.process`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.abc

from . import futures as _futures
from .caching import CacheOptions, cache_plan, cache_storage
from .clientlog import ClientLog, Status
from .cluster import LocalCluster
from .dashboard.process import dashboard_process
from .dask import get as dask_get
from .dask import has_collections, persist_collections, uses_client_class
from .distributed import DEFAULT_STALL_TIMEOUT, DistributedRuntime, check_stall_timeout
from .exceptions import ClientClosedError, RunTimeoutError
from .futures import RunFuture
from .graph import DAG, Node, computes_nodes, plan_outputs
from .keyring import Keyring
from .keys import new_run_id
from .local import LocalRuntime
from .locality import LocalityOptions
from .metrics.policy import FlushPolicy
from .metrics.recorder import RunRecorder
from .metrics.writer import MetadataStorage
from .options import log_args, worker_args
from .persist import DAY, Pin, Pins, persist_tree, wait_made
from .resources import check_priority, check_resources
from .runtime import Runtime, new_client_id
from .secret import shared_keyring
from .storage import InMemoryStorage, RedisStorage, Storage
from .storage.redis import redact
from .tasks import TaskFunction, check_timeout, task

__all__ = ["Client", "compute"]

log = logging.getLogger("dagrt.client")


@uses_client_class
class Client:
    """Submits DAGs to a runtime and hands back their results.

    Parameters
    ----------
    address:
        ``redis://`` / ``rediss://`` / ``unix://`` URL of an existing worker
        pool's server. ``None`` (default) starts a local cluster, or runs in
        this process with ``processes=False``.
    processes:
        ``False`` runs everything in this process, without a server.
    n_workers:
        Worker processes of the local cluster (default: one per core).
    threads:
        Threads for sync task functions: in-process, or per local worker.
    metrics:
        The event log: ``True`` (default: the pool's server, or in memory for
        ``processes=False``), ``False``, a ``redis://`` URL or a ``Storage``.
    flush:
        When events are written (:class:`dagrt.metrics.FlushPolicy`).
    dashboard:
        Serve the web dashboard on this port (``True``: 8787) while the client is
        open, and print its address (see ``client.dashboard_url``).
    locality:
        Where tasks run and what their outputs cross, for runs on workers: a
        :class:`~dagrt.LocalityOptions`, a dict of its fields (``keep_children``,
        ``keep_outputs``, ``fuse_chains``, ``cluster_fanout``, ``delayed_io``, ...),
        or ``False`` (``enabled=False``: all off, for a comparison). A task function
        may replace some of them for its tasks: ``@task(locality=...)``. The
        in-process runtime accepts it (it has nothing to move).
    stall_timeout:
        Runs on workers: seconds a run may go without a task completing before the
        client checks that it still has work queued, running or waiting for a
        retry; one with tasks left and none of that can never finish, and fails
        with :class:`~dagrt.RunStalledError` (default 30; a long task never trips
        it). ``float("inf")`` turns the check off.
    task_timeout:
        Seconds one call of a task may take, for task functions that do not say
        (``@task(timeout=...)``); default none. See :func:`~dagrt.task`.
    cache:
        The cache policy (:class:`~dagrt.CacheOptions`, a dict of its fields, ``True``
        to cache every task, ``False`` for none): tasks marked ``@task(cache=...)``
        reuse outputs of earlier runs with the same inputs, and a run that fails keeps
        what it finished for :meth:`retry` (see :mod:`dagrt.caching`).
    resources:
        What the in-process runtime, or each worker of the local cluster, has for
        tasks that need resources (``{"gpu": 1, "memory": "16GB"}``; see
        :func:`~dagrt.task`). The workers of a pool say what they have themselves
        (``dagrt worker --resources``): with an address it is an error.
    secret:
        The pool's shared secret (``bytes`` or ``str``): the client signs its runs
        with it and checks what the workers say of their outcome (see the README's
        Security section). Default: ``DAGRT_SECRET``, or the file
        ``DAGRT_SECRET_FILE`` names; a local cluster the client starts gets this one,
        or makes its own. In this process (``processes=False``) it seals the cache
        entries the client keeps on a server (``cache={"url": ...}``) and checks
        those it reads.

    Once started: ``client.cluster`` is the :class:`~dagrt.LocalCluster` it runs
    (or ``None``), ``client.metrics`` the event log's writer (or ``None``).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        processes: bool = True,
        n_workers: int | None = None,
        threads: int | None = None,
        metrics: bool | str | Storage = True,
        flush: FlushPolicy | None = None,
        locality: LocalityOptions | dict[str, Any] | bool | None = None,
        dashboard: bool | int = False,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        task_timeout: float | None = None,
        cache: CacheOptions | dict[str, Any] | bool | None = None,
        resources: Mapping[str, float | str] | None = None,
        secret: bytes | str | None = None,
    ) -> None:
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a redis:// URL string or None, got {address!r}")
        if not isinstance(processes, bool):
            raise TypeError(f"processes must be True or False, got {processes!r}")
        if address is not None and not processes:
            raise ValueError("processes=False runs in this process; it cannot take an address")
        for label, value in (("n_workers", n_workers), ("threads", threads)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        if not processes and n_workers is not None:
            raise ValueError("n_workers needs processes=True (worker processes)")
        if not isinstance(metrics, bool | str | Storage):
            raise TypeError(
                f"metrics must be True/False, a redis:// URL or a Storage, got {metrics!r}"
            )
        if flush is not None and not isinstance(flush, FlushPolicy):
            raise TypeError(f"flush must be a dagrt.metrics.FlushPolicy, got {flush!r}")
        self.locality = LocalityOptions.of(locality)
        check_stall_timeout(stall_timeout)
        self.stall_timeout = float(stall_timeout)
        self.task_timeout = check_timeout(task_timeout, "task_timeout")
        self.cache = CacheOptions.of(cache)
        self.resources = check_resources(resources, "resources")
        self._secret = _secret(secret)
        if self.resources and address is not None:
            raise ValueError(
                "resources are what the workers have: a pool's workers say it themselves"
                " (dagrt worker --resources gpu=1,...), not the client"
            )
        if not isinstance(dashboard, bool | int) or (dashboard is not False and dashboard < 0):
            raise ValueError(f"dashboard must be True/False or a port number, got {dashboard!r}")
        if dashboard is not False and not processes and not isinstance(metrics, str | RedisStorage):
            raise ValueError(
                "the dashboard reads the event log from a server: with processes=False "
                "give metrics='redis://...' too"
            )
        self._dashboard_option = dashboard
        self.dashboard_url: str | None = None  # where the dashboard serves, once started
        # the event log's own store, when it is not the runtime's (a URL is checked now)
        self._metrics_storage: Storage | None = None
        if isinstance(metrics, str):
            self._metrics_storage = RedisStorage(metrics)
        elif isinstance(metrics, Storage):
            self._metrics_storage = metrics
            if processes and address is None and not isinstance(metrics, RedisStorage):
                raise ValueError(
                    "the workers of a local cluster log to a server: give metrics a"
                    " redis:// URL or a RedisStorage, not an in-memory storage"
                )
        self.address = address
        self._metrics_option = metrics
        self._flush = flush
        self.metrics: MetadataStorage | None = None  # the event log's writer, once started
        self.processes = processes
        self.n_workers = n_workers
        self.threads = threads
        #: The local cluster the client started (``Client()`` without an address).
        self.cluster: LocalCluster | None = None
        self._client_id = new_client_id()  # in its runs' meta and in its events
        self._local_worker = f"local-{os.getpid()}"  # the in-process runtime's worker id
        self._runtime: Runtime | None = None
        self._log: ClientLog | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._pins: Pins | None = None  # its persisted values (dagrt.persist)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._closed = False

    def __repr__(self) -> str:
        if not self.processes:
            where = "in-process"
        elif self.address is None:
            where = "local cluster"
        else:
            where = redact(self.address)
        state = "closed" if self._closed else ("running" if self._runtime else "not started")
        return f"<dagrt.Client {where} {state}>"

    # -- lifecycle -----------------------------------------------------------------
    #
    # Everything the client holds is opened and closed by one task, the host: the
    # local cluster, the runtime, the event log, the dashboard, and last the task
    # group of the runs, nested in that order and closed in reverse (runs first,
    # the cluster last). It is the one task a client starts outside a task group:
    # a task group is left by the task that entered it, and a client may be
    # closed from another task than the one that opened it (fixtures, application
    # start-up and shut-down hooks do that). ``close()`` waits for it, shielded.

    def _make_cluster(self) -> LocalCluster | None:
        """The local cluster to start: for worker processes without an address. Its
        workers log events as this client asks, where it asks."""
        if not self.processes or self.address is not None:
            return None
        store = self._metrics_storage
        flags, env = log_args(
            metrics=self._metrics_option is not False,
            url=store.config.url if isinstance(store, RedisStorage) else None,
            flush=self._flush,
        )
        if self.resources:
            flags.update(worker_args(resources=self.resources)[0])
        return LocalCluster(
            self.n_workers,
            threads=self.threads,
            worker_options=flags,
            worker_env=env,
            secret=self._secret,  # (None: it makes its own)
        )

    def _make_runtime(self) -> Runtime:
        """The runtime, on the cluster if the client started one."""
        if not self.processes:
            return LocalRuntime(
                threads=self.threads,
                worker_id=self._local_worker,
                task_timeout=self.task_timeout,
                cache_storage=cache_storage(self.cache.url),
                resources=self.resources,
                # (entries on a server are sealed: it may be a pool's)
                secret=(Keyring.of(self._secret) or shared_keyring()) if self.cache.url else None,
            )
        return DistributedRuntime(
            self.cluster.url if self.cluster is not None else self.address,
            secret=self.cluster.secret if self.cluster is not None else self._secret,
            locality=self.locality,
            stall_timeout=self.stall_timeout,
            task_timeout=self.task_timeout,
        )

    def _make_log(self, runtime: Runtime) -> ClientLog | None:
        if self._metrics_option is False:
            return None
        # the client's own storage for the log, or the runtime's server, or memory
        storage = self._metrics_storage or runtime.event_storage or InMemoryStorage()
        threads = runtime.threads  # set when tasks run in this process: it is a worker too
        return ClientLog(
            storage,
            self._flush,
            client_id=self._client_id,
            worker=self._local_worker if threads is not None else None,
            threads=threads or 0,
            owns_storage=isinstance(self._metrics_option, str),
        )

    def _dashboard_source(self, runtime: Runtime) -> str:
        """The server whose event log the dashboard reads."""
        store = self._metrics_storage
        url = store.config.url if isinstance(store, RedisStorage) else runtime.url
        if not url:
            raise ValueError("the dashboard needs the event log on a server")
        return url

    async def __aenter__(self) -> Client:
        if self._closed:
            raise ClientClosedError("this client was closed; make a new one")
        if self._host is not None:
            raise RuntimeError("this client is already started")
        loop = self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        started: asyncio.Future[None] = loop.create_future()
        host = self._host = loop.create_task(self._serve(started), name="dagrt client")
        try:
            await started
        except BaseException:
            host.cancel()  # a start cut short: what it opened is closed, shielded
            await self.close()
            raise
        return self

    async def _serve(self, started: asyncio.Future[None]) -> None:
        """The host: open everything, serve runs until ``close()``, close everything."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                self.cluster = self._make_cluster()
                if self.cluster is not None:
                    await stack.enter_async_context(self.cluster)
                runtime = self._make_runtime()
                runtime.client_id = self._client_id  # one id: the client's
                self._runtime = await stack.enter_async_context(runtime)
                self._log = self._make_log(runtime)
                if self._log is not None:
                    self.metrics = (await stack.enter_async_context(self._log)).metrics
                if self._dashboard_option is not False:
                    port = 8787 if self._dashboard_option is True else int(self._dashboard_option)
                    served = dashboard_process(self._dashboard_source(runtime), port)
                    self.dashboard_url = await stack.enter_async_context(served)
                    print(f"dagrt dashboard: {self.dashboard_url}", flush=True)
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    pins = self._pins = Pins(
                        asyncio.get_running_loop(), task_group, runtime.release, self._persisting
                    )
                    if not started.done():
                        started.set_result(None)
                    await self._closing.wait()
                    task_group.cancel_scope.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await pins.close()  # (a server that does not answer: their TTL)
        except BaseException as exc:
            if started.done():
                raise
            if isinstance(exc, asyncio.CancelledError):
                started.cancel()
                raise
            started.set_exception(exc)  # __aenter__ raises it
        finally:
            self._task_group = None
            self._runtime = None

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel runs still going, then stop the runtime (and what it started)."""
        if self._closed:
            return
        self._closed = True
        host, self._host = self._host, None
        if host is None:
            return
        self._closing.set()
        try:
            await asyncio.shield(host)  # its failure, if it failed, is raised here
        except asyncio.CancelledError:
            if not host.cancelled():  # this task is cancelled: the host goes on closing
                raise

    # -- submitting ------------------------------------------------------------------

    def submit(self, *xs: Any, priority: int = 0, **kwargs: Any) -> RunFuture:
        """Start computing ``xs`` and return a :class:`RunFuture` at once.

        ``xs`` are nodes, DAGs or trees of them (see :meth:`compute`). As in
        Dask, ``submit(fn, *args, **kwargs)`` with a plain function or task
        function first submits that call. ``priority``: the run's (see
        :meth:`compute`; as in Dask, the name is not passed on to ``fn``).
        """
        priority = check_priority(priority, "priority") or 0
        if xs and callable(xs[0]) and not isinstance(xs[0], Node | DAG):
            fn = xs[0]
            node = (fn if isinstance(fn, TaskFunction) else task(fn))(*xs[1:], **kwargs)
            xs = (node,)
        elif kwargs:
            raise TypeError(
                f"submit() got keyword arguments {sorted(kwargs)} but no function to call; "
                "pass nodes, or submit(fn, *args, **kwargs)"
            )
        if not xs:
            raise TypeError("submit() needs something to compute: a node, a DAG, or fn and args")
        return self._submit(xs, resume=False, priority=priority)

    def _submit(self, xs: tuple[Any, ...], *, resume: bool, priority: int = 0) -> RunFuture:
        task_group, loop, runtime = self._started()
        dag, rebuild = plan_outputs(xs)
        fut = RunFuture(new_run_id(), dag, loop)
        fut._xs = xs
        fut._priority = priority
        if dag is None:  # constants only: nothing to run
            fut._set_result(rebuild([]))
        else:
            task_group.start_soon(
                self._run,
                runtime,
                fut,
                dag,
                rebuild,
                resume,
                priority,
                name=f"dagrt run {fut.run_id}",
            )
        return fut

    def retry(self, future: RunFuture) -> RunFuture:
        """Run what ``future`` computed again, resumed: every task whose output its run
        kept (it failed or was cancelled: ``CacheOptions.keep_failed``), or the cache
        has, is not run again, nor what only it needed; the rest runs. A new future."""
        if not isinstance(future, RunFuture):
            raise TypeError(f"retry() takes a RunFuture, got {type(future).__name__}")
        if not future.done():
            raise ValueError(f"run {future.run_id} has not ended: it cannot be retried yet")
        if future._xs is None:
            raise ValueError(f"run {future.run_id} was not submitted by a client")
        return self._submit(future._xs, resume=True, priority=future._priority)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[RunFuture]:
        """``[submit(fn, *args) for args in zip(*iterables)]``: one run per call."""
        if not callable(fn):
            raise TypeError(f"map() needs a function first, got {type(fn).__name__}")
        if not iterables:
            raise TypeError("map() needs at least one iterable of arguments")
        tf = fn if isinstance(fn, TaskFunction) else task(fn)
        return [self.submit(tf(*args)) for args in zip(*iterables, strict=True)]

    async def compute(
        self,
        *xs: Any,
        timeout: float | None = None,  # noqa: ASYNC109
        resume: bool = False,
        priority: int = 0,
    ) -> Any:
        """Compute ``xs`` and return the result.

        A node gives its value; a DAG the value of its output, or a tuple for
        several outputs; a list/tuple/dict of nodes the same structure with
        values; several arguments a tuple. If this call is cancelled, so is the run.
        ``timeout``: seconds the whole run may take; past them it is cancelled and
        :class:`~dagrt.RunTimeoutError` is raised. ``resume``: every task whose output
        an earlier run of the same graph kept (it failed, or was cancelled) or the
        cache has is taken from there, not run (:meth:`retry`, from another process).
        ``priority``: an int added to each task's priority (``@task(priority=...)``):
        ready work of a higher priority is taken first, by every worker, without
        starving the rest (:mod:`dagrt.resources`).
        """
        limit = check_timeout(timeout, "timeout")
        priority = check_priority(priority, "priority") or 0
        if not isinstance(resume, bool):
            raise TypeError(f"resume must be True or False, got {resume!r}")
        if not xs:
            raise TypeError("compute() needs something to compute: a node, a DAG or a tree")
        fut = self._submit(xs, resume=resume, priority=priority)
        try:
            if limit is None:
                return await fut
            with anyio.move_on_after(limit):
                return await fut
            fut.cancel()
            raise RunTimeoutError(
                f"run {fut.run_id} took longer than its timeout of {limit:g} s; it was cancelled"
            )
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Dask's scheduler protocol on this client's runtime (``dask.compute(x,
        scheduler=client.get)``; :mod:`dagrt.dask`). Synchronous: call it from another
        thread than the client's loop (``await asyncio.to_thread(dask.compute, x,
        scheduler=client.get)``)."""
        return dask_get(dsk, keys, client=self, **kwargs)

    def persist(self, *xs: Any, ttl: float | None = None, **kwargs: Any) -> Any:
        """Compute ``xs`` and keep the values in the pool for later computations; return
        at once what stands for them: ``xs`` with each node replaced by a node whose
        value is the one kept (one argument gives its tree, several a tuple), to use in
        later graphs as any node. A run that reads one waits for the run persisting it
        (and fails with its error); the values never come back to this process. Dask
        collections (here, or Dask's ``persist`` with ``scheduler=client.get``) come back
        as collections whose chunks are kept (:mod:`dagrt.dask`).

        Kept until what stands for them is garbage-collected or this client closes; on a
        server, for ``ttl`` seconds at most (default a day), a client that dies leaves
        them to it. In this process the values are kept as they are (no copy). Callable
        from the client's loop or another thread (Dask's). A value that is gone
        raises :class:`~dagrt.PersistedLostError` in the run that reads it."""
        seconds = DAY if ttl is None else check_timeout(ttl, "ttl")
        assert seconds is not None
        if has_collections(xs):  # (Dask's protocol passes a list of them, and options)
            return persist_collections(self, xs, seconds, **kwargs)
        if kwargs:
            raise TypeError(f"persist() got unexpected keyword arguments {sorted(kwargs)}")
        pins = self._pins
        held = pins.held if pins is not None else (lambda node: False)
        return persist_tree(xs, lambda nodes: self._pin(nodes, seconds), held)

    def _pin(self, nodes: list[Node], ttl: float) -> list[Pin]:
        """Start the run that persists ``nodes`` (distinct), from any thread; their pins."""

        def start() -> list[Pin]:
            self._started()  # (raises: not started, or closed)
            assert self._pins is not None
            return self._pins.persist(nodes, ttl)

        return self._on_loop(start)

    def _persisting(self, dag: DAG, writes: dict[int, tuple[str, float]]) -> RunFuture:
        """Start a run of ``dag`` that keeps the outputs ``writes`` names (Pins)."""
        task_group, loop, runtime = self._started()
        fut = RunFuture(new_run_id(), None, loop)  # (no DAG: a pin keeps it, not the graph)
        name = f"dagrt persist {fut.run_id}"
        task_group.start_soon(self._run, runtime, fut, dag, _nothing, False, 0, writes, name=name)
        return fut

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the client's loop: here if this is it, else from this thread."""
        loop = self._loop
        if loop is None or self._task_group is None:
            self._started()  # (raises: not started, or closed)
        assert loop is not None
        if _futures.on_loop(loop):
            return fn()

        async def call() -> Any:
            return fn()

        return _futures.call_on(loop, call)

    async def gather(
        self, futures: Iterable[RunFuture], *, return_exceptions: bool = False
    ) -> list[Any]:
        """The values of ``futures`` in order; the first error is raised at once."""
        return await _futures.gather(futures, return_exceptions=return_exceptions)

    def as_completed(self, futures: Iterable[RunFuture]) -> AsyncIterator[RunFuture]:
        """Iterate over ``futures`` in the order their runs end."""
        return _futures.as_completed(futures)

    async def progress(self, future: RunFuture) -> AsyncIterator[tuple[int, int]]:
        """``(done, total)`` as the run's tasks complete, until it ends (for progress bars).

        On worker processes it follows the run's progress stream; in-process it
        reports the end only.
        """
        if not isinstance(future, RunFuture):
            raise TypeError(f"progress() takes a RunFuture, got {type(future).__name__}")
        total = len(future.dag) if future.dag is not None else 0
        runtime, task_group = self._runtime, self._task_group
        if runtime is not None and task_group is not None and not future.done():
            # A task of the client's task group follows the runtime's progress, so that
            # the run's end stops the following at once (the stream says nothing then).
            updates: asyncio.Queue[int | Exception | None] = asyncio.Queue()
            following = anyio.CancelScope()

            async def follow(source: AsyncIterator[int]) -> None:
                end: Exception | None = None
                try:
                    with following:
                        async for done in source:
                            updates.put_nowait(done)
                except Exception as exc:  # the reader's to raise, not the client's runs'
                    end = exc
                finally:
                    updates.put_nowait(end)

            source = runtime.progress(future.run_id, total)
            task_group.start_soon(follow, source, name=f"dagrt progress {future.run_id}")
            future.add_done_callback(lambda _: following.cancel())
            try:
                while isinstance(update := await updates.get(), int):
                    yield update, total
                if update is not None:
                    raise update
            finally:
                following.cancel()
        with contextlib.suppress(BaseException):
            await future
        if future.status == "finished":
            yield total, total

    # -- internals ------------------------------------------------------------------

    def _started(self) -> tuple[anyio.abc.TaskGroup, asyncio.AbstractEventLoop, Runtime]:
        if self._closed:
            raise ClientClosedError("this client is closed")
        if self._task_group is None or self._loop is None or self._runtime is None:
            raise ClientClosedError(
                "the client is not started; use `async with dagrt.Client(...) as client:`"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            raise RuntimeError(
                "submit() must be called from the event loop the client was started on"
            )
        return self._task_group, self._loop, self._runtime

    async def _run(
        self,
        runtime: Runtime,
        fut: RunFuture,
        dag: DAG,
        rebuild: Callable[[list[Any]], Any],
        resume: bool = False,
        priority: int = 0,
        pins: dict[int, tuple[str, float]] | None = None,
    ) -> None:
        if fut.done():  # cancelled before it started
            return
        try:
            await wait_made(dag)  # (the runs persisting what it reads)
            if fut.done():
                return
            plan = await cache_plan(dag, self.cache, resume, pins)
        except Exception as exc:  # (an argument that cannot be hashed, say)
            fut._set_exception(exc)
            return
        except BaseException:  # (the client closes while it waits: never left pending)
            if not fut.done():
                fut._set_cancelled()
            raise
        run_id = fut.run_id
        log = self._log
        submitted = time.time()
        recorder: RunRecorder | None = None
        if log is not None:
            where = "in-process" if not self.processes else redact(runtime.url or "")
            recorder = log.run_submitted(run_id, dag, submitted, where, priority)
        finished = False
        submit_seconds = 0.0

        def on_submitted(seconds: float) -> None:
            nonlocal submit_seconds
            submit_seconds = seconds

        def run_finished(status: Status, failed_task: str | None = None) -> None:
            """The run-finished event goes out before the future says so."""
            nonlocal finished
            finished = True
            if log is not None:
                log.run_finished(
                    run_id,
                    status,
                    submitted=submitted,
                    submit_seconds=submit_seconds,
                    failed_task=failed_task,
                    recorder=recorder,
                    cache=plan,
                )

        try:
            with anyio.CancelScope() as scope:

                def cancel() -> None:
                    runtime.cancel(run_id)  # no task of the run starts after this
                    scope.cancel()

                fut._cancel_hook = cancel
                try:
                    values = await runtime.run(
                        dag,
                        run_id,
                        recorder,
                        on_submitted=on_submitted,
                        cache=plan,
                        priority=priority,
                    )
                except Exception as exc:
                    run_finished("failed", getattr(exc, "task", None))
                    fut._set_exception(exc)
                    return
                try:
                    result = rebuild(values)
                except Exception as exc:  # pragma: no cover - rebuild cannot fail on own data
                    run_finished("failed")
                    fut._set_exception(exc)
                    return
                run_finished("finished")
                fut._set_result(result)
        finally:
            fut._cancel_hook = None
            if not finished:
                run_finished("cancelled")
            if not fut.done():
                fut._set_cancelled()


def _nothing(values: list[Any]) -> None:
    """A persisting run's result: its values stay in the pool."""


@computes_nodes
def compute(
    *xs: Any,
    timeout: float | None = None,
    resume: bool = False,
    priority: int = 0,
    **client_options: Any,
) -> Any:
    """Compute ``xs`` with a temporary :class:`Client` (for scripts, not async code).

    ``client_options`` go to the client, e.g. ``processes=False`` for the
    in-process runtime; ``timeout`` bounds the run, ``resume`` resumes it and
    ``priority`` is the run's (:meth:`Client.compute`). Inside a
    running event loop use ``await client.compute``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "dagrt.compute() cannot be called from a running event loop; "
            "use `async with dagrt.Client(...) as client: await client.compute(...)`"
        )

    async def main() -> Any:
        async with Client(**client_options) as client:
            return await client.compute(*xs, timeout=timeout, resume=resume, priority=priority)

    return asyncio.run(main())


def _secret(secret: object) -> bytes | None:
    """``Client(secret=...)`` checked, as bytes."""
    if secret is None:
        return None
    if not isinstance(secret, bytes | str):
        raise TypeError(f"secret must be bytes or str, got {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty")
    raw = secret.encode() if isinstance(secret, str) else secret
    Keyring.of(raw)  # (checked now: too short, say)
    return raw
