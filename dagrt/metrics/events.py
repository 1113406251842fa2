"""Every fact dagrt records, as an event model (the wire form is :mod:`.wire`).

Events are pydantic models with a ``kind`` and a wire ``code``. Kinds:
``run-submitted``, ``run-finished``, ``task-started``, ``task-finished`` (with
:class:`TaskExecutionMetrics`), ``task-failed``, ``transfer``, ``worker-started``,
``worker-heartbeat``, ``worker-stopped``, ``events-dropped``, ``hold-ended``; and two
batch kinds,
``tasks-finished`` and ``transfers``, which carry many task-finished or transfer
events as columns (hot paths log these; readers expand them, see
:func:`dagrt.metrics.wire.expand`).

Tiny tasks that a worker runs in its fast lane (microseconds each) emit no
``task-started``: their ``task-finished`` carries the start time.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DIRECTIONS",
    "HOLD_OUTCOMES",
    "KINDS",
    "MODELS",
    "NEAR_PLACEMENTS",
    "PLACEMENTS",
    "RUN_ENDED",
    "Event",
    "EventsDropped",
    "HoldEnded",
    "RunFinished",
    "RunSubmitted",
    "TaskExecutionMetrics",
    "TaskFailed",
    "TaskFinished",
    "TaskStarted",
    "TasksFinished",
    "Transfer",
    "Transfers",
    "WorkerHeartbeat",
    "WorkerStarted",
    "WorkerStopped",
]


class Event(BaseModel):
    """Fields every event has: what, when (wall clock, seconds), which run, which worker."""

    # strict: a string is not a number, nor 1 a bool (the wire form has the types right)
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    code: ClassVar[int]
    kind: str
    ts: float
    run_id: str = ""
    worker_id: str = ""


class RunSubmitted(Event):
    code: ClassVar[int] = 1
    kind: Literal["run-submitted"] = "run-submitted"
    n_tasks: int = Field(ge=0)
    client_id: str = ""
    graph_key: str = ""  # where the run's graph (keys, names, edges) is kept
    runtime: str = ""  # "in-process" or the server URL (password hidden)
    submit_seconds: float = 0.0  # (unknown when logged: see RunFinished.submit_seconds)
    # a sub-run: the graph a task of another run returned (dagrt.expand)
    parent_run: str = ""
    parent_task: str = ""  # the key of the task that returned it
    # resources and priorities (dagrt.resources): the run's priority, and its tasks per
    # lane (those that need resources or have a priority other than 0)
    priority: int = 0
    lanes: dict[str, int] = {}


class RunFinished(Event):
    code: ClassVar[int] = 2
    kind: Literal["run-finished"] = "run-finished"
    status: Literal["finished", "failed", "cancelled"]
    makespan: float
    failed_task: str | None = None
    submit_seconds: float = 0.0  # how long submitting it took (on workers; 0 in-process)
    from_cache: int = 0  # tasks whose output the cache had (not run: dagrt.caching)
    skipped: int = 0  # tasks the run needed nothing of, then (not run)


class TaskStarted(Event):
    code: ClassVar[int] = 3
    kind: Literal["task-started"] = "task-started"
    task: int  # index in the run's graph
    key: str
    name: str
    attempt: int = Field(1, ge=1)


class TaskExecutionMetrics(Event):
    """One task's execution: where, when, how long, how many bytes in and out."""

    code: ClassVar[int] = 4
    kind: Literal["task-finished"] = "task-finished"
    task: int
    key: str
    name: str
    attempt: int = Field(1, ge=1)
    start: float  # wall clock when the task began (inputs loaded after this)
    end: float  # wall clock when its output was stored
    execution_time: float = Field(ge=0)  # seconds in the function itself
    input_bytes: int = Field(0, ge=0)
    output_bytes: int = Field(0, ge=0)
    download_time: float = Field(0.0, ge=0)  # seconds loading inputs from storage
    upload_time: float = Field(0.0, ge=0)  # seconds storing the output (and completing)
    kept: bool = False  # ran where its parent's output was (Wukong "become")
    placed: str = ""  # why it ran on this worker: one of PLACEMENTS ("": not said)


TaskFinished = TaskExecutionMetrics

#: why a task ran on the worker that ran it (``placed`` of a task-finished; a batch
#: gives the index): "dispatched" (it read the task from the stream), "become" (its
#: parent's completion there kept it), "cluster" (claimed with other children of a
#: large output there: fan-out clustering), "delayed" (handed to the worker that waited
#: for it with a large input: delayed I/O), "chain" (run right after its one parent,
#: from its value: chain fusion), "taken-over" (its first worker went silent),
#: "recomputed" (made again where a child needed its output, lost with the worker that
#: held it), "expanded" (it returned a graph: completed by the worker that saw that
#: graph's run end, with its result; dagrt.expand); "": not said (the in-process
#: runtime, logs written before dagrt said it)
PLACEMENTS = (
    "",
    "dispatched",
    "become",
    "cluster",
    "delayed",
    "chain",
    "taken-over",
    "recomputed",
    "expanded",
)
#: placements of a task that ran where one of its parents' outputs was (``kept``)
NEAR_PLACEMENTS = frozenset({"become", "cluster", "delayed", "chain"})


class TaskFailed(Event):
    code: ClassVar[int] = 5
    kind: Literal["task-failed"] = "task-failed"
    task: int
    key: str
    name: str
    attempt: int = Field(1, ge=1)
    exc_type: str
    message: str
    traceback: str = ""
    final: bool = True  # False: a retry follows


