"""Events in wire form, built cheaply on hot paths.

Each builder returns the tuple that :func:`dagrt.metrics.wire.wire` would
return for the same model, without making the model (a test checks that the
two agree). ``RunRecorder`` is what the in-process runtime calls per task.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .events import (
    DIRECTIONS,
    PLACEMENTS,
    TaskExecutionMetrics,
    TaskFailed,
    TasksFinished,
    TaskStarted,
    Transfer,
    Transfers,
)
from .wire import column

if TYPE_CHECKING:
    from ..graph import DAG
    from .writer import MetadataStorage

__all__ = [
    "DIRECT",
    "DOWNLOAD",
    "LOCAL",
    "MAP",
    "PLACED",
    "RECOMPUTE",
    "UPLOAD",
    "BatchRows",
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
    placed: str = "",
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
        placed,
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


class _Rows:
    """Rows of numbers on one flat list: an ``add`` is one ``extend`` (no object per
    row, no list per column); ``wire`` takes each column as a strided slice."""

    __slots__ = ("rows",)
    WIDTH = 1

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def __len__(self) -> int:
        return len(self.rows) // self.WIDTH

    def _column(self, k: int, typecode: str, constant: Any = None) -> bytes:
        """Column ``k`` packed; empty if every value is ``constant`` (readers fill it)."""
        values = self.rows[k :: self.WIDTH]
        if constant is not None and values.count(constant) == len(values):
            return b""
        return column(values, typecode)


class FinishedBatch(_Rows):
    """Columns of a ``tasks-finished`` batch, filled one task at a time (a hot loop
    may extend :attr:`rows` itself with the eleven numbers :meth:`add` appends; the
    last is the index of the task's placement in ``PLACEMENTS``)."""

    __slots__ = ()
    WIDTH = 11

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
        placed: int = 0,
    ) -> None:
        self.rows.extend(
            (
                task,
                attempt,
                start,
                end,
                execution,
                input_bytes,
                output_bytes,
                download,
                upload,
                kept,
                placed,
            )
        )

    def wire(self, ts: float, run_id: str, worker: str) -> tuple[Any, ...]:
        c = self._column
        return (
            TasksFinished.code,
            ts,
            run_id,
            worker,
            c(0, "q"),
            c(1, "q", 1),  # constant columns (see TasksFinished) empty when they are
            c(2, "d"),
            c(3, "d"),
            c(4, "d"),
            c(5, "q", 0),
            c(6, "q", 0),
            c(7, "d", 0.0),
            c(8, "d", 0.0),
            c(9, "b", False),
            *self._placed(),
        )

    def _placed(self) -> tuple[Any, ...]:
        """The trailing fields up to ``placed`` (key, name, lane, workers and clock left
        empty), or none when no row says where its task was placed."""
        placed = self._column(10, "B", 0)
        return ([], [], [], [], 0.0, placed) if placed else ()


_DIRECTION = {name: i for i, name in enumerate(DIRECTIONS)}
#: direction codes of a TransferBatch row, for callers that extend ``rows`` inline
UPLOAD, DOWNLOAD, LOCAL = (_DIRECTION[name] for name in ("upload", "download", "local"))
MAP, DIRECT, RECOMPUTE = (_DIRECTION[name] for name in ("map", "direct", "recompute"))
STORE = _DIRECTION["store"]

#: placement codes of a FinishedBatch row (indexes of ``PLACEMENTS``), by name
PLACED = {name: i for i, name in enumerate(PLACEMENTS)}


class TransferBatch(_Rows):
    """Columns of a ``transfers`` batch. A hot loop may extend :attr:`rows` itself
    with the six numbers :meth:`add` appends (direction as ``UPLOAD``/``DOWNLOAD``/
    ``LOCAL``, consumer ``-1`` for none)."""

    __slots__ = ()
    WIDTH = 6

    def add(
        self,
        nbytes: int,
        seconds: float,
        direction: str,
        producer: int,
        consumer: int | None,
        local: bool,
    ) -> None:
        self.rows.extend(
            (
                nbytes,
                seconds,
                _DIRECTION[direction],
                producer,
                -1 if consumer is None else consumer,
                local,
            )
        )

    def wire(self, ts: float, run_id: str, worker: str) -> tuple[Any, ...]:
        c = self._column
        return (
            Transfers.code,
            ts,
            run_id,
            worker,
            c(0, "q"),
            c(1, "d"),
            c(2, "q"),
            c(3, "q"),
            c(4, "q"),
            c(5, "b"),
        )


