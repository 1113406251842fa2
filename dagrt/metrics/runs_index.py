"""What a write does to the runs index: the ``log_run`` script and its arguments.

Every write of the event log is a call of ``log_run.lua`` per run: it appends the
run's new entries to the stream ``dagrt:events`` and, in the same atomic step,
updates the runs index that readers use (``dagrt:run:<id>`` hashes: first/last
entry ids, status, counts and workers; the list of the run's entries; the
``dagrt:runs`` sorted set by submission time). :func:`index_updates` works out
from the events (in wire form, no model built) what they change there, and
:func:`log_run_call` lays it out as the script's arguments.
"""

from __future__ import annotations

from typing import Any

from .. import keys as K
from ..storage import Script
from ..storage import commands as C
from .events import (
    RUN_ENDED,
    EventsDropped,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    TasksFinished,
    TaskStarted,
    Transfer,
    Transfers,
)
from .wire import Item, position, wire_column, wire_column_length

__all__ = ["LOG_RUN", "index_updates", "log_run_call"]


LOG_RUN = Script.from_package("log_run.lua")


def log_run_call(
    stream: str,
    run_id: str,
    writer: str,
    seq: int,
    entries: list[tuple[int, bytes]],
    events: list[Item],
) -> C.Cmd:
    """The ``log_run`` call that appends ``entries`` (``(events in it, packed
    events)`` each) of ``run_id`` to ``stream`` as the writer's call number ``seq``,
    and applies what ``events`` (the events in them) change in the runs index."""
    argv: list[Any] = [run_id, seq, len(entries)]
    for n, data in entries:
        argv += [n, data]
    counts, fields, listed, first_ts = index_updates(events) if run_id else ({}, {}, None, None)
    argv.append(len(counts))
    for name, amount in counts.items():
        argv += [name, amount]
    argv.append(len(fields))
    for name, value in fields.items():
        argv += [name, value]
    if listed is not None:
        argv += [repr(listed), "S"]
    elif first_ts is not None:
        argv += [repr(first_ts), "N"]  # no submission seen yet: listed all the same
    else:
        argv += ["", ""]
    keys = (
        stream,
        K.run_record(run_id) if run_id else stream,  # (no run: the script indexes nothing)
        K.run_entries(run_id) if run_id else stream,
        K.runs_index(),
        K.log_writer(writer),
    )
    largest = max(len(data) for _, data in entries)
    return C.Cmd(("EVALSHA", LOG_RUN.sha, len(keys), *keys, *argv), None, stream, largest)


_TS = position(RunSubmitted, "ts")
_WORKER = position(TaskExecutionMetrics, "worker_id")
_FAILED_FINAL = position(TaskFailed, "final")
_EXC_TYPE = position(TaskFailed, "exc_type")
_BYTES, _LOCAL = position(Transfer, "bytes"), position(Transfer, "local")
_STATUS, _MAKESPAN = position(RunFinished, "status"), position(RunFinished, "makespan")
_FROM_CACHE, _SKIPPED = position(RunFinished, "from_cache"), position(RunFinished, "skipped")
_N_TASKS, _CLIENT, _RUNTIME, _PARENT_RUN, _PARENT_TASK = (
    position(RunSubmitted, f)
    for f in ("n_tasks", "client_id", "runtime", "parent_run", "parent_task")
)
_PRIORITY, _LANES = position(RunSubmitted, "priority"), position(RunSubmitted, "lanes")
_BATCH_WORKER = position(TasksFinished, "worker_id")
_DROPPED_COUNT = position(EventsDropped, "count")

_FINISHED = TaskExecutionMetrics.code
_STARTED = TaskStarted.code
_FAILED = TaskFailed.code
_TRANSFER = Transfer.code
_BATCH_FINISHED = TasksFinished.code
_BATCH_TRANSFERS = Transfers.code
_SUBMITTED = RunSubmitted.code
_RUN_FINISHED = RunFinished.code
_DROPPED = EventsDropped.code


def index_updates(
    events: list[Item],
) -> tuple[dict[str, int], dict[str, Any], float | None, float]:
    """What one run's new events change in the runs index: counters to add (tasks done
    and failed, bytes moved, attempts started and ended, events dropped), fields to set
    (status, times, workers), the submission time when the run is new, and the time of
    the earliest of these events."""
    done = failed = moved = started = ended = dropped = 0
    workers: set[str] = set()
    fields: dict[str, Any] = {}
    listed: float | None = None
    first_ts = min(item[_TS] for item in events)
    for item in events:
        code = item[0]
        if code == _FINISHED:
            done += 1
            ended += 1
            workers.add(item[_WORKER])
        elif code == _STARTED:
            started += 1
        elif code == _FAILED:
            ended += 1
            final = len(item) <= _FAILED_FINAL or item[_FAILED_FINAL]  # else a retry follows
            if final and item[_EXC_TYPE] != RUN_ENDED:  # (not run: its run had ended)
                failed += 1
            workers.add(item[_WORKER])
        elif code == _TRANSFER:
            if not item[_LOCAL]:  # the bytes crossed the network
                moved += item[_BYTES]
        elif code == _BATCH_FINISHED:  # columns read as they are, no model built
            done += wire_column_length(item, "task")
            workers.update(wire_column(item, "workers") or [item[_BATCH_WORKER]])
        elif code == _BATCH_TRANSFERS:
            sizes = wire_column(item, "bytes")
            local = wire_column(item, "local")
            moved += sum(b for b, here in zip(sizes, local, strict=True) if not here)
        elif code == _SUBMITTED:
            fields.update(
                status="running",
                submitted=item[_TS],
                n_tasks=item[_N_TASKS],
                client=item[_CLIENT] if len(item) > _CLIENT else "",
                runtime=item[_RUNTIME] if len(item) > _RUNTIME else "",
            )
            if len(item) > _PARENT_TASK and item[_PARENT_RUN]:  # the graph a task returned
                fields.update(parent_run=item[_PARENT_RUN], parent_task=item[_PARENT_TASK])
            if len(item) > _PRIORITY and item[_PRIORITY]:  # (dagrt.resources)
                fields.update(priority=item[_PRIORITY])
            if len(item) > _LANES and item[_LANES]:  # its tasks per lane, "lane\tn" lines
                fields.update(lanes="\n".join(f"{k}\t{v}" for k, v in item[_LANES].items()))
            listed = item[_TS]
        elif code == _RUN_FINISHED:
            fields.update(status=item[_STATUS], finished=item[_TS], makespan=item[_MAKESPAN])
            spared = (item[_FROM_CACHE] if len(item) > _FROM_CACHE else 0) + (
                item[_SKIPPED] if len(item) > _SKIPPED else 0
            )
            if spared:  # tasks that did not run: the cache had them, or what needed them
                fields.update(spared=spared)
        elif code == _DROPPED:
            dropped += item[_DROPPED_COUNT]
    counts = {
        name: n
        for name, n in (
            ("done", done),
            ("failed", failed),
            ("bytes", moved),
            ("started", started),
            ("ended", ended),
            ("dropped", dropped),
        )
        if n
    }
    workers.discard("")
    fields.update({f"w:{w}": 1 for w in workers})
    return counts, fields, listed, first_ts
