"""Planning one write of the event log, from buffered events to the calls that log
them: pure (no I/O, no state), so that the writer only takes, sends and keeps.

Events are grouped by run; each run's go in entries of up to ``ENTRY_EVENTS``
events, fewer where one would exceed the server's limit on one value (an event
too large on its own keeps the first ``LONG_TEXT`` characters of its long texts,
else it is left out and counted as lost); each run is one ``log_run`` call
(:mod:`.runs_index`), numbered in the writer's sequence. Records (a run's graph)
are built into the bytes to write before the calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..serialize import pack
from ..storage import commands as C
from .events import TaskExecutionMetrics
from .runs_index import log_run_call
from .wire import Item, event_count, position

__all__ = ["ENTRY_EVENTS", "LONG_TEXT", "PendingWrite", "Record", "build_records", "plan_write"]

log = logging.getLogger("dagrt.metrics")

ENTRY_EVENTS = 256  # events per stream entry, at most
LONG_TEXT = 64 * 1024  # characters of a text field kept in an event too large to write

#: a record to write before the events: its key, and its bytes or what builds them
Record = tuple[str, bytes | Callable[[], bytes]]

_RUN = position(TaskExecutionMetrics, "run_id")  # (the same place in every event)


@dataclass
class PendingWrite:
    """One flush's writes, planned once: records still to write, then the log calls
    (each with its writer's sequence number, so a write sent again after a reply that
    never came is applied once)."""

    records: list[Record]
    cmds: list[C.Cmd]
    count: int  # events in it
    size: int  # what it holds against the buffer's bound (a batch: its rows)


def plan_write(
    stream: str,
    items: list[Item],
    notes: list[Item],
    records: list[Record],
    *,
    writer: str,
    seq: int,
    limit: int,
) -> tuple[PendingWrite, int, int]:
    """The write that logs ``items`` and then ``notes`` (the writer's own notes, such
    as events-dropped, not counted among its events) on ``stream`` after ``records``,
    its calls numbered from ``seq + 1`` for ``writer``, no entry over ``limit`` bytes
    (the server's limit on one value). Also the last number used, and how many events
    could not be written at all."""
    cmds, seq, lost = _log_calls(stream, [*items, *notes] if notes else items, writer, seq, limit)
    return PendingWrite(records, cmds, len(items) - lost, sum(map(event_count, items))), seq, lost


def _log_calls(
    stream: str, items: list[Item], writer: str, seq: int, limit: int
) -> tuple[list[C.Cmd], int, int]:
    """The ``log_run`` calls that log ``items``: per run, its entries (up to
    ``ENTRY_EVENTS`` events each, fewer where that would exceed the server's
    ``limit`` on one value) and what they change in the runs index, numbered from
    ``seq + 1``. Also the last number used, and how many events could not be written
    at all (an event with long texts keeps their first ``LONG_TEXT`` characters)."""
    by_run: dict[str, list[Item]] = {}
    for item in items:
        by_run.setdefault(item[_RUN], []).append(item)
    cmds: list[C.Cmd] = []
    lost = 0
    room = max(1024, limit - 4096)  # the script's other arguments travel beside
    for run_id, events in by_run.items():
        entries: list[tuple[int, bytes]] = []
        for start in range(0, len(events), ENTRY_EVENTS):
            lost += _fit(events[start : start + ENTRY_EVENTS], room, entries)
        if not entries:
            continue
        seq += 1
        cmds.append(log_run_call(stream, run_id, writer, seq, entries, events))
    return cmds, seq, lost


def _fit(chunk: list[Item], room: int, out: list[tuple[int, bytes]]) -> int:
    """Pack ``chunk`` into entries of at most ``room`` bytes (halving it as needed);
    how many of its events could not be packed."""
    try:
        data = pack(chunk)
    except Exception:  # something in it msgpack cannot encode: find it
        data = None
    if data is not None and len(data) <= room:
        out.append((len(chunk), data))
        return 0
    if len(chunk) > 1:
        mid = len(chunk) // 2
        return _fit(chunk[:mid], room, out) + _fit(chunk[mid:], room, out)
    item = _shortened(chunk[0])
    try:
        data = pack([item])
    except Exception:
        log.exception("metrics: an event cannot be encoded (left out): %r", chunk[0][:4])
        return 1
    if len(data) > room:
        log.error("metrics: an event of %d bytes is too large for the log (left out)", len(data))
        return 1
    out.append((1, data))
    return 0


def _shortened(item: Item) -> Item:
    """The event with its long texts (a huge error message or traceback) cut short."""
    return [
        x[:LONG_TEXT] + f"... ({len(x) - LONG_TEXT:,} characters cut)"
        if isinstance(x, str) and len(x) > LONG_TEXT
        else x
        for x in item
    ]


def build_records(records: list[Record]) -> list[Record]:
    """Each record's bytes (built once: a record given back keeps its bytes, not what
    it was built from); one that cannot be built is logged and left out (the events
    still go: a broken record must not stop the log)."""
    built: list[Record] = []
    for key, build in records:
        try:
            value = build if isinstance(build, bytes | bytearray | memoryview) else build()
            built.append((key, value if isinstance(value, bytes) else bytes(value)))
        except Exception:
            log.exception("metrics: cannot build the record %s (left out)", key)
    return built
