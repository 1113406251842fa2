"""The in-process runtime: a DAG runs in this process, no server needed.

Readiness is a list of remaining-parent counters, as in the distributed
scheduler. Sync task functions run in a small pool of threads, so the event
loop stays free; each thread *drains* ready tasks of a run one after another
under one lock (the task itself runs outside it), taking a child that its own
completion made ready next (depth first, Wukong's "become"). The loop is
visited only to start ``async def`` tasks, to time retries, and to report the
end of the run, so the cost per task is a function call and a few list
operations, not a thread hop or a future.

Intermediate values live in a list indexed by node and are dropped as soon as
their last consumer has run (outputs are kept).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from . import graph as _graph
from . import native_threads
from .caching import KEEP_BUDGET, nested_plan, read_values, write_values
from .exceptions import (
    ResourceError,
    TaskError,
    TaskTimeout,
    TaskTimeoutError,
    exception_type_name,
    user_traceback,
)
from .expand import has_graph, nested_failure, returned_graph
from .graph import DAG, Node
from .keyring import Keyring
from .keys import sub_run_id
from .persist import wait_made
from .pytree import unflatten
from .resources import Resources, SharedCapacity, can_hold, check_resources, describe
from .tasks import check_timeout, retry_wait

if TYPE_CHECKING:
    from .caching import CachePlan
    from .metrics.recorder import RunRecorder
    from .storage import Storage

__all__ = ["LocalRuntime"]

log = logging.getLogger("dagrt.client")

_SLICE = 0.02  # seconds a drain keeps a thread before letting other runs' drains in
_PARALLEL_MIN = 2e-4  # tasks shorter than this (seconds) run in one thread per run


def _default_threads() -> int:
    return native_threads.cores()


class LocalRuntime:
    """Runs DAGs in this process. Used by ``Client(processes=False)``.

    ``threads`` bounds the threads that run sync task functions (all runs of
    the runtime share them). ``async def`` tasks run on the event loop.
    ``worker_id`` names this process in task errors. A :class:`~dagrt.runtime.Runtime`.
    """

    def __init__(
        self,
        *,
        threads: int | None = None,
        worker_id: str | None = None,
        client_id: str = "",
        task_timeout: float | None = None,
        cache_storage: Storage | None = None,
        resources: Mapping[str, float | str] | None = None,
        secret: Keyring | None = None,
    ) -> None:
        if threads is None:
            threads = _default_threads()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.threads = threads
        self.worker_id = worker_id or f"local-{os.getpid()}"
        self.client_id = client_id
        # for task functions that set none
        self.task_timeout = check_timeout(task_timeout, "task_timeout")
        self.cache_storage = cache_storage  # where cache entries are (dagrt.caching)
        # seals the cache entries it writes and checks those it reads (dagrt.sealing)
        self.secret = secret
        # what this process has for tasks that need resources (dagrt.resources)
        self.resources = check_resources(resources, "resources") or {}
        self._capacity = SharedCapacity(self.resources)
        self._limits = native_threads.Limits(native_threads.budget(threads))
        self._executor: ThreadPoolExecutor | None = None
        self._runs: dict[str, _Run] = {}
        self._pinned: dict[str, Any] = {}  # persisted values, by pin (dagrt.persist)
        self._parents: dict[str, str] = {}  # a sub-run going on -> the run of its task

    def _lineage(self, run_id: str) -> list[str]:
        """``run_id`` and the runs it is a sub-run of, innermost first."""
        lineage = [run_id]
        while lineage[-1] in self._parents:
            lineage.append(self._parents[lineage[-1]])
        return lineage

    async def __aenter__(self) -> LocalRuntime:
        # This process's native libraries get the cores the task threads leave, until
        # the runtime closes (then their own limits again).
        self._limits.__enter__()
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="dagrt-local")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._pinned.clear()  # (its client released them; nothing reads them now)
        executor, self._executor = self._executor, None
        if executor is not None:
            # Threads still inside a task function finish it and stop; nothing waits here.
            executor.shutdown(wait=False, cancel_futures=True)
            self._limits.__exit__(None, None, None)

    def _check_resources(self, dag: DAG) -> None:
        """Raise :class:`ResourceError` if a task needs more than this process has."""
        for f in dag._distinct:
            if f.resources and not can_hold(self.resources, f.resources):
                raise ResourceError(
                    f"task {f.name} needs {describe(f.resources)}, and this process has"
                    f" {describe(self.resources)}: give the in-process runtime what it has,"
                    f" Client(processes=False, resources={{...}}). Nothing of the run ran."
                )

    @property
    def url(self) -> None:
        """No server."""
        return None

    @property
    def event_storage(self) -> Storage | None:
        """None: the client keeps the event log of in-process runs in memory."""
        return None

    def cancel(self, run_id: str) -> None:
        """Stop starting tasks of ``run_id`` now (``run()`` ends once its task is cancelled)."""
        run = self._runs.get(run_id)
        if run is not None:
            run.stop()

    async def progress(self, run_id: str, total: int) -> AsyncIterator[int]:
        """Nothing: an in-process run is fast to end, and its end says it all."""
        return
        yield  # an async generator

    async def release(self, pins: list[str]) -> None:
        """Drop the persisted values of ``pins``."""
        for pin in pins:
            self._pinned.pop(pin, None)

    async def run(
        self,
        dag: DAG,
        run_id: str,
        recorder: RunRecorder | None = None,
        on_submitted: Callable[[float], None] | None = None,
        cache: CachePlan | None = None,
        priority: int = 0,
    ) -> list[Any]:
        """Run ``dag``; the values of its outputs, in order (nothing is submitted:
        ``on_submitted`` is for runtimes that do). ``cache``: the values the cache has
        are read first (those tasks, and the ones only they needed, do not run); the
        entries to write are written after the run, and what a run that did not finish
        finished is kept (:mod:`dagrt.caching`)."""
        if self._executor is None:
            raise RuntimeError("LocalRuntime is not started (use `async with`)")
        self._check_resources(dag)
        store = self.cache_storage if cache is not None else None
        found = {}
        if store is not None and cache is not None:
            pinned = self._pinned
            held = {i: pinned[p] for i, p in cache.pinned.items() if p in pinned}
            found = await read_values(store, dag, cache, self.secret, held)
        loop = asyncio.get_running_loop()
        run = _Run(self, dag, run_id, loop, recorder, cache, found, priority)
        self._runs[run_id] = run
        try:
            async with anyio.create_task_group() as tg:
                run.task_group = tg
                run.start()
                await run.finished.wait()
                tg.cancel_scope.cancel()  # async tasks still running after a failure
        finally:
            run.stop()
            _start(self._capacity.leave(run))
            del self._runs[run_id]
            if store is not None and cache is not None:
                with anyio.CancelScope(shield=True):
                    assert run.done is not None  # (kept for a run with a cache plan)
                    try:
                        with anyio.fail_after(KEEP_BUDGET):
                            await write_values(
                                store,
                                dag,
                                cache,
                                done=run.done,
                                values=run.values,
                                held=run.keep,
                                failed=run.error is not None or run.left > 0,  # (or cancelled)
                                secret=self.secret,
                            )
                    except Exception as exc:  # (never in place of the run's own outcome)
                        log.warning("run %s: the cache was not written: %s", run_id, exc)
        if run.error is not None:
            raise run.error
        if cache is not None and cache.stay:  # (persisted: held here, as the objects)
            for i in cache.stay:
                self._pinned[cache.write[i][0]] = run.values[i]
        return [run.values[i] for i in dag._output_index]


class _Run:
    """The state of one run: counters, values, ready stack, drain threads."""

    def __init__(
        self,
        runtime: LocalRuntime,
        dag: DAG,
        run_id: str,
        loop: asyncio.AbstractEventLoop,
        recorder: RunRecorder | None,
        cache: CachePlan | None = None,
        found: dict[int, Any] | None = None,
        priority: int = 0,
    ) -> None:
        self.runtime = runtime
        self.cache = cache  # (its policy goes to the graphs its tasks return)
        self.executor = runtime._executor
        self.run_id = run_id
        self.loop = loop
        self.recorder = recorder
        self.nodes: list[Node] = dag._nodes
        self.funcs = dag._funcs
        # seconds each call may take, if any task has a limit (else None: nothing to look up)
        default = runtime.task_timeout
        self.timeouts: list[float | None] | None = None
        if default is not None or any(f.timeout is not None for f in dag._distinct):
            self.timeouts = [default if f.timeout is None else f.timeout for f in self.funcs]
        self.parents = dag._parents
        self.children = dag._children
        n = len(self.nodes)
        self.remaining = [len(ps) for ps in self.parents]
        self.consumers = [len(cs) for cs in self.children]
        self.keep = set(dag._output_index)
        self.values: list[Any] = [None] * n
        self.attempts = [0] * n
        self.left = n
        self.done: list[bool] | None = None  # (kept only for a cache plan: what finished)
        if cache is not None:
            self.done = [False] * n
            self.keep |= set(cache.write)  # their values are written after the run
            if found:
                self._preset(cache, found)
        self.ready: list[int] | _Ready = []  # sync tasks, a stack
        if priority or any(f.priority for f in dag._distinct):  # highest first, then a stack
            self.ready = _Ready([f.priority + priority for f in self.funcs])
        # what each task holds while it runs, if any task needs resources (dagrt.resources)
        self.needs: list[Resources | None] | None = None
        if any(f.resources for f in dag._distinct):
            self.needs = [f.resources for f in self.funcs]
            self._push_locked = self._push_needing_locked  # type: ignore[method-assign]
        self.lock = threading.Lock()
        self.active = 0  # drains queued or running
        self.in_long = 0  # drains inside a task of unknown or non-trivial cost
        self.long = [False] * n
        self.cost: dict[object, float] = {}  # task function -> recent duration (s)
        self.max_drains = runtime.threads
        self.stopped = False
        self.error: BaseException | None = None
        self.finished = asyncio.Event()
        self.task_group: anyio.abc.TaskGroup | None = None

    def _preset(self, cache: CachePlan, found: dict[int, Any]) -> None:
        """The cache had the values of ``found``: those tasks are done, and the tasks
        only they needed are left out (their children count them as done)."""
        skip = cache.found | cache.skipped
        assert self.done is not None
        remaining = self.remaining
        for i, value in found.items():
            self.values[i] = value
            self.done[i] = True
            for c in self.children[i]:
                remaining[c] -= 1
        never = -(len(remaining) + 1)  # (no completion of a parent makes these ready)
        for i in skip:
            remaining[i] = never
        self.left -= len(skip)

    # -- starting and stopping ---------------------------------------------------

    def start(self) -> None:
        if self.left == 0:
            self.finished.set()
            return
        remaining = self.remaining
        roots = [i for i, r in enumerate(remaining) if not r]
        with self.lock:
            for i in reversed(roots):
                self._push_locked(i, on_loop=True)
            self._spawn_locked()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True

    def _finish_from_thread(self) -> None:
        self.loop.call_soon_threadsafe(self.finished.set)

    # -- readiness (callers hold the lock) --------------------------------------

    def _push_needing_locked(self, i: int, *, on_loop: bool) -> None:
        """``_push_locked`` of a run whose tasks need resources: a task that does not fit
        waits (it starts when resources are given back: ``_give_back``)."""
        needs = self.needs[i] if self.needs is not None else None
        if needs and not self.runtime._capacity.take(self, i, needs):
            return
        self._ready_locked(i, on_loop=on_loop)

    def _ready_locked(self, i: int, *, on_loop: bool) -> None:
        if self.funcs[i].is_async:
            if on_loop:
                self._start_async(i)
            else:
                self.loop.call_soon_threadsafe(self._start_async, i)
        else:
            self.ready.append(i)

    _push_locked = _ready_locked  # (a run whose tasks need resources: _push_needing_locked)

    def _spawn_locked(self) -> None:
        """Start a drain if ready work waits and none is running (it brings in more)."""
        if self.ready and self.active == 0:
            self.active += 1
            self._submit_locked()

    def _submit_locked(self) -> None:
        """Queue one drain, already counted in ``active``."""
        try:
            self.executor.submit(self._drain)  # type: ignore[union-attr]
        except RuntimeError:  # the runtime is closing
            self.active -= 1
            self.stopped = True

    def _complete_locked(self, i: int, value: Any, on_loop: bool) -> None:
        if i in self.keep or self.consumers[i]:
            self.values[i] = value
        if self.done is not None:
            self.done[i] = True
        remaining = self.remaining
        for c in self.children[i]:
            r = remaining[c] - 1
            remaining[c] = r
            if r == 0:
                self._push_locked(c, on_loop=on_loop)
        consumers = self.consumers
        for p in self.parents[i]:
            k = consumers[p] - 1
            consumers[p] = k
            if k == 0 and p not in self.keep:
                self.values[p] = None
        self.left -= 1
        if self.left == 0:
            self.stopped = True
            if on_loop:
                self.finished.set()
            else:
                self._finish_from_thread()

    def _fail_locked(self, i: int, exc: BaseException, on_loop: bool) -> None:
        """Retry ``i`` if it has attempts left, else end the run with a TaskError."""
        node = self.nodes[i]
        attempt = self.attempts[i]
        if attempt <= node.func.retries and not isinstance(exc, KeyboardInterrupt | SystemExit):
            delay = retry_wait(node.func.retry_delay, attempt)
            if delay <= 0:
                self._push_locked(i, on_loop=on_loop)
            elif on_loop:
                self.loop.call_later(delay, self._requeue, i)
            else:
                self.loop.call_soon_threadsafe(self.loop.call_later, delay, self._requeue, i)
            return
        if self.error is not None:
            return
        self.error = _task_error(node, exc, attempt, self.runtime.worker_id, self.run_id)
        self.stopped = True
        if on_loop:
            self.finished.set()
        else:
            self._finish_from_thread()

    def _give_back(self, i: int) -> None:
        """Task ``i``'s call ended: its resources go back, to the tasks waiting for them
        (in this run or another; each starts on the loop)."""
        if self.needs is not None and self.needs[i]:
            _start(self.runtime._capacity.give(self, i))

    def _start_held(self, i: int) -> None:
        """Task ``i`` holds its resources now: ready it (unless the run ended)."""
        with self.lock:
            if not self.stopped:
                self._ready_locked(i, on_loop=True)
                self._spawn_locked()
                return
        self._give_back(i)

    def _requeue(self, i: int) -> None:
        with self.lock:
            if self.stopped:
                return
            self._push_locked(i, on_loop=True)
            self._spawn_locked()

    # -- running tasks ------------------------------------------------------------

    def _call(self, i: int) -> Any:
        node = self.nodes[i]
        leaves = node._leaves
        if node._slots:
            leaves = leaves.copy()
            ps = self.parents[i]
            values = self.values
            for li, dj in node._slots:
                leaves[li] = values[ps[dj]]
        func = node.func
        if func.threads is not None and not func.is_async:  # it asked for native threads
            with native_threads.widened(func.threads):
                return _apply(func.fn, node, leaves)
        if node._treedef is True:
            return func.fn(*leaves)
        args, kwargs = unflatten(node._treedef, leaves)  # type: ignore[arg-type]
        return func.fn(*args, **kwargs)

    def _timeout(self, i: int) -> float | None:
        """Seconds a call of task ``i`` may take (its function's, or the runtime's)."""
        return None if self.timeouts is None else self.timeouts[i]

    def _timed_out(self, i: int, limit: float) -> TaskTimeout:
        return TaskTimeout.of(self.nodes[i].key, self.nodes[i].name, limit)

    def _call_timed(self, i: int, limit: float) -> Any:
        """Call task ``i`` in a thread of its own and wait ``limit`` seconds for it: past
        them raise :class:`TaskTimeout` (the thread cannot be stopped: it runs on, and
        what it returns is dropped)."""
        done = threading.Event()
        box: list[Any] = []

        def call() -> None:
            try:
                box.append((True, self._call(i)))
            except BaseException as exc:  # (handed to the waiting drain)
                box.append((False, exc))
            finally:
                done.set()

        name = f"dagrt-timed-{self.nodes[i].key}"
        threading.Thread(target=call, name=name, daemon=True).start()
        if not done.wait(limit):
            raise self._timed_out(i, limit)
        ok, result = box[0]
        if not ok:
            raise result
        return result

    def _next_locked(self, deadline: float) -> int | None:
        """The next task for the calling drain, or ``None`` when it should stop.

        Also decides the number of drains: tasks known to take less than
        ``_PARALLEL_MIN`` run fastest in one thread (more only fight for the
        GIL), so a drain with a free sibling retires; a task of unknown or
        larger cost brings another drain in while ready work is waiting.
        """
        ready = self.ready
        if self.stopped or not ready:
            self.active -= 1
            return None
        j = ready[-1]
        cost = self.cost.get(self.funcs[j])
        cheap = cost is not None and cost < _PARALLEL_MIN
        if cheap:
            if self.active - self.in_long > 1:
                self.active -= 1
                return None
        elif len(ready) > 1 and self.active < self.max_drains:
            self.active += 1
            self._submit_locked()
        if time.monotonic() > deadline:
            # Let drains of other runs have the thread: this drain goes to
            # the back of the pool's queue (still counted in `active`).
            self._submit_locked()
            return None
        ready.pop()
        self.attempts[j] += 1
        if not cheap:
            self.in_long += 1
            if self.recorder is not None:  # tiny tasks log no start: their finish says it all
                lane = threading.current_thread().name
                self.recorder.task_started(j, self.attempts[j], lane)
        self.long[j] = not cheap
        return j

    def _drain(self) -> None:
        """Run ready sync tasks of this run, one after another, in this thread."""
        lock = self.lock
        recorder = self.recorder
        cost = self.cost
        funcs = self.funcs
        deadline = time.monotonic() + _SLICE
        with lock:
            i = self._next_locked(deadline)
        lane = threading.current_thread().name
        needs, timeouts = self.needs, self.timeouts
        if recorder is not None:
            record, rows, limit = recorder.rows.extend, recorder.rows, recorder.row_limit
            sized = limit < recorder.NEVER  # (a policy without a size: nothing to check)
            lane_no = recorder.lane(lane)
        clock = time.perf_counter
        while i is not None:
            t0 = clock()
            before = _graph.built
            try:
                seconds = None if timeouts is None else timeouts[i]  # (self._timeout, inline)
                value = self._call(i) if seconds is None else self._call_timed(i, seconds)
                failed = None
            except BaseException as exc:
                failed = exc
            elapsed = clock() - t0
            if needs is not None:
                self._give_back(i)
            # (looked into only if the call built nodes, and outside the run's lock)
            expanding = failed is None and _graph.built != before and has_graph(value)
            func = funcs[i]
            if recorder is not None:
                if failed is None:
                    record((i, t0, elapsed, lane_no))  # RunRecorder.task_finished
                    if sized and len(rows) >= limit:
                        recorder.due()
                else:
                    attempt = self.attempts[i]
                    final = attempt > func.retries
                    recorder.task_failed(i, attempt, failed, user_traceback(failed), final, lane)
            with lock:
                previous = cost.get(func)
                cost[func] = elapsed if previous is None else 0.5 * (previous + elapsed)
                if self.long[i]:
                    self.in_long -= 1
                if failed is None:
                    if expanding:  # the task completes when the graph it returned has run
                        self.loop.call_soon_threadsafe(self._start_expand, i, value)
                    else:
                        self._complete_locked(i, value, on_loop=False)
                else:
                    self._fail_locked(i, failed, on_loop=False)
                i = self._next_locked(deadline)

    def _start_async(self, i: int) -> None:
        if self.stopped or self.task_group is None:
            return
        self.attempts[i] += 1
        self.task_group.start_soon(self._run_async, i, name=f"dagrt task {self.nodes[i].key}")

    async def _run_async(self, i: int) -> None:
        recorder = self.recorder
        attempt = self.attempts[i]
        if recorder is not None:
            recorder.task_started(i, attempt, "loop")
        t0 = time.perf_counter()
        limit = self._timeout(i)
        before = _graph.built
        try:
            try:
                with anyio.move_on_after(limit) as scope:  # (None: no limit)
                    value = await self._call(i)
            finally:
                if self.needs is not None:
                    self._give_back(i)
            if scope.cancelled_caught and limit is not None:  # its time ran out
                raise self._timed_out(i, limit)
        except Exception as exc:
            if recorder is not None:
                final = attempt > self.nodes[i].func.retries
                recorder.task_failed(i, attempt, exc, user_traceback(exc), final, "loop")
            with self.lock:
                self._fail_locked(i, exc, on_loop=True)
                self._spawn_locked()
            return
        if recorder is not None:
            recorder.task_finished(i, attempt, t0, time.perf_counter() - t0, "loop")
        if _graph.built != before and has_graph(value):
            await self._expand(i, value)
            return
        with self.lock:
            if self.stopped:
                return
            self._complete_locked(i, value, on_loop=True)
            self._spawn_locked()

    # -- tasks that return graphs -------------------------------------------------

    def _start_expand(self, i: int, value: Any) -> None:
        if self.stopped or self.task_group is None:
            return
        self.task_group.start_soon(
            self._expand, i, value, name=f"dagrt graph of {self.nodes[i].key}"
        )

    async def _expand(self, i: int, value: Any) -> None:
        """Task ``i`` returned a graph: run it as a sub-run (its tasks share this
        runtime's threads; this waits on the loop, holding none), then complete ``i``
        with its result. A failure in it fails ``i`` for good."""
        node = self.nodes[i]
        sub = sub_run_id(self.run_id, i)
        try:
            dag, shape = returned_graph(value, node.key)
            result = shape.fill(await self._sub_run(dag, sub, node.key))
        except Exception as exc:
            cause, where = nested_failure(exc, sub)
            with self.lock:
                if self.error is None and not self.stopped:
                    self.error = _task_error(
                        node, cause, self.attempts[i], self.runtime.worker_id, self.run_id, where
                    )
                    self.stopped = True
                    self.finished.set()
            return
        with self.lock:
            if self.stopped:
                return
            self._complete_locked(i, result, on_loop=True)
            self._spawn_locked()

    async def _sub_run(self, dag: DAG, sub: str, key: str) -> list[Any]:
        """Run ``dag`` as run ``sub``, logged (when this run is) as a run of its own
        whose parent is this run's task ``key``. It first waits for the runs persisting
        what it reads (but those it is part of: an error at once)."""
        runtime = self.runtime
        await wait_made(dag, runtime._lineage(self.run_id))
        runtime._parents[sub] = self.run_id
        try:
            return await self._logged_run(dag, sub, key)
        finally:
            runtime._parents.pop(sub, None)

    async def _logged_run(self, dag: DAG, sub: str, key: str) -> list[Any]:
        plan = await nested_plan(self.cache.options if self.cache else None, dag)
        parent = self.recorder
        if parent is None:
            return await self.runtime.run(dag, sub, cache=plan)
        from .clientlog import log_finished, log_submitted
        from .metrics.recorder import RunRecorder

        metrics = parent.metrics
        submitted = time.time()
        log_submitted(
            metrics, sub, dag, submitted, self.runtime.client_id, "in-process", (self.run_id, key)
        )
        recorder = RunRecorder(metrics, sub, dag, worker=parent.worker, counts=parent.counts)
        metrics.add_source(recorder)
        status: Any = "cancelled"
        failed: str | None = None
        try:
            values = await self.runtime.run(dag, sub, recorder, cache=plan)
            status = "finished"
            return values
        except Exception as exc:
            status, failed = "failed", getattr(exc, "task", None)
            raise
        finally:
            log_finished(
                metrics,
                sub,
                status,
                submitted=submitted,
                submit_seconds=0.0,
                failed_task=failed,
                recorder=recorder,
                cache=plan,
            )


def _apply(fn: Callable[..., Any], node: Node, leaves: list[Any]) -> Any:
    if node._treedef is True:
        return fn(*leaves)
    args, kwargs = unflatten(node._treedef, leaves)  # type: ignore[arg-type]
    return fn(*args, **kwargs)


def _task_error(
    node: Node, exc: BaseException, attempt: int, worker: str, run_id: str, tb: str = ""
) -> TaskError:
    tb = tb or user_traceback(exc)
    kind = TaskTimeoutError if isinstance(exc, TaskTimeout) else TaskError
    err = kind(
        task=node.key,
        name=node.name,
        exc_type=exception_type_name(type(exc)),
        message=str(exc),
        remote_traceback=tb,
        exception=exc,
        worker=worker,
        attempt=attempt,
        run_id=run_id,
    )
    err.__cause__ = exc
    return err


class _Ready:
    """The ready sync tasks of a run with priorities: highest priority first, and among
    equals the last made ready first (as the plain stack does)."""

    __slots__ = ("_heap", "_priority", "_seq")

    def __init__(self, priority: list[int]) -> None:
        self._priority = priority
        self._heap: list[tuple[int, int, int]] = []
        self._seq = 0

    def append(self, i: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (-self._priority[i], -self._seq, i))

    def pop(self) -> int:
        return heapq.heappop(self._heap)[2]

    def __getitem__(self, position: int) -> int:
        assert position == -1  # (the next to run: the top)
        return self._heap[0][2]

    def __len__(self) -> int:
        return len(self._heap)


def _start(held: list[tuple[object, int]]) -> None:
    """Start, on their runs' loops, the tasks that hold their resources now."""
    for run, i in held:
        assert isinstance(run, _Run)
        run.loop.call_soon_threadsafe(run._start_held, i)
