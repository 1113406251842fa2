"""``Client``: submit DAGs and get their results, plus the sync ``compute``.

The client is async first: ``async with Client(...) as client`` starts a
runtime, ``client.submit(...)`` returns a :class:`~dagrt.RunFuture` at once,
``await client.compute(...)`` waits for the value. Every run is a task in the
client's task group; leaving the ``async with`` cancels runs still going.

Where it runs:

* ``Client(processes=False)``: in this process (:mod:`dagrt.local`).
* ``Client()``: a :class:`~dagrt.LocalCluster` the client starts and stops
  (a private Redis-compatible server and ``n_workers`` worker processes).
* ``Client("redis://...")``: an existing worker pool behind that server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import anyio
import anyio.abc

from . import futures as _futures
from . import keys as K
from .exceptions import ClientClosedError
from .futures import RunFuture
from .graph import DAG, Node, TaskFunction, plan_outputs, task
from .keys import new_run_id
from .metrics.events import RunFinished, RunSubmitted, WorkerStarted, WorkerStopped
from .metrics.policy import FlushPolicy, flush_options
from .metrics.recorder import RunRecorder
from .metrics.run_graph import graph_record
from .metrics.writer import MetadataStorage
from .storage import InMemoryStorage, RedisStorage, Storage
from .storage.redis import redact

__all__ = ["Client", "compute"]

log = logging.getLogger("dagrt.client")


class Runtime(Protocol):
    """What the client needs from the thing that executes runs."""

    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: object) -> Any: ...
    async def run(
        self,
        dag: DAG,
        run_id: str,
        recorder: Any = None,
        on_submitted: Callable[[float], None] | None = None,
    ) -> list[Any]: ...
    def cancel(self, run_id: str) -> None: ...


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
        Wukong's locality switches for runs on workers, both on by default:
        ``keep_children`` (a worker runs a child that became ready on its own
        completion, holding one of its inputs) and ``keep_outputs`` (the output
        of a task whose one child runs on the same worker is never uploaded).
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
        locality: dict[str, bool] | None = None,
        dashboard: bool | int = False,
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
        locality = dict(locality or {})
        unknown = set(locality) - {"keep_children", "keep_outputs"}
        if unknown:
            raise ValueError(
                f"unknown locality switches {sorted(unknown)}: use keep_children, keep_outputs"
            )
        self._locality = locality
        if not isinstance(dashboard, bool | int) or (dashboard is not False and dashboard < 0):
            raise ValueError(f"dashboard must be True/False or a port number, got {dashboard!r}")
        if dashboard is not False and not processes and not isinstance(metrics, str | RedisStorage):
            raise ValueError(
                "the dashboard reads the event log from a server: with processes=False "
                "give metrics='redis://...' too"
            )
        self._dashboard_option = dashboard
        self.dashboard_url: str | None = None  # where the dashboard serves, once started
        self._dashboard_process: subprocess.Popen[str] | None = None
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
        self._runtime: Runtime | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._closed = False
        self._client_id = f"client-{os.getpid()}-{os.urandom(2).hex()}"
        self._local_worker = f"local-{os.getpid()}"  # the in-process runtime's worker id
        self._counts = {"done": 0, "failed": 0}  # tasks this client's runs ran in-process

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

    def _make_runtime(self) -> Runtime:
        if not self.processes:
            from .local import LocalRuntime

            return LocalRuntime(threads=self.threads)
        from .distributed import DistributedRuntime

        # A local cluster's workers log events as this client asks, where it asks
        # (the URL goes by environment: a password stays out of process listings).
        options: dict[str, Any] = {}
        env: dict[str, str] = {}
        if self._metrics_option is False:
            options["no-metrics"] = ""
        else:
            if isinstance(self._metrics_storage, RedisStorage):
                env["DAGRT_METRICS_URL"] = self._metrics_storage.config.url
            if self._flush is not None:
                options.update(flush_options(self._flush))
        return DistributedRuntime(
            self.address,
            n_workers=self.n_workers,
            threads=self.threads,
            worker_options=options,
            worker_env=env,
            keep_children=self._locality.get("keep_children", True),
            keep_outputs=self._locality.get("keep_outputs", True),
        )

    def _make_metrics(self, runtime: Runtime) -> MetadataStorage | None:
        option = self._metrics_option
        if option is False:
            return None
        if self._metrics_storage is not None:
            storage: Storage = self._metrics_storage
        elif not self.processes:
            storage = InMemoryStorage()  # the in-process runtime's own event log
        else:
            storage = runtime.storage  # type: ignore[attr-defined]
        return MetadataStorage(storage, self._flush, source=self._client_id)

    async def __aenter__(self) -> Client:
        if self._closed:
            raise ClientClosedError("this client was closed; make a new one")
        if self._runtime is not None:
            raise RuntimeError("this client is already started")
        runtime = self._make_runtime()
        await runtime.__aenter__()
        self._runtime = runtime
        self._loop = asyncio.get_running_loop()
        try:
            self.metrics = self._make_metrics(runtime)
            if self.metrics is not None:
                await self.metrics.start()
                if not self.processes:  # this process is the worker: it says so too
                    self.metrics.emit_event(
                        WorkerStarted(
                            kind="worker-started",
                            ts=time.time(),
                            worker_id=self._local_worker,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            threads=runtime.threads,  # type: ignore[attr-defined]
                            concurrency=runtime.threads,  # type: ignore[attr-defined]
                        )
                    )
            if self._dashboard_option is not False:
                await self._start_dashboard(runtime)
        except BaseException:
            await self.close()
            raise
        # Runs are tasks of one task group, held open by a supervisor task, so
        # that the client may be closed from another task than the one that
        # opened it (fixtures, app start-up and shut-down hooks do that).
        started: asyncio.Future[anyio.abc.TaskGroup] = self._loop.create_future()
        self._closing = asyncio.Event()
        self._supervisor = asyncio.create_task(self._supervise(started), name="dagrt client")
        try:
            self._task_group = await started
        except BaseException:
            await self.close()
            raise
        return self

    async def _start_dashboard(self, runtime: Runtime) -> None:
        """Serve the dashboard (a separate process reading the event log) and say where."""
        store = self._metrics_storage
        url = store.config.url if isinstance(store, RedisStorage) else getattr(runtime, "url", None)
        if not url:
            raise ValueError("the dashboard needs the event log on a server")
        port = 8787 if self._dashboard_option is True else int(self._dashboard_option)
        process = await anyio.to_thread.run_sync(_spawn_dashboard, url, port)
        self._dashboard_process = process
        self.dashboard_url = f"http://127.0.0.1:{port}/"
        print(f"dagrt dashboard: {self.dashboard_url}", flush=True)

    async def _supervise(self, started: asyncio.Future[anyio.abc.TaskGroup]) -> None:
        async with anyio.create_task_group() as task_group:
            started.set_result(task_group)
            await self._closing.wait()
            task_group.cancel_scope.cancel()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel runs still going, then stop the runtime (and what it started)."""
        if self._closed:
            return
        self._closed = True
        self._task_group = None
        runtime, self._runtime = self._runtime, None
        supervisor, self._supervisor = self._supervisor, None
        try:
            if supervisor is not None:
                self._closing.set()
                await asyncio.shield(supervisor)
        finally:
            if self._dashboard_process is not None:
                process, self._dashboard_process = self._dashboard_process, None
                process.terminate()
                await anyio.to_thread.run_sync(process.wait, 15)
                if process.stdout is not None:
                    process.stdout.close()
            if self.metrics is not None:
                if not self.processes:  # counted once the runs' tasks are collected
                    self.metrics.at_close(
                        lambda: WorkerStopped(
                            kind="worker-stopped",
                            ts=time.time(),
                            worker_id=self._local_worker,
                            done=self._counts["done"],
                            failed=self._counts["failed"],
                        )
                    )
                await self.metrics.aclose()  # the last events are written before anything stops
                if isinstance(self._metrics_option, str):  # made here from the URL
                    await self.metrics.storage.aclose()
            if runtime is not None:
                with anyio.CancelScope(shield=True):
                    await runtime.__aexit__(None, None, None)

    # -- submitting ------------------------------------------------------------------

    def submit(self, *xs: Any, **kwargs: Any) -> RunFuture:
        """Start computing ``xs`` and return a :class:`RunFuture` at once.

        ``xs`` are nodes, DAGs or trees of them (see :meth:`compute`). As in
        Dask, ``submit(fn, *args, **kwargs)`` with a plain function or task
        function first submits that call.
        """
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
        task_group, loop, runtime = self._started()
        dag, rebuild = plan_outputs(xs)
        fut = RunFuture(new_run_id(), dag, loop)
        if dag is None:  # constants only: nothing to run
            fut._set_result(rebuild([]))
        else:
            task_group.start_soon(
                self._run, runtime, fut, dag, rebuild, name=f"dagrt run {fut.run_id}"
            )
        return fut

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[RunFuture]:
        """``[submit(fn, *args) for args in zip(*iterables)]``: one run per call."""
        if not callable(fn):
            raise TypeError(f"map() needs a function first, got {type(fn).__name__}")
        if not iterables:
            raise TypeError("map() needs at least one iterable of arguments")
        tf = fn if isinstance(fn, TaskFunction) else task(fn)
        return [self.submit(tf(*args)) for args in zip(*iterables, strict=True)]

    async def compute(self, *xs: Any) -> Any:
        """Compute ``xs`` and return the result.

        A node gives its value; a DAG the value of its output, or a tuple for
        several outputs; a list/tuple/dict of nodes the same structure with
        values; several arguments a tuple. If this call is cancelled, so is the run.
        """
        fut = self.submit(*xs)
        try:
            return await fut
        except asyncio.CancelledError:
            fut.cancel()
            raise

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
        runtime = self._runtime
        source = getattr(runtime, "progress", None)
        if source is not None and not future.done():
            updates: asyncio.Queue[int | None] = asyncio.Queue()

            async def follow() -> None:
                try:
                    async for done in source(future.run_id, total):
                        updates.put_nowait(done)
                finally:
                    updates.put_nowait(None)

            follower = asyncio.create_task(follow())
            future.add_done_callback(lambda _: follower.cancel())
            try:
                while (done := await updates.get()) is not None:
                    yield done, total
            finally:
                follower.cancel()
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
        self, runtime: Runtime, fut: RunFuture, dag: DAG, rebuild: Callable[[list[Any]], Any]
    ) -> None:
        if fut.done():  # cancelled before it started
            return
        run_id = fut.run_id
        metrics = self.metrics
        submitted = time.time()
        recorder = await self._run_submitted(metrics, runtime, run_id, dag, submitted)
        finished = False
        submit_seconds = 0.0

        def on_submitted(seconds: float) -> None:
            nonlocal submit_seconds
            submit_seconds = seconds

        def run_finished(status: str, failed_task: str | None = None) -> None:
            """The run-finished event goes out before the future says so."""
            nonlocal finished
            finished = True
            if metrics is None:
                return
            ended = time.time()
            event = RunFinished(
                kind="run-finished",
                ts=ended,
                run_id=run_id,
                status=status,  # type: ignore[arg-type]
                makespan=ended - submitted,
                failed_task=failed_task,
                submit_seconds=submit_seconds,
            )
            if recorder is not None:
                metrics.remove_source(recorder, then=event)  # after the run's task events
            else:
                metrics.emit_event(event)

        try:
            with anyio.CancelScope() as scope:

                def cancel() -> None:
                    runtime.cancel(run_id)  # no task of the run is dispatched after this
                    scope.cancel()

                fut._cancel_hook = cancel
                try:
                    values = await runtime.run(dag, run_id, recorder, on_submitted=on_submitted)
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

    async def _run_submitted(
        self,
        metrics: MetadataStorage | None,
        runtime: Runtime,
        run_id: str,
        dag: DAG,
        submitted: float,
    ) -> RunRecorder | None:
        """Log the run's graph and its run-submitted event (at once: workers may run
        its first tasks before the submission ends); the in-process task recorder."""
        if metrics is None:
            return None
        graph_key = K.graph(run_id)
        # Off the run's critical path: built and written by the metrics flusher,
        # always before the run's events.
        metrics.add_record(graph_key, lambda: graph_record(dag))
        where = "in-process" if not self.processes else redact(getattr(runtime, "url", "") or "")
        metrics.emit_event(
            RunSubmitted(
                kind="run-submitted",
                ts=submitted,
                run_id=run_id,
                n_tasks=len(dag),
                client_id=self._client_id,
                graph_key=graph_key,
                runtime=where,
            )
        )
        if self.processes:
            return None
        recorder = RunRecorder(metrics, run_id, dag, worker=self._local_worker, counts=self._counts)
        metrics.add_source(recorder)
        return recorder


def _spawn_dashboard(url: str, port: int) -> subprocess.Popen[str]:
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"Client(dashboard=...) needs the dashboard extra ({', '.join(missing)} missing): "
            "pip install 'dagrt[dashboard]'"
        )
    process = subprocess.Popen(
        [sys.executable, "-m", "dagrt", "dashboard", "--redis", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once it listens
    if "dagrt dashboard:" not in line:
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(
            f"the dashboard did not start on port {port} (taken? its own message is above)"
        )
    return process


def compute(*xs: Any, **client_options: Any) -> Any:
    """Compute ``xs`` with a temporary :class:`Client` (for scripts, not async code).

    ``client_options`` go to the client, e.g. ``processes=False`` for the
    in-process runtime. Inside a running event loop use ``await client.compute``.
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
            return await client.compute(*xs)

    return asyncio.run(main())
