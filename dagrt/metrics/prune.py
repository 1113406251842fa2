"""Retention of the event log: delete runs (and worker events) older than a cutoff.

The log is kept until someone deletes it. ``prune(storage, before=t)`` deletes
every run whose log ended before ``t`` (its run-finished or its newest entry,
whichever is later; a run without a run-finished counts as ended a day after its
newest entry, as long as it could still be going on): its entries in
``dagrt:events`` (by the ids its index lists), its record, its list of entries,
its graph, and its place in the runs index. Events of no run (worker
started/heartbeat/stopped) older than ``t`` go too. Runs logged after ``t`` keep
every entry, however old their first ones are. Written once, as a generator of
commands, for the sync and async drivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import keys as K
from .. import submission
from ..storage import Storage
from ..storage import commands as C
from ..storage.base import Flow
from .read import PAGE, RunSummary, _adrive, _drive

__all__ = ["Pruned", "aprune", "prune"]

BATCH = 500  # ids deleted per command


@dataclass
class Pruned:
    """What a prune deleted (or would delete, with ``dry_run``)."""

    runs: list[str]
    entries: int  # stream entries: the runs' and the worker events'


def _prune_flow(before: float, dry_run: bool) -> Flow:
    runs: list[str] = []
    entries = 0
    # The runs index is ordered by submission: a run submitted after the cutoff cannot
    # have ended before it.
    candidates = yield C.zrange_by_score(K.runs_index(), float("-inf"), before)
    for raw in candidates:
        run_id = raw.decode(errors="replace")
        if not K.valid_run_id(run_id):  # not written by dagrt: it names no keys to delete
            runs.append(run_id)
            if not dry_run:
                yield C.zrem(K.runs_index(), [raw])
            continue
        record = yield C.hgetall(K.run_record(run_id))
        summary = RunSummary.from_hash(run_id, record)
        ended = max(summary.finished or 0.0, summary.last_logged)
        if summary.finished is None:
            # No run-finished: it may be going on (a long task logs nothing for a
            # while), or its client died. Only once it could no longer be running (its
            # keys on the tasks server expire after a day) does it count as ended.
            ended += submission.DEFAULT_TTL
        if ended >= before:
            continue
        ids = yield C.lrange(K.run_entries(run_id), 0, -1)
        runs.append(run_id)
        entries += len(ids)
        if dry_run:
            continue
        yield [  # one round trip per run
            *(C.xdel(K.events(), ids[at : at + BATCH]) for at in range(0, len(ids), BATCH)),
            C.delete([K.run_record(run_id), K.run_entries(run_id), K.graph(run_id)]),
            C.zrem(K.runs_index(), [run_id]),
        ]
    # worker events (no run) written before the cutoff
    start: str = "-"
    end = f"{int(before * 1000)}"
    while True:
        page = yield C.xrange(K.events(), start, end, PAGE)
        mine = [eid for eid, fields in page if not fields.get(b"r")]
        entries += len(mine)
        if mine and not dry_run:
            yield C.xdel(K.events(), mine)
        if len(page) < PAGE:
            break
        start = "(" + page[-1][0].decode()
    return Pruned(runs=runs, entries=entries)


def _checked(before: Any) -> float:
    if isinstance(before, bool) or not isinstance(before, int | float) or before != before:
        raise TypeError(f"before must be a wall-clock time in seconds, got {before!r}")
    return float(before)


def prune(storage: Storage | str, *, before: float, dry_run: bool = False) -> Pruned:
    """Delete the runs whose log ended before ``before`` (seconds since the epoch), and
    worker events older than it; what was deleted. ``dry_run``: delete nothing."""
    return _drive(storage, _prune_flow(_checked(before), dry_run))  # type: ignore[no-any-return]


async def aprune(storage: Storage | str, *, before: float, dry_run: bool = False) -> Pruned:
    return await _adrive(storage, _prune_flow(_checked(before), dry_run))  # type: ignore[no-any-return]
