"""Every fact dagrt records, as an event model.

Events are pydantic models with a ``kind``. On the wire (the ``dagrt:events``
stream) each is a compact msgpack array: ``[kind code, field, field, ...]`` in
the model's field order, so that workers can emit them from their hot path as
plain tuples (see :func:`wire`) and readers rebuild the models
(:func:`from_wire`). A stream entry carries one or more events of one run.

Kinds: ``run-submitted``, ``run-finished``, ``task-started``, ``task-finished``
(with :class:`TaskExecutionMetrics`), ``task-failed``, ``transfer``,
``worker-started``, ``worker-heartbeat``, ``worker-stopped``, ``events-dropped``;
and two batch kinds, ``tasks-finished`` and ``transfers``, which carry many
task-finished or transfer events as columns (hot paths log these; readers
expand them, see :func:`expand`).

Tiny tasks that a worker runs in its fast lane (microseconds each) emit no
``task-started``: their ``task-finished`` carries the start time.
"""

from __future__ import annotations

import operator
import struct
from array import array
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Event",
    "RUN_ENDED",
    "EventsDropped",
    "RunFinished",
    "RunSubmitted",
    "TaskExecutionMetrics",
    "TaskFailed",
    "TaskFinished",
    "TaskStarted",
    "Transfer",
    "WorkerHeartbeat",
    "WorkerStarted",
    "TasksFinished",
    "Transfers",
    "WorkerStopped",
    "column",
    "expand",
    "from_wire",
    "to_columns",
    "to_dicts",
    "wire",
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


class RunFinished(Event):
    code: ClassVar[int] = 2
    kind: Literal["run-finished"] = "run-finished"
    status: Literal["finished", "failed", "cancelled"]
    makespan: float
    failed_task: str | None = None
    submit_seconds: float = 0.0  # how long submitting it took (on workers; 0 in-process)


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


TaskFinished = TaskExecutionMetrics


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
    """One object moved for a task: uploaded, downloaded, or handed over in memory."""

    code: ClassVar[int] = 6
    kind: Literal["transfer"] = "transfer"
    key: str  # the storage key of the object
    bytes: int = Field(ge=0)
    seconds: float = Field(ge=0)
    direction: Literal["upload", "download", "local"]
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
    way; readers expand them into :class:`TaskExecutionMetrics` (see :func:`expand`).
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


DIRECTIONS = ("upload", "download", "local")


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


class EventsDropped(Event):
    """The metrics buffer was full (the store was away): this many events were lost."""

    code: ClassVar[int] = 10
    kind: Literal["events-dropped"] = "events-dropped"
    count: int


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
    )
}
KINDS: dict[str, type[Event]] = {m.model_fields["kind"].default: m for m in MODELS.values()}
# Field order on the wire, after the code: every field but `kind` (the code says it).
FIELDS: dict[int, tuple[str, ...]] = {
    code: tuple(name for name in model.model_fields if name != "kind")
    for code, model in MODELS.items()
}


def wire(event: Event) -> list[Any]:
    """The wire form of a model: ``[code, *fields]``."""
    return [event.code, *(getattr(event, f) for f in FIELDS[event.code])]


def from_wire(item: list[Any] | tuple[Any, ...]) -> Event:
    """A model from its wire form (missing trailing fields take their defaults), as
    it was written: not validated again."""
    code, values = item[0], item[1:]
    model = MODELS[code]
    fields = dict(zip(FIELDS[code], values, strict=False))
    if code in _COLUMNS:
        fields = _decoded(model, fields)
    # What the log holds is read as written (writers' models were validated when made;
    # a reader does not refuse a run for one odd value, such as a clock that stepped).
    return model.model_construct(**fields)


# -- columns on the wire ------------------------------------------------------------

_COLUMN_TYPES = {"d": float, "q": int, "b": bool}


def column(values: Sequence[Any], typecode: str) -> bytes:
    """A numeric column as packed array bytes (``d`` float64, ``q`` int64, ``b`` bool).

    The bytes ``array(typecode, values).tobytes()`` gives, made by ``struct`` (four
    times faster: ``array`` converts item by item, 37 ns each on a 16k column).
    """
    return struct.pack(f"{len(values)}{typecode}", *values)


def _wire_field(item: list[Any] | tuple[Any, ...], name: str) -> tuple[Any, str | None]:
    """A batch field in wire form and its column typecode (``None``: not packed)."""
    code = item[0]
    at = 1 + FIELDS[code].index(name)
    value = item[at] if at < len(item) else []
    typecode = _COLUMNS[code].get(name)
    return value, typecode if isinstance(value, bytes | bytearray) else None


def wire_column(item: list[Any] | tuple[Any, ...], name: str) -> list[Any]:
    """One column of a batch in wire form, without building its model (hot readers)."""
    value, typecode = _wire_field(item, name)
    return array(typecode, value).tolist() if typecode is not None else list(value)


