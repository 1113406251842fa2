"""Events in wire form, built cheaply on hot paths.

Each builder returns the tuple that :func:`dagrt.metrics.events.wire` would
return for the same model, without making the model (a test checks that the
two agree). ``RunRecorder`` is what the in-process runtime calls per task.
"""

from __future__ import annotations

import operator
import time
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .events import (
    DIRECTIONS,
    TaskExecutionMetrics,
    TaskFailed,
    TasksFinished,
    TaskStarted,
    Transfer,
    Transfers,
    column,
)

if TYPE_CHECKING:
    from ..graph import DAG
    from .store import MetadataStorage

__all__ = [
    "FinishedBatch",
    "RunRecorder",
    "TransferBatch",
    "task_failed",
    "task_finished",
    "task_started",
    "transfer",
]

_STARTED = TaskStarted.code
_FINISHED = TaskExecutionMetrics.code
_FAILED = TaskFailed.code
_TRANSFER = Transfer.code


def task_started(
    ts: float, run_id: str, worker: str, task: int, key: str, name: str, attempt: int
) -> tuple[Any, ...]:
    return (_STARTED, ts, run_id, worker, task, key, name, attempt)


def task_finished(
    run_id: str,
    worker: str,
    task: int,
    key: str,
    name: str,
    attempt: int,
    start: float,
    end: float,
    execution_time: float,
    input_bytes: int = 0,
    output_bytes: int = 0,
    download_time: float = 0.0,
    upload_time: float = 0.0,
    kept: bool = False,
) -> tuple[Any, ...]:
    return (
        _FINISHED,
        end,
        run_id,
        worker,
        task,
        key,
        name,
        attempt,
        start,
        end,
        execution_time,
        input_bytes,
        output_bytes,
        download_time,
        upload_time,
        kept,
    )


def task_failed(
    ts: float,
    run_id: str,
    worker: str,
    task: int,
    key: str,
    name: str,
    attempt: int,
    exc_type: str,
    message: str,
    traceback: str,
    final: bool,
) -> tuple[Any, ...]:
    return (
        _FAILED,
        ts,
        run_id,
        worker,
        task,
        key,
        name,
        attempt,
        exc_type,
        message,
        traceback,
        final,
    )


def transfer(
    ts: float,
    run_id: str,
    worker: str,
    key: str,
    nbytes: int,
    seconds: float,
    direction: str,
    producer: int,
    consumer: int | None,
    local: bool,
) -> tuple[Any, ...]:
    return (
        _TRANSFER,
        ts,
        run_id,
        worker,
        key,
        nbytes,
        seconds,
        direction,
        producer,
        consumer,
        local,
    )


class FinishedBatch:
    """Columns of a ``tasks-finished`` batch, filled one task at a time."""

    __slots__ = (
        "attempt",
        "download",
        "end",
        "execution",
        "inb",
        "kept",
        "outb",
        "start",
        "task",
        "upload",
    )

    def __init__(self) -> None:
        self.task: list[int] = []
        self.attempt: list[int] = []
        self.start: list[float] = []
        self.end: list[float] = []
        self.execution: list[float] = []
        self.inb: list[int] = []
        self.outb: list[int] = []
        self.download: list[float] = []
        self.upload: list[float] = []
        self.kept: list[bool] = []

    def add(
        self,
        task: int,
        attempt: int,
        start: float,
        end: float,
        execution: float,
        input_bytes: int,
        output_bytes: int,
        download: float,
        upload: float,
        kept: bool,
    ) -> None:
        self.task.append(task)
        self.attempt.append(attempt)
        self.start.append(start)
        self.end.append(end)
        self.execution.append(execution)
        self.inb.append(input_bytes)
        self.outb.append(output_bytes)
        self.download.append(download)
        self.upload.append(upload)
        self.kept.append(kept)

    def __len__(self) -> int:
        return len(self.task)

    def wire(self, ts: float, run_id: str, worker: str) -> tuple[Any, ...]:
        return (
            TasksFinished.code,
            ts,
            run_id,
            worker,
            column(self.task, "q"),
            column(self.attempt, "q"),
            column(self.start, "d"),
            column(self.end, "d"),
            column(self.execution, "d"),
            column(self.inb, "q"),
            column(self.outb, "q"),
            column(self.download, "d"),
            column(self.upload, "d"),
            column(self.kept, "b"),
        )


_DIRECTION = {name: i for i, name in enumerate(DIRECTIONS)}


