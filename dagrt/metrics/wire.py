"""The wire form of events: what a stream entry of ``dagrt:events`` holds.

Each event is a compact msgpack array: ``[code, field, field, ...]`` in its
model's field order (every field but ``kind``: the code says it), so that
workers emit events from their hot path as plain tuples (:func:`wire` for a
model, :mod:`.recorder` without one) and readers rebuild the models
(:func:`from_wire`). Trailing fields may be left out: they take their defaults.
A stream entry carries one or more events of one run.

The batch kinds (``tasks-finished``, ``transfers``) hold columns; numeric ones
travel packed (:func:`column`: ``array`` bytes). One decoder,
:func:`decode_batch`, turns a batch in wire form into its columns (packed ones
unpacked, the constant columns a writer left empty filled in, times made
wall-clock), and each reader shape is built from it: the models
(:func:`from_wire`, then :func:`expand` into one event per fact), the
dashboard's columns (:func:`to_columns`) and plain dicts (:func:`to_dicts`).
Hot writers read a single column without building anything
(:func:`wire_column`, :func:`wire_column_length`, :func:`event_count`).
"""

from __future__ import annotations

import operator
import struct
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .events import (
    DIRECTIONS,
    MODELS,
    PLACEMENTS,
    Event,
    TaskExecutionMetrics,
    TasksFinished,
    Transfer,
    Transfers,
)

__all__ = [
    "BATCH_ROWS",
    "FIELDS",
    "Item",
    "column",
    "decode_batch",
    "event_count",
    "expand",
    "from_wire",
    "position",
    "to_columns",
    "to_dicts",
    "wire",
    "wire_column",
    "wire_column_length",
]

#: an event in wire form (a list as msgpack reads it, or a hot path's tuple)
Item = list[Any] | tuple[Any, ...]

#: each code's fields in wire order, after the code: every field but ``kind``
FIELDS: dict[int, tuple[str, ...]] = {
    code: tuple(name for name in model.model_fields if name != "kind")
    for code, model in MODELS.items()
}


def position(model: type[Event], field: str) -> int:
    """Where ``field`` sits in the wire form of ``model`` (the code is at 0)."""
    return 1 + FIELDS[model.code].index(field)


def wire(event: Event) -> list[Any]:
    """The wire form of a model: ``[code, *fields]``."""
    return [event.code, *(getattr(event, f) for f in FIELDS[event.code])]


def from_wire(item: Item) -> Event:
    """A model from its wire form (missing trailing fields take their defaults), as
    it was written: not validated again."""
    code = item[0]
    if code in _BATCHES:
        fields = decode_batch(item)
    else:
        fields = dict(zip(FIELDS[code], item[1:], strict=False))
    # What the log holds is read as written (writers' models were validated when made;
    # a reader does not refuse a run for one odd value, such as a clock that stepped).
    return MODELS[code].model_construct(**fields)


# -- columns on the wire ------------------------------------------------------------

# per batch code: its numeric columns, packed on the wire (``d`` float64, ``q`` int64,
# ``b`` bool), in field order
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
        "placed": "B",
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

#: per batch code, the column whose length is the number of events in the batch
BATCH_ROWS: dict[int, str] = {TasksFinished.code: "task", Transfers.code: "bytes"}


def column(values: Sequence[Any], typecode: str) -> bytes:
    """A numeric column as packed array bytes (``d`` float64, ``q`` int64, ``b`` bool).

    The bytes ``array(typecode, values).tobytes()`` gives, made by ``struct`` (four
    times faster: ``array`` converts item by item, 37 ns each on a 16k column).
    """
    return struct.pack(f"{len(values)}{typecode}", *values)


def _wire_field(item: Item, name: str) -> tuple[Any, str | None]:
    """A batch field in wire form and its column typecode (``None``: not packed)."""
    code = item[0]
    at = 1 + FIELDS[code].index(name)
    value = item[at] if at < len(item) else []
    typecode = _COLUMNS[code].get(name)
    return value, typecode if isinstance(value, bytes | bytearray) else None


def wire_column(item: Item, name: str) -> list[Any]:
    """One column of a batch in wire form, without building its model (hot readers)."""
    value, typecode = _wire_field(item, name)
    return array(typecode, value).tolist() if typecode is not None else list(value)


def wire_column_length(item: Item, name: str) -> int:
    """How many values one column of a batch in wire form holds, without decoding it."""
    value, typecode = _wire_field(item, name)
    return len(value) // array(typecode).itemsize if typecode is not None else len(value)


def event_count(item: Item) -> int:
    """How many events a wire item stands for (a batch: its rows, at least 1)."""
    name = BATCH_ROWS.get(item[0])
    return 1 if name is None else max(1, wire_column_length(item, name))


# -- the batch decoder --------------------------------------------------------------


class _Batch(NamedTuple):
    """A batch kind's layout: its kind, and per field (wire order) its index in the
    wire item, its default (for a trailing field left out) and its column typecode
    (``None``: not a packed column)."""

    kind: str
    fields: tuple[tuple[str, int, Any, str | None], ...]


_BATCHES: dict[int, _Batch] = {
    code: _Batch(
        MODELS[code].model_fields["kind"].default,
        tuple(
            (name, 1 + i, MODELS[code].model_fields[name].default, typecodes.get(name))
            for i, name in enumerate(FIELDS[code])
        ),
    )
    for code, typecodes in _COLUMNS.items()
}

# tasks-finished columns a writer may leave empty, and the value they then hold
_CONSTANT = {
    "attempt": 1,
    "input_bytes": 0,
    "output_bytes": 0,
    "download_time": 0.0,
    "upload_time": 0.0,
    "kept": False,
    "placed": 0,
}