def wire_column_length(item: list[Any] | tuple[Any, ...], name: str) -> int:
    """How many values one column of a batch in wire form holds, without decoding it."""
    value, typecode = _wire_field(item, name)
    return len(value) // array(typecode).itemsize if typecode is not None else len(value)


def _decoded(model: type[Event], values: dict[str, Any]) -> dict[str, Any]:
    for name, value in values.items():
        if isinstance(value, bytes | bytearray) and name in _COLUMNS[model.code]:
            typecode = _COLUMNS[model.code][name]
            items = array(typecode, value).tolist()
            values[name] = [bool(x) for x in items] if typecode == "b" else items
    if model.code == TasksFinished.code:
        _fill_constant(values, bool)
        _wall_clock(values, values.get("clock") or 0.0)
        values["clock"] = 0.0
    return values


# tasks-finished columns a writer may leave empty, and the value they then hold
_CONSTANT = {
    "attempt": 1,
    "input_bytes": 0,
    "output_bytes": 0,
    "download_time": 0.0,
    "upload_time": 0.0,
    "kept": False,
}


def _fill_constant(columns: dict[str, Any], flag: type) -> None:
    """Empty constant columns of a tasks-finished batch filled in, in place
    (``kept`` as ``flag(False)``: ``bool`` for models, ``int`` for the page)."""
    n = len(columns["task"])
    if not n:
        return
    for name, value in _CONSTANT.items():
        if not columns.get(name):
            columns[name] = [flag(value) if name == "kept" else value] * n


def _wall_clock(columns: dict[str, Any], clock: float) -> None:
    """A tasks-finished batch's ``start`` and ``end`` columns as wall-clock times, in
    place: starts given after ``clock`` are shifted, a missing ``end`` is
    ``start + execution_time``."""
    if clock:
        columns["start"] = [clock + t for t in columns["start"]]
    if not columns.get("end") and columns.get("start"):
        columns["end"] = list(map(operator.add, columns["start"], columns["execution_time"]))


_COLUMNS: dict[int, dict[str, str]] = {
    TasksFinished.code: {
        "task": "q",
        "attempt": "q",
        "start": "d",
        "end": "d",
        "execution_time": "d",
        "input_bytes": "q",
        "output_bytes": "q",
        "download_time": "d",
        "upload_time": "d",
        "kept": "b",
        "lane": "q",
    },
    Transfers.code: {
        "bytes": "q",
        "seconds": "d",
        "direction": "q",
        "producer": "q",
        "consumer": "q",
        "local": "b",
    },
}


# per batch code: its kind, each field's index in the wire item, its packed columns
_PAGE_LAYOUT: dict[int, tuple[str, dict[str, int], tuple[tuple[str, str], ...]]] = {
    code: (
        MODELS[code].model_fields["kind"].default,
        {name: 1 + i for i, name in enumerate(FIELDS[code])},
        tuple(typecodes.items()),
    )
    for code, typecodes in _COLUMNS.items()
}


def expand(event: Event, graph: Any = None) -> list[Event]:
    """One event per fact: a batch (``tasks-finished``, ``transfers``) becomes its items.

    ``graph`` (a :class:`~dagrt.metrics.RunGraph`) supplies keys and names a
    batch left out.
    """
    if isinstance(event, TasksFinished):
        n = len(event.task)
        keys = event.key or ([graph.keys[i] for i in event.task] if graph else [""] * n)
        names = event.name or ([graph.names[i] for i in event.task] if graph else [""] * n)
        if event.workers and event.lane:
            workers = [event.workers[j] for j in event.lane]
        else:
            workers = [event.worker_id] * n
        return [
            TaskExecutionMetrics.model_construct(
                kind="task-finished",
                ts=event.end[j],
                run_id=event.run_id,
                worker_id=workers[j],
                task=event.task[j],
                key=keys[j],
                name=names[j],
                attempt=event.attempt[j],
                start=event.start[j],
                end=event.end[j],
                execution_time=event.execution_time[j],
                input_bytes=event.input_bytes[j],
                output_bytes=event.output_bytes[j],
                download_time=event.download_time[j],
                upload_time=event.upload_time[j],
                kept=event.kept[j],
            )
            for j in range(n)
        ]
    if isinstance(event, Transfers):
        from ..keys import RunKeys

        outputs = RunKeys(event.run_id) if event.run_id else None
        n = len(event.bytes)
        keys = event.key or [outputs.output(p) if outputs else str(p) for p in event.producer]
        return [
            Transfer.model_construct(
                kind="transfer",
                ts=event.ts,
                run_id=event.run_id,
                worker_id=event.worker_id,
                key=keys[j],
                bytes=event.bytes[j],
                seconds=event.seconds[j],
                direction=DIRECTIONS[event.direction[j]],  # type: ignore[arg-type]
                producer=event.producer[j],
                consumer=None if event.consumer[j] < 0 else event.consumer[j],
                local=event.local[j],
            )
            for j in range(n)
        ]
    return [event]