class TransferBatch:
    """Columns of a ``transfers`` batch."""

    __slots__ = ("bytes", "consumer", "direction", "local", "producer", "seconds")

    def __init__(self) -> None:
        self.bytes: list[int] = []
        self.seconds: list[float] = []
        self.direction: list[int] = []
        self.producer: list[int] = []
        self.consumer: list[int] = []
        self.local: list[bool] = []

    def add(
        self,
        nbytes: int,
        seconds: float,
        direction: str,
        producer: int,
        consumer: int | None,
        local: bool,
    ) -> None:
        self.bytes.append(nbytes)
        self.seconds.append(seconds)
        self.direction.append(_DIRECTION[direction])
        self.producer.append(producer)
        self.consumer.append(-1 if consumer is None else consumer)
        self.local.append(local)

    def __len__(self) -> int:
        return len(self.bytes)

    def wire(self, ts: float, run_id: str, worker: str) -> tuple[Any, ...]:
        return (
            Transfers.code,
            ts,
            run_id,
            worker,
            column(self.bytes, "q"),
            column(self.seconds, "d"),
            column(self.direction, "q"),
            column(self.producer, "q"),
            column(self.consumer, "q"),
            column(self.local, "b"),
        )


class RunRecorder:
    """Task events of one in-process run, kept cheap for microsecond tasks.

    A finished task costs an append of a raw tuple (no clock read: the
    runtime's own ``perf_counter`` readings are turned into wall-clock times
    when the metrics store collects them); other events go to the store at
    once. ``lane`` names the thread that ran the task (a lane of the task stream).
    """

    def __init__(self, metrics: MetadataStorage, run_id: str, dag: DAG, worker: str) -> None:
        self.metrics = metrics
        self.run_id = run_id
        self.worker = worker
        self._nodes = dag._nodes  # keys and names looked up only for the rare events
        self._raw: list[tuple[int, int, float, float, str]] = []
        self._wall0 = time.time() - time.perf_counter()
        policy = metrics.policy
        self._each = policy.after_each_task
        self._size = policy.max_events or (1 << 62)

    def _lane(self, lane: str) -> str:
        return f"{self.worker}/{lane}" if lane else self.worker

    def task_started(self, i: int, attempt: int, lane: str = "") -> None:
        self.metrics.emit(
            task_started(
                time.time(),
                self.run_id,
                self._lane(lane),
                i,
                self._nodes[i].key,
                self._nodes[i].name,
                attempt,
            )
        )

    def task_finished(
        self, i: int, attempt: int, t0: float, elapsed: float, lane: str = ""
    ) -> None:
        raw = self._raw
        raw.append((i, attempt, t0, elapsed, lane))
        if self._each or len(raw) >= self._size:
            self.metrics._trigger()

    def task_failed(
        self, i: int, attempt: int, exc: BaseException, tb: str, final: bool, lane: str = ""
    ) -> None:
        from ..exceptions import exception_type_name

        self.metrics.emit(
            task_failed(
                time.time(),
                self.run_id,
                self._lane(lane),
                i,
                self._nodes[i].key,
                self._nodes[i].name,
                attempt,
                exception_type_name(type(exc)),
                str(exc),
                tb,
                final,
            )
        )

    def collect(self) -> list[tuple[Any, ...]]:
        """The tasks finished since the last call, as one ``tasks-finished`` batch."""
        # Threads append while this runs: take the first n (one atomic slice, one atomic
        # delete); what is appended meanwhile sits after them and waits for the next call.
        raw = self._raw
        n = len(raw)
        if not n:
            return []
        taken = raw[:n]
        del raw[:n]
        # C-level passes only (map, array): this runs once per flush over every task.
        tasks, attempts, t0s, elapsed, lanes = (list(map(itemgetter(k), taken)) for k in range(5))
        starts = list(map(self._wall0.__add__, t0s))
        ends = list(map(operator.add, starts, elapsed))
        table = {x: j for j, x in enumerate(dict.fromkeys(lanes))}
        lane = list(map(table.__getitem__, lanes))
        zeros = bytes(8 * n)  # int64 0 and float64 0.0 alike
        return [
            (
                TasksFinished.code,
                ends[-1],
                self.run_id,
                self.worker,
                column(tasks, "q"),
                column(attempts, "q"),
                column(starts, "d"),
                column(ends, "d"),
                column(elapsed, "d"),
                zeros,
                zeros,
                zeros,
                zeros,
                bytes(n),  # kept: False
                [],
                [],
                column(lane, "q"),
                [self._lane(x) for x in table],
            )
        ]