def decode_batch(item: Item, flag: Callable[[Any], Any] = bool) -> dict[str, Any]:
    """A batch (``tasks-finished``, ``transfers``) in wire form as its fields: ``kind``
    and every model field (trailing ones left out take their defaults), packed
    columns as lists, flag columns (``kept``, ``local``) as ``flag`` values (``bool``
    for models, ``int`` for the page's JSON).

    A tasks-finished batch also gets the constant columns a writer left empty filled
    in, its ``start`` shifted by its ``clock`` and a missing ``end`` made
    ``start + execution_time``, so that readers see wall-clock times and ``clock == 0``.
    """
    code = item[0]
    kind, fields = _BATCHES[code]
    last = len(item)
    out: dict[str, Any] = {"kind": kind}
    for name, at, default, typecode in fields:
        # (a trailing list left out: a list of its own, not the model's default)
        value = item[at] if at < last else [] if isinstance(default, list) else default
        if typecode is not None:
            if isinstance(value, bytes | bytearray):
                value = array(typecode, value).tolist()  # (flags come back as 0 and 1)
                if typecode == "b" and flag is bool:
                    value = [x != 0 for x in value]
            elif typecode == "b" and flag is not bool:
                value = [flag(x) for x in value]
            else:
                value = list(value)
        out[name] = value
    if code == TasksFinished.code:
        n = len(out["task"])
        if n:
            for name, constant in _CONSTANT.items():
                if not out[name]:
                    out[name] = [flag(constant) if name == "kept" else constant] * n
        clock = out["clock"] or 0.0
        if clock:
            out["start"] = [clock + t for t in out["start"]]
        if not out["end"] and out["start"]:
            out["end"] = list(map(operator.add, out["start"], out["execution_time"]))
        out["clock"] = 0.0
    return out


def _rows(c: Mapping[str, Any], graph: Any) -> list[dict[str, Any]]:
    """The events of a decoded batch (:func:`decode_batch`, or a batch model's
    fields), one dict each (``graph`` supplies keys and names the batch left out)."""
    if c["kind"] == "tasks-finished":
        tasks = c["task"]
        n = len(tasks)
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
                "placed": PLACEMENTS[pl] if 0 <= pl < len(PLACEMENTS) else "",
            }
            for t, k, nm, w, a, st, end, ex, ib, ob, dl, ul, kp, pl in zip(
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
                c["placed"] or [0] * n,  # (a batch model built without them)
                strict=True,
            )
        ]
    run_id, worker, ts = c["run_id"], c["worker_id"], c["ts"]
    if c["key"]:
        keys = c["key"]
    else:
        from ..keys import RunKeys, valid_run_id

        outputs = RunKeys(run_id) if valid_run_id(run_id) else None
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


# -- what readers get ---------------------------------------------------------------


def expand(event: Event, graph: Any = None) -> list[Event]:
    """One event per fact: a batch (``tasks-finished``, ``transfers``) becomes its items.

    ``graph`` (a :class:`~dagrt.metrics.RunGraph`) supplies keys and names a
    batch left out.
    """
    if isinstance(event, TasksFinished):
        model: type[Event] = TaskExecutionMetrics
    elif isinstance(event, Transfers):
        model = Transfer
    else:
        return [event]
    rows = _rows(vars(event), graph)
    if not rows:
        return []
    # Models as read (not validated again): the first made, the others copies of it
    # with every field replaced (a copy costs half of ``model_construct``).
    first = model.model_construct(**rows[0])
    return [first, *[first.model_copy(update=row) for row in rows[1:]]]


# per batch code: the fields the page gets (not ``key`` and ``name``: the graph has them)
_PAGE_FIELDS: dict[int, tuple[str, ...]] = {
    code: ("kind", *(f for f, *_ in batch.fields if f not in ("key", "name", "clock")))
    for code, batch in _BATCHES.items()
}


def to_columns(item: Item) -> tuple[dict[str, Any], int]:
    """One JSON-ready dict for a wire item, and how many events it stands for.

    The dashboard's wire: a batch (``tasks-finished``, ``transfers``) stays one
    dict of columns (lists, ``n`` long; ``start``/``end`` are wall-clock seconds,
    ``kept``/``local`` are 0 or 1, ``direction`` indexes :data:`DIRECTIONS`,
    ``consumer`` is -1 for none, ``lane`` indexes ``workers``); its ``key`` and
    ``name`` columns are left out (the run's graph has them). Any other item is
    the dict :func:`to_dicts` gives. A page expands nothing it does not draw.
    """
    code = item[0]
    if code not in _BATCHES:
        return to_dicts(item)[0], 1
    c = decode_batch(item, int)
    out = {name: c[name] for name in _PAGE_FIELDS[code]}
    n = len(c[BATCH_ROWS[code]])
    out["n"] = n
    return out, n


def to_dicts(item: Item, graph: Any = None) -> list[dict[str, Any]]:
    """Plain dicts (JSON-ready) of the events in one wire item, batches expanded.

    The dashboard's path: the same facts as :func:`expand`, built straight from
    the columns (no models: this runs for every event a page loads).
    """
    code = item[0]
    if code in _BATCHES:
        return _rows(decode_batch(item), graph)
    model = MODELS[code]
    out = dict(zip(FIELDS[code], item[1:], strict=False))
    out["kind"] = model.model_fields["kind"].default
    for name in FIELDS[code][len(item) - 1 :]:  # trailing fields left out: defaults
        out[name] = model.model_fields[name].default
    return [out]