class BatchRows:
    """Finished tiny tasks and their transfers, per run, held for the flusher: the
    fast lane of a worker adds to them batch after batch, and each flush takes one
    ``tasks-finished`` and one ``transfers`` event per run (a batch's own pair of
    events, a few dozen rows each, cost more to pack, buffer and encode than its
    tasks took to run). A source of :class:`MetadataStorage` (``add_source``);
    used from the worker's event loop, as the flusher is."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._runs: dict[str, tuple[FinishedBatch, TransferBatch]] = {}

    def of(self, run_id: str) -> tuple[FinishedBatch, TransferBatch]:
        """The run's batches to add to (made on first use; a flush takes them, so
        look them up where the rows are added, not before an await)."""
        batches = self._runs.get(run_id)
        if batches is None:
            batches = self._runs[run_id] = (FinishedBatch(), TransferBatch())
        return batches

    def __len__(self) -> int:
        """Events held: each row counts, as in the buffer."""
        return sum(len(done) + len(moves) for done, moves in self._runs.values())

    def collect(self) -> list[tuple[Any, ...]]:
        """Each run's batches as events, stamped with the end of the last task added
        (its transfers happened by then), not the time of the flush."""
        runs, self._runs = self._runs, {}
        items: list[tuple[Any, ...]] = []
        for run_id, (done, moves) in runs.items():
            ts = done.rows[3 - FinishedBatch.WIDTH] if len(done) else time.time()  # its end
            if len(done):
                items.append(done.wire(ts, run_id, self.worker))
            if len(moves):
                items.append(moves.wire(ts, run_id, self.worker))
        return items


class RunRecorder:
    """Task events of one in-process run, kept cheap for microsecond tasks.

    A finished task costs one ``list.extend`` of :attr:`rows` with four
    numbers: index, start (``perf_counter``), duration and lane number (an
    int64 ``array.extend`` costs several times more, and a tuple per task
    leaves an object for the garbage collector). The extend runs in C under
    the GIL, so rows of several threads never interleave. The metrics
    store's flusher collects them into a ``tasks-finished`` batch: strided
    slices of the rows packed by ``struct``; the batch's ``clock`` turns the
    starts into wall-clock times, and the columns that are constant for an
    in-process run are left empty (no bytes move; ``attempt`` is 1 unless
    the task failed before, which :meth:`task_failed` notes). A lane names
    the thread that ran the task (a lane of the task stream).
    """

    WIDTH = 4  # numbers per finished task in `rows`
    NEVER = 1 << 58  # a row limit never reached (no size policy)

    def __init__(
        self,
        metrics: MetadataStorage,
        run_id: str,
        dag: DAG,
        worker: str,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.metrics = metrics
        self.run_id = run_id
        self.worker = worker
        #: tasks done and failed for good, added up as they are collected (shared by the
        #: runs of one in-process worker, for its worker-stopped event)
        self.counts = counts if counts is not None else {"done": 0, "failed": 0}
        self._nodes = dag._nodes  # keys and names looked up only for the rare events
        self.rows: list[Any] = []  # index, start, duration, lane; index, ...
        self._lanes: dict[str, int] = {}
        self._lanes_lock = threading.Lock()
        #: task index -> the attempt after its last failure (tasks not in it: attempt 1)
        self._attempts: dict[int, int] = {}
        # wall-clock time = clock + perf_counter()
        self.clock = time.time() - time.perf_counter()
        policy = metrics.policy
        #: The rows' length at which the flusher is called (after each task, or at
        #: the size policy's count); compared by the runtime after each extend.
        self.row_limit = (
            self.WIDTH
            if policy.after_each_task
            else self.WIDTH * policy.max_events
            if policy.max_events
            else self.NEVER
        )

    def __len__(self) -> int:
        """Finished tasks held, not yet collected."""
        return len(self.rows) // self.WIDTH

    def lane(self, name: str) -> int:
        """The number of a lane (a thread's name; ``""`` is the recorder's worker)."""
        number = self._lanes.get(name)
        if number is None:
            with self._lanes_lock:  # two new lanes must not take the same number
                number = self._lanes.setdefault(name, len(self._lanes))
        return number

    def _lane_name(self, lane: str) -> str:
        return f"{self.worker}/{lane}" if lane else self.worker

    def due(self) -> None:
        """The rows reached :attr:`row_limit`: call the flusher."""
        self.metrics._trigger()

    def task_started(self, i: int, attempt: int, lane: str = "") -> None:
        self.metrics.emit(
            task_started(
                time.time(),
                self.run_id,
                self._lane_name(lane),
                i,
                self._nodes[i].key,
                self._nodes[i].name,
                attempt,
            )
        )

    def task_finished(
        self, i: int, attempt: int, t0: float, elapsed: float, lane: str = ""
    ) -> None:
        """Record one finished task (the runtime's drains extend :attr:`rows` inline,
        with ``attempt`` told by :meth:`task_failed` beforehand)."""
        if attempt != self._attempts.get(i, 1):
            self._attempts[i] = attempt
        rows = self.rows
        rows.extend((i, t0, elapsed, self.lane(lane)))
        if len(rows) >= self.row_limit:
            self.due()

    def task_failed(
        self, i: int, attempt: int, exc: BaseException, tb: str, final: bool, lane: str = ""
    ) -> None:
        from ..exceptions import exception_type_name

        if not final:
            self._attempts[i] = attempt + 1  # the attempt its task-finished will have
        else:
            self.counts["failed"] += 1
        self.metrics.emit(
            task_failed(
                time.time(),
                self.run_id,
                self._lane_name(lane),
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
        # Threads extend while this runs: take the first n (one atomic slice, one atomic
        # delete); what is added meanwhile sits after them and waits for the next call.
        rows = self.rows
        n = len(rows)
        if not n:
            return []
        taken = rows[:n]
        del rows[:n]
        w = self.WIDTH
        tasks = taken[0::w]  # strided slices: C-level copies
        self.counts["done"] += len(tasks)
        starts = taken[1::w]
        durations = taken[2::w]
        lanes = taken[3::w]
        names = [self._lane_name(name) for name in list(self._lanes)]  # numbered in order
        attempts = self._attempts
        if lanes.count(lanes[0]) == len(lanes):  # one lane: no lane column
            worker, lane_column, names = names[lanes[0]], b"", []
        else:
            worker, lane_column = self.worker, column(lanes, "q")
        return [
            (
                TasksFinished.code,
                self.clock + starts[-1] + durations[-1],
                self.run_id,
                worker,
                column(tasks, "q"),
                column([attempts.get(i, 1) for i in tasks], "q") if attempts else b"",
                column(starts, "d"),
                b"",  # end: start + execution_time
                column(durations, "d"),
                b"",  # input_bytes: 0
                b"",  # output_bytes: 0
                b"",  # download_time: 0.0
                b"",  # upload_time: 0.0
                b"",  # kept: False
                [],
                [],
                lane_column,
                names,
                self.clock,
            )
        ]