#: ``exc_type`` of a task-failed that ends an attempt which did not run because its
#: run had ended (cancelled, failed, cleaned up): not a failure of the task.
RUN_ENDED = "dagrt.RunEnded"


class Transfer(Event):
    """One object moved for a task: uploaded to Redis, downloaded from it, handed over
    in memory (``local``), mapped from the host's object store (``map``), fetched
    from another host's store (``direct``), or computed again (``recompute``); an
    output written to the host's object store, not to the server, is ``store``."""

    code: ClassVar[int] = 6
    kind: Literal["transfer"] = "transfer"
    key: str  # the storage key of the object
    bytes: int = Field(ge=0)
    seconds: float = Field(ge=0)
    direction: Literal["upload", "download", "local", "map", "direct", "recompute", "store"]
    producer: int  # task index that made the object
    consumer: int | None = None  # task index that read it (None for an upload)
    local: bool = False  # True: the bytes stayed on the worker (no network)


class WorkerStarted(Event):
    code: ClassVar[int] = 7
    kind: Literal["worker-started"] = "worker-started"
    host: str = ""
    pid: int = 0
    threads: int = 0
    concurrency: int = 0
    resources: dict[str, float] = {}  # what it has for tasks that need resources


class WorkerHeartbeat(Event):
    code: ClassVar[int] = 8
    kind: Literal["worker-heartbeat"] = "worker-heartbeat"
    running: list[str] = []  # keys of tasks in flight
    memory: int = 0  # resident bytes
    done: int = 0
    failed: int = 0


class WorkerStopped(Event):
    code: ClassVar[int] = 9
    kind: Literal["worker-stopped"] = "worker-stopped"
    done: int = 0
    failed: int = 0


class TasksFinished(Event):
    """Many ``task-finished`` events of one run, as columns (one sequence per field).

    Hot paths (the in-process runtime, a worker's fast lane) log batches this
    way; readers expand them into :class:`TaskExecutionMetrics` (see :func:`.wire.expand`).
    On the wire, numeric columns are packed arrays (``array`` bytes), and ``key``
    and ``name`` may be left empty: the run's graph has them. ``lane`` indexes
    ``workers`` when the batch spans several lanes (else every task ran on
    ``worker_id``). A writer may also leave ``end`` empty (it is then
    ``start + execution_time``) and give ``start`` in seconds after ``clock``
    (the in-process runtime's ``perf_counter`` readings, taken as they are);
    decoding restores both, so readers only ever see wall-clock ``start``/``end``
    and ``clock == 0``. A column that would hold one value throughout may be left
    empty too: ``attempt`` is then 1, the byte counts and transfer times 0 and
    ``kept`` false (the in-process runtime moves no bytes and rarely retries).
    """

    code: ClassVar[int] = 11
    kind: Literal["tasks-finished"] = "tasks-finished"
    task: list[int]
    attempt: list[int]
    start: list[float]
    end: list[float]
    execution_time: list[float]
    input_bytes: list[int]
    output_bytes: list[int]
    download_time: list[float]
    upload_time: list[float]
    kept: list[bool]
    key: list[str] = []
    name: list[str] = []
    lane: list[int] = []
    workers: list[str] = []
    clock: float = 0.0
    placed: list[int] = []  # indexes into PLACEMENTS (empty: not said)


DIRECTIONS = ("upload", "download", "local", "map", "direct", "recompute", "store")


class Transfers(Event):
    """Many ``transfer`` events of one run and worker, as columns.

    ``direction`` holds indexes into :data:`DIRECTIONS`; ``consumer`` is -1 for
    an upload; ``key`` may be empty (an output's key follows from its producer).
    """

    code: ClassVar[int] = 12
    kind: Literal["transfers"] = "transfers"
    bytes: list[int]
    seconds: list[float]
    direction: list[int]
    producer: list[int]
    consumer: list[int]
    local: list[bool]
    key: list[str] = []


#: how a wait for a child ended (``outcome`` of hold-ended): "hit" (the child came and
#: ran here, its large input read from memory), "miss" (it came, but its input had
#: left the worker's cache meanwhile: read from the store), "timeout" (it did not come
#: within the run's ``delayed_io_max_wait_s``)
HOLD_OUTCOMES = ("hit", "miss", "timeout")


class HoldEnded(Event):
    """A worker that waited for ``child`` of ``task`` (delayed I/O: it holds the task's
    large output) stopped waiting."""

    code: ClassVar[int] = 13
    kind: Literal["hold-ended"] = "hold-ended"
    task: int
    child: int
    bytes: int = Field(0, ge=0)  # the output held for it
    outcome: Literal["hit", "miss", "timeout"]
    waited: float = Field(0.0, ge=0)  # seconds from the wait's start to its end


class EventsDropped(Event):
    """The metrics buffer was full (the store was away): this many events were lost."""

    code: ClassVar[int] = 10
    kind: Literal["events-dropped"] = "events-dropped"
    count: int


#: each model by its wire code (the first value of its wire form)
MODELS: dict[int, type[Event]] = {
    m.code: m
    for m in (
        RunSubmitted,
        RunFinished,
        TaskStarted,
        TaskExecutionMetrics,
        TaskFailed,
        Transfer,
        WorkerStarted,
        WorkerHeartbeat,
        WorkerStopped,
        EventsDropped,
        TasksFinished,
        Transfers,
        HoldEnded,
    )
}
#: each model by its kind
KINDS: dict[str, type[Event]] = {m.model_fields["kind"].default: m for m in MODELS.values()}