def _columns(code: int, item: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
    """A batch item's fields, numeric columns decoded to lists (no model built)."""
    model = MODELS[code]
    fields = dict(zip(FIELDS[code], item[1:], strict=False))
    for name in FIELDS[code][len(item) - 1 :]:
        fields[name] = model.model_fields[name].default
    return _decoded(model, fields)


def to_columns(item: list[Any] | tuple[Any, ...]) -> tuple[dict[str, Any], int]:
    """One JSON-ready dict for a wire item, and how many events it stands for.

    The dashboard's wire: a batch (``tasks-finished``, ``transfers``) stays one
    dict of columns (lists, ``n`` long; ``start``/``end`` are wall-clock seconds,
    ``kept``/``local`` are 0 or 1, ``direction`` indexes :data:`DIRECTIONS`,
    ``consumer`` is -1 for none, ``lane`` indexes ``workers``); its ``key`` and
    ``name`` columns are left out (the run's graph has them). Any other item is
    the dict :func:`to_dicts` gives. A page expands nothing it does not draw.
    """
    code = item[0]
    if code not in _COLUMNS:
        return to_dicts(item)[0], 1
    kind, at, columns = _PAGE_LAYOUT[code]
    get = item.__getitem__
    last = len(item)
    out: dict[str, Any] = {"kind": kind}
    for name in ("ts", "run_id", "worker_id"):
        out[name] = get(at[name])
    for name, typecode in columns:
        value = get(at[name]) if at[name] < last else []
        out[name] = (
            array(typecode, value).tolist()
            if isinstance(value, bytes | bytearray)
            else [int(x) for x in value]
            if typecode == "b"
            else list(value)
        )
    if code == TasksFinished.code:
        out["workers"] = list(get(at["workers"])) if at["workers"] < last else []
        _fill_constant(out, int)
        _wall_clock(out, get(at["clock"]) if at["clock"] < last else 0.0)
        n = len(out["task"])
    else:
        n = len(out["bytes"])
    out["n"] = n
    return out, n


def to_dicts(item: list[Any] | tuple[Any, ...], graph: Any = None) -> list[dict[str, Any]]:
    """Plain dicts (JSON-ready) of the events in one wire item, batches expanded.

    The dashboard's path: the same facts as :func:`expand`, built straight from
    the columns (no models: this runs for every event a page loads).
    """
    code = item[0]
    if code == TasksFinished.code:
        c = _columns(code, item)
        n = len(c["task"])
        tasks = c["task"]
        keys = c["key"] or ([graph.keys[i] for i in tasks] if graph else [""] * n)
        names = c["name"] or ([graph.names[i] for i in tasks] if graph else [""] * n)
        if c["workers"] and c["lane"]:
            table = c["workers"]
            workers = [table[j] for j in c["lane"]]
        else:
            workers = [c["worker_id"]] * n
        run_id = c["run_id"]
        return [
            {
                "kind": "task-finished",
                "ts": end,
                "run_id": run_id,
                "worker_id": w,
                "task": t,
                "key": k,
                "name": nm,
                "attempt": a,
                "start": st,
                "end": end,
                "execution_time": ex,
                "input_bytes": ib,
                "output_bytes": ob,
                "download_time": dl,
                "upload_time": ul,
                "kept": kp,
            }
            for t, k, nm, w, a, st, end, ex, ib, ob, dl, ul, kp in zip(
                tasks,
                keys,
                names,
                workers,
                c["attempt"],
                c["start"],
                c["end"],
                c["execution_time"],
                c["input_bytes"],
                c["output_bytes"],
                c["download_time"],
                c["upload_time"],
                c["kept"],
                strict=True,
            )
        ]
    if code == Transfers.code:
        c = _columns(code, item)
        run_id, worker, ts = c["run_id"], c["worker_id"], c["ts"]
        if c["key"]:
            keys = c["key"]
        else:
            from ..keys import RunKeys

            outputs = RunKeys(run_id) if run_id else None
            keys = [outputs.output(p) if outputs else str(p) for p in c["producer"]]
        return [
            {
                "kind": "transfer",
                "ts": ts,
                "run_id": run_id,
                "worker_id": worker,
                "key": k,
                "bytes": b,
                "seconds": sec,
                "direction": DIRECTIONS[d],
                "producer": p,
                "consumer": None if co < 0 else co,
                "local": lo,
            }
            for k, b, sec, d, p, co, lo in zip(
                keys,
                c["bytes"],
                c["seconds"],
                c["direction"],
                c["producer"],
                c["consumer"],
                c["local"],
                strict=True,
            )
        ]
    model = MODELS[code]
    out = dict(zip(FIELDS[code], item[1:], strict=False))
    out["kind"] = model.model_fields["kind"].default
    for name in FIELDS[code][len(item) - 1 :]:  # trailing fields left out: defaults
        out[name] = model.model_fields[name].default
    return [out]
