"""What a client writes to the event log (:class:`ClientLog`).

For every run: its graph and its run-submitted event when it starts, its
run-finished event when it ends (after the run's task events). When the runtime
runs tasks in this process, the process is a worker too: it says so
(worker-started, worker-stopped with its counts) and records its runs' task
events (:class:`~dagrt.metrics.recorder.RunRecorder`). Workers of a pool log
their own task events.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Literal

import anyio

from . import keys as K
from .metrics.events import RunFinished, RunSubmitted, WorkerStarted, WorkerStopped
from .metrics.recorder import RunRecorder
from .metrics.run_graph import graph_record
from .metrics.writer import MetadataStorage
from .resources import task_lanes

if TYPE_CHECKING:
    from .caching import CachePlan
    from .graph import DAG
    from .metrics import FlushPolicy
    from .storage import Storage

__all__ = ["ClientLog", "log_finished", "log_submitted"]

Status = Literal["finished", "failed", "cancelled"]


class ClientLog:
    """A client's writer of the event log on ``storage``; ``async with`` it.

    ``worker`` and ``threads``: this process's worker id and threads when runs run
    here (``worker=None``: they run on worker processes). ``owns_storage``: close
    ``storage`` at the end (the client made it from a URL).
    """

    def __init__(
        self,
        storage: Storage,
        policy: FlushPolicy | None,
        *,
        client_id: str,
        worker: str | None = None,
        threads: int = 0,
        owns_storage: bool = False,
    ) -> None:
        self.metrics = MetadataStorage(storage, policy, source=client_id)
        self.client_id = client_id
        self.worker = worker
        self.threads = threads
        self._owns_storage = owns_storage
        self._counts = {"done": 0, "failed": 0}  # tasks this process's runs ran
        self._flusher_group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> ClientLog:
        # The writer's flusher is a task of a group this log holds: entered and left by
        # the task that enters and leaves the log (the client's host).
        group = anyio.create_task_group()
        await group.__aenter__()
        self._flusher_group = group
        try:
            await self.metrics.start(group)
        except BaseException:
            self._flusher_group = None
            await group.__aexit__(None, None, None)
            raise
        if self.worker is not None:
            self.metrics.emit_event(
                WorkerStarted(
                    kind="worker-started",
                    ts=time.time(),
                    worker_id=self.worker,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    threads=self.threads,
                    concurrency=self.threads,
                )
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Write the last events (the runs' tasks are collected by now, so the counts
        are whole), then let go of the storage if it is this log's."""
        worker = self.worker
        if worker is not None:
            self.metrics.at_close(
                lambda: WorkerStopped(
                    kind="worker-stopped",
                    ts=time.time(),
                    worker_id=worker,
                    done=self._counts["done"],
                    failed=self._counts["failed"],
                )
            )
        try:
            with anyio.CancelScope(shield=True):
                try:
                    await self.metrics.aclose()  # the flusher stops
                finally:
                    if self._owns_storage:
                        await self.metrics.storage.aclose()
        finally:
            group, self._flusher_group = self._flusher_group, None
            if group is not None:  # (left in the scope it was entered in: it ends empty)
                await group.__aexit__(None, None, None)

    def run_submitted(
        self, run_id: str, dag: DAG, submitted: float, runtime: str, priority: int = 0
    ) -> RunRecorder | None:
        """Log the run's graph and its run-submitted event (at once: workers may run its
        first tasks before the submission ends); the run's task recorder, in-process."""
        log_submitted(
            self.metrics, run_id, dag, submitted, self.client_id, runtime, priority=priority
        )
        if self.worker is None:
            return None
        recorder = RunRecorder(self.metrics, run_id, dag, worker=self.worker, counts=self._counts)
        self.metrics.add_source(recorder)
        return recorder

    def run_finished(
        self,
        run_id: str,
        status: Status,
        *,
        submitted: float,
        submit_seconds: float,
        failed_task: str | None,
        recorder: RunRecorder | None,
        cache: CachePlan | None = None,
    ) -> None:
        """Log the run's end, after its task events (the caller then tells the future);
        ``cache`` says what the cache spared it."""
        log_finished(
            self.metrics,
            run_id,
            status,
            submitted=submitted,
            submit_seconds=submit_seconds,
            failed_task=failed_task,
            recorder=recorder,
            cache=cache,
        )


def log_submitted(
    metrics: MetadataStorage,
    run_id: str,
    dag: DAG,
    submitted: float,
    client_id: str,
    runtime: str,
    parent: tuple[str, str] | None = None,
    priority: int = 0,
) -> None:
    """Log a run's graph and its run-submitted event; ``parent``: the run and the key of
    the task whose returned graph this run is (a sub-run, :mod:`dagrt.expand`);
    ``priority``: the run's (its tasks are counted by lane: :mod:`dagrt.resources`)."""
    graph_key = K.graph(run_id)
    # Off the run's critical path: built and written by the metrics flusher,
    # always before the run's events.
    metrics.add_record(graph_key, lambda: graph_record(dag))
    metrics.emit_event(
        RunSubmitted(
            kind="run-submitted",
            ts=submitted,
            run_id=run_id,
            n_tasks=len(dag),
            client_id=client_id,
            graph_key=graph_key,
            runtime=runtime,
            parent_run=parent[0] if parent else "",
            parent_task=parent[1] if parent else "",
            priority=priority,
            lanes=dict(Counter(task_lanes(dag, priority).values())),
        )
    )


def log_finished(
    metrics: MetadataStorage,
    run_id: str,
    status: Status,
    *,
    submitted: float,
    submit_seconds: float,
    failed_task: str | None,
    recorder: RunRecorder | None,
    cache: CachePlan | None = None,
) -> None:
    """Log a run's end, after its task events (``recorder``'s, in-process), with the
    tasks it did not run (``cache``: found, skipped)."""
    ended = time.time()
    event = RunFinished(
        kind="run-finished",
        ts=ended,
        run_id=run_id,
        status=status,
        makespan=ended - submitted,
        failed_task=failed_task,
        submit_seconds=submit_seconds,
        from_cache=len(cache.found) if cache is not None else 0,
        skipped=len(cache.skipped) if cache is not None else 0,
    )
    if recorder is not None:
        metrics.remove_source(recorder, then=event)  # after the run's task events
    else:
        metrics.emit_event(event)
