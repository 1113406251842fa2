"""The events a worker writes to the event log: its tasks' attempts and transfers, and
its own start, heartbeats and stop.

Every method is a no-op without metrics (``dagrt worker --no-metrics``). Events are
built as wire tuples (:mod:`dagrt.metrics.recorder`), never as models, on hot paths.
Tiny tasks of the fast lane add rows to the run's batches instead of events
(:class:`~dagrt.metrics.recorder.BatchRows`: one tasks-finished and one transfers
event per run and flush).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import exception_type_name
from ..metrics.events import (
    NEAR_PLACEMENTS,
    RUN_ENDED,
    HoldEnded,
    WorkerHeartbeat,
    WorkerStarted,
    WorkerStopped,
)
from ..metrics.recorder import BatchRows, TransferBatch, task_failed, task_finished, task_started
from ..metrics.wire import wire
from ..records import TaskRecord

if TYPE_CHECKING:
    from ..metrics.writer import MetadataStorage
    from .executor import Outcome
    from .inputs import Loaded
    from .runs import RunContext

__all__ = ["TaskLog"]

Wire = list[Any] | tuple[Any, ...]


class TaskLog:
    """Builds and buffers one worker's events (see the module's text)."""

    def __init__(self, worker_id: str, metrics: MetadataStorage | None) -> None:
        self.worker = worker_id
        self.metrics = metrics
        self.rows = BatchRows(worker_id)  # the fast lane's, per run, until the next flush
        if metrics is not None:
            metrics.add_source(self.rows)

    @property
    def on(self) -> bool:
        return self.metrics is not None

    def emit(self, events: Sequence[Wire]) -> None:
        if self.metrics is not None:
            self.metrics.emit_many(events)

    # -- attempts ----------------------------------------------------------------------

    def started(self, ctx: RunContext, rec: TaskRecord, ts: float, attempt: int) -> Wire:
        return task_started(ts, ctx.run_id, self.worker, rec.index, rec.key, rec.name, attempt)

    def failed(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        exc: BaseException,
        tb: str,
        attempt: int,
        *,
        final: bool,
        exc_type: str | None = None,
    ) -> Wire:
        return task_failed(
            time.time(),
            ctx.run_id,
            self.worker,
            rec.index,
            rec.key,
            rec.name,
            attempt,
            exc_type or exception_type_name(type(exc)),
            str(exc),
            tb,
            final,
        )

    def ended(self, ctx: RunContext, rec: TaskRecord, attempt: int) -> Wire:
        """The end of an attempt that did not run: its run ended first (not a failure
        of the task; the log needs every started attempt to end)."""
        ended = RuntimeError("its run ended (cancelled, failed, or cleaned up) before it ran")
        return self.failed(ctx, rec, ended, "", attempt, final=True, exc_type=RUN_ENDED)

    def finished(
        self,
        ctx: RunContext,
        rec: TaskRecord,
        outcome: Outcome,
        started: float,
        loaded: Loaded,
        moves: TransferBatch | None,
        upload: float,
        placed: str,
    ) -> None:
        """The task-finished event of a task run apart (a chain), with its transfers;
        ``placed``: why it ran on this worker (``PLACEMENTS``)."""
        if moves is None or self.metrics is None:
            return
        ended = time.time()
        self.metrics.emit_many(
            [
                task_finished(
                    ctx.run_id,
                    self.worker,
                    rec.index,
                    rec.key,
                    rec.name,
                    outcome.attempt,
                    started,
                    ended,
                    outcome.ended - outcome.started,
                    loaded.nbytes,
                    len(outcome.frame or b""),
                    loaded.seconds,
                    upload,
                    placed in NEAR_PLACEMENTS,
                    placed,
                ),
                moves.wire(ended, ctx.run_id, self.worker),
            ]
        )

    def moves(self) -> TransferBatch | None:
        """A batch for one task's transfers (``None`` without metrics)."""
        return TransferBatch() if self.metrics is not None else None

    def run_moves(self, ctx: RunContext) -> Callable[[], TransferBatch]:
        """The run's transfer rows as the fast lane adds to them: looked up where the
        rows are added (a flush between two awaits takes them; later rows go to new ones)."""
        rows = self.rows
        return lambda: rows.of(ctx.run_id)[1]

    def tasks_added(self) -> None:
        """Rows were added: the size policy may want a flush."""
        if self.metrics is not None:
            self.metrics.tasks_added()

    def hold_ended(
        self, ctx: RunContext, task: int, child: int, nbytes: int, outcome: str, waited: float
    ) -> None:
        """A wait for ``child`` of ``task`` (delayed I/O) ended: how (``HOLD_OUTCOMES``)."""
        if self.metrics is None:
            return
        ended = HoldEnded(
            kind="hold-ended",
            ts=time.time(),
            run_id=ctx.run_id,
            worker_id=self.worker,
            task=task,
            child=child,
            bytes=nbytes,
            outcome=outcome,  # type: ignore[arg-type]
            waited=max(0.0, waited),
        )
        self.metrics.emit_many([wire(ended)])

    # -- the worker itself -------------------------------------------------------------

    def worker_started(
        self, threads: int, concurrency: int, resources: dict[str, float] | None = None
    ) -> None:
        if self.metrics is None:
            return
        started = WorkerStarted(
            kind="worker-started",
            ts=time.time(),
            worker_id=self.worker,
            host=socket.gethostname(),
            pid=os.getpid(),
            threads=threads,
            concurrency=concurrency,
            resources=resources or {},
        )
        self.metrics.emit_many([wire(started)])

    def heartbeat(self, running: list[str], done: int, failed: int) -> None:
        if self.metrics is None:
            return
        beat = WorkerHeartbeat(
            kind="worker-heartbeat",
            ts=time.time(),
            worker_id=self.worker,
            running=running,
            memory=_rss(),
            done=done,
            failed=failed,
        )
        self.metrics.emit_many([wire(beat)])

    def worker_stopped(self, done: int, failed: int) -> None:
        if self.metrics is None:
            return
        stopped = WorkerStopped(
            kind="worker-stopped", ts=time.time(), worker_id=self.worker, done=done, failed=failed
        )
        self.metrics.emit_many([wire(stopped)])


def _rss() -> int:
    """Resident memory of this process, in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
