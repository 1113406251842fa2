"""Reading the event log: one run's events, its graph, the list of runs.

Each reader is written once, as a generator of storage commands, and driven
by the storage's sync or async driver (``read_run`` / ``aread_run``). Reading
one run costs in proportion to that run's own events: the runs index lists the
ids of the run's entries, and only those are read (logs written before that
list existed are read by the run's range of entries, first to last).

Workers write their events on their own schedule, so right after a run ends its
log may still be filling; ``read_run(..., wait=seconds)`` first blocks on the
log (no polling) until the runs index says the run is complete (see
:attr:`RunSummary.complete`), or the time is up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from .. import keys as K
from ..exceptions import RunNotFoundError, SerializationError
from ..serialize import unpack
from ..storage import RedisStorage, Script, Storage
from ..storage import commands as C
from ..storage.base import Flow, script_flow
from .events import Event
from .run_graph import RunGraph, decode_graph
from .wire import expand, from_wire

__all__ = [
    "RunSummary",
    "alist_runs",
    "aread_graph",
    "aread_log",
    "aread_run",
    "arun_summary",
    "await_for_run",
    "entries_page_flow",
    "list_runs",
    "read_graph",
    "read_log",
    "read_run",
    "run_summary",
    "wait_for_run",
]

log = logging.getLogger("dagrt.metrics")

PAGE = 1000  # entries read at a time by range (logs without the entries list)
ENTRIES_PER_CALL = 200  # entries read by id in one call
SETTLE = 2.0  # seconds a failed or cancelled run's log stays quiet before it counts whole


@dataclass
class RunSummary:
    """A run as the runs index sees it."""

    run_id: str
    status: str
    n_tasks: int
    done: int = 0
    failed: int = 0
    submitted: float = 0.0
    finished: float | None = None
    makespan: float | None = None
    bytes_moved: int = 0
    workers: list[str] = field(default_factory=list)
    runtime: str = ""  # "in-process", or the server the run went to
    client: str = ""
    started: int = 0  # attempts that logged a task-started
    ended: int = 0  # attempts that logged their end (task-finished or task-failed)
    dropped: int = 0  # events lost to a full buffer (the log's store was away)
    spared: int = 0  # tasks not run: the cache had them, or only such tasks needed them
    parent_run: str = ""  # a sub-run: the run of the task whose returned graph it is
    parent_task: str = ""  # ... and that task's key
    priority: int = 0  # the run's (dagrt.resources)
    lanes: dict[str, int] = field(default_factory=dict)  # its tasks per lane

    last_logged: float = 0.0  # when the run's newest entry was written (wall clock)

    @property
    def complete(self) -> bool:
        """Is the run's log complete? Its run-finished event is in and, for a run on
        workers (which write their events on their own schedule): every attempt that
        logged its start has logged its end; a run that finished has a task-finished
        event for each task; a run that failed or was cancelled has been quiet (no new
        entry) for ``SETTLE`` seconds, time enough for workers still holding its
        events to write them (they do once idle, or on their clock), and so has a run
        whose writers dropped events (see ``dropped``). An in-process run's events all
        go before its run-finished. A worker that died holding events
        leaves a finished run incomplete for good (readers that wait give up)."""
        if self.status not in ("finished", "failed", "cancelled"):
            return False
        if self.dropped:  # events were lost: the log is as whole as it gets once quiet
            return self.quiet() >= SETTLE
        if self.runtime == "in-process":
            return True
        if self.ended < self.started:
            return False
        if self.status == "finished":
            return self.done + self.spared >= self.n_tasks
        return self.quiet() >= SETTLE

    def quiet(self, now: float | None = None) -> float:
        """Seconds since the run ended or its newest entry was written, whichever is later."""
        latest = max(self.finished or 0.0, self.last_logged)
        return (time.time() if now is None else now) - latest

    @classmethod
    def from_hash(cls, run_id: str, raw: dict[bytes, bytes]) -> RunSummary:
        text = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            run_id=run_id,
            status=text.get("status", "unknown"),
            n_tasks=int(text.get("n_tasks", 0)),
            done=int(text.get("done", 0)),
            failed=int(text.get("failed", 0)),
            submitted=float(text.get("submitted", 0)),
            finished=float(text["finished"]) if "finished" in text else None,
            makespan=float(text["makespan"]) if "makespan" in text else None,
            bytes_moved=int(text.get("bytes", 0)),
            workers=sorted(k[2:] for k in text if k.startswith("w:")),
            runtime=text.get("runtime", ""),
            client=text.get("client", ""),
            started=int(text.get("started", 0)),
            ended=int(text.get("ended", 0)),
            spared=int(text.get("spared", 0)),
            parent_run=text.get("parent_run", ""),
            parent_task=text.get("parent_task", ""),
            priority=int(text.get("priority", 0)),
            lanes=_lanes(text.get("lanes", "")),
            dropped=int(text.get("dropped", 0)),
            last_logged=K.entry_order(text["last"])[0] / 1000 if "last" in text else 0.0,
        )


READ_ENTRIES = Script.from_package("read_entries.lua", read_only=True)


def _lanes(text: str) -> dict[str, int]:
    """A run's tasks per lane, as the runs index keeps them ("lane\tcount" lines)."""
    out = {}
    for line in filter(None, text.split("\n")):
        lane, _, n = line.rpartition("\t")
        if n.isdigit():
            out[lane] = int(n)
    return out


def _fields(flat: list[Any]) -> dict[bytes, bytes]:
    return dict(zip(flat[0::2], flat[1::2], strict=True))


# --------------------------------------------------------------------------- flows


def _entry_ids_flow(run_id: str) -> Flow:
    """The run's record in the runs index and its entry ids in log order (empty for a
    log written before runs listed their entries)."""
    record = yield C.hgetall(K.run_record(run_id))
    if not record or b"first" not in record:
        raise RunNotFoundError(f"no events of run {run_id!r} in the event log")
    ids = yield C.lrange(K.run_entries(run_id), 0, -1)
    return record, sorted(set(ids), key=K.entry_order)


def _entries_flow(ids: list[Any]) -> Flow:
    """The entries ``ids`` as ``(id, fields)``, ``ENTRIES_PER_CALL`` a call (nothing for
    an entry trimmed from the log)."""
    out: list[tuple[Any, dict[bytes, bytes]]] = []
    for start in range(0, len(ids), ENTRIES_PER_CALL):
        chunk = ids[start : start + ENTRIES_PER_CALL]
        replies = yield from script_flow(READ_ENTRIES, [K.events()], chunk)
        out += [(eid, _fields(flat)) for reply in replies for eid, flat in reply]
    return out


def _run_flow(run_id: str) -> Flow:
    record, ids = yield from _entry_ids_flow(run_id)
    raw_graph = yield C.get(K.graph(run_id))
    graph = None
    if raw_graph is not None:
        try:
            graph = decode_graph(raw_graph, run_id)
        except SerializationError as exc:  # the events still read, without keys and names
            log.warning("%s; reading the run's events without it", exc)
    events: list[Event] = []

    def take(fields: dict[bytes, bytes]) -> None:
        if fields.get(b"r", b"").decode() == run_id:
            for item in unpack(fields[b"d"]):
                events.extend(expand(from_wire(item), graph))

    if ids:
        for _, fields in (yield from _entries_flow(ids)):
            take(fields)
        return events
    # A log written before runs listed their entries: read the run's range.
    first, last = record[b"first"].decode(), record[b"last"].decode()
    start = first
    while True:
        page = yield C.xrange(K.events(), start, last, PAGE)
        for _, fields in page:
            take(fields)
        if len(page) < PAGE:
            return events
        start = "(" + page[-1][0].decode()


def entries_page_flow(run_id: str, after: str | None, count: int) -> Flow:
    """Up to ``count`` of the run's own entries after the entry id ``after`` (``None``:
    from its first), as ``(entries, done)``: what a paging reader (the dashboard's
    replay) needs, at the cost of those entries only (a log without the run's list of
    entries is paged by its range)."""
    record, ordered = yield from _entry_ids_flow(run_id)
    if not ordered:
        first, last = record[b"first"].decode(), record[b"last"].decode()
        page = yield C.xrange(K.events(), "(" + after if after else first, last, count)
        end = page[-1][0].decode() if page else (after or first)
        return page, len(page) < count or end == last
    if after:
        mark = K.entry_order(after)
        ordered = [i for i in ordered if K.entry_order(i) > mark]
    out = yield from _entries_flow(ordered[:count])
    return out, len(ordered) <= count


def _summary_flow(run_id: str) -> Flow:
    record = yield C.hgetall(K.run_record(run_id))
    if not record:
        raise RunNotFoundError(f"no events of run {run_id!r} in the event log")
    return RunSummary.from_hash(run_id, record)


def _graph_flow(run_id: str) -> Flow:
    raw = yield C.get(K.graph(run_id))
    if raw is None:
        raise RunNotFoundError(f"no graph of run {run_id!r} in the event log")
    return decode_graph(raw, run_id)


def _log_flow(since: float | None, until: float | None, limit: int | None) -> Flow:
    start = f"{int(since * 1000)}-0" if since is not None else "-"
    end = f"{int(until * 1000)}" if until is not None else "+"
    events: list[Event] = []
    graphs: dict[str, RunGraph | None] = {}
    while limit is None or len(events) < limit:
        page = yield C.xrange(K.events(), start, end, PAGE if limit is None else min(PAGE, limit))
        for _, fields in page:
            run_id = fields.get(b"r", b"").decode(errors="replace")
            if K.valid_run_id(run_id) and run_id not in graphs:
                raw = yield C.get(K.graph(run_id))
                try:
                    graphs[run_id] = decode_graph(raw, run_id) if raw is not None else None
                except SerializationError:
                    graphs[run_id] = None
            for item in unpack(fields[b"d"]):
                events.extend(expand(from_wire(item), graphs.get(run_id)))
        if len(page) < (PAGE if limit is None else min(PAGE, limit)):
            break
        start = "(" + page[-1][0].decode()
    return events if limit is None else events[:limit]


def _runs_flow(limit: int) -> Flow:
    ids = yield C.zrange(K.runs_index(), 0, limit - 1, desc=True)
    out = []
    for raw_id in ids:
        run_id = raw_id.decode(errors="replace")
        if not K.valid_run_id(run_id):  # not written by dagrt: not a run to list
            log.warning("the runs index lists %.200r, which is not a run id: left out", run_id)
            continue
        record = yield C.hgetall(K.run_record(run_id))
        out.append(RunSummary.from_hash(run_id, record))
    return out


# --------------------------------------------------------------------------- drivers


_NO_RUN: Any = object()  # a reader that takes no run id


def _checked(storage: Storage | str, run_id: Any = _NO_RUN) -> tuple[Storage, bool]:
    """The storage to read (made from a URL, then owned by the caller: True), after
    checking the arguments."""
    if run_id is not _NO_RUN:
        K.check_run_id(run_id)
    if isinstance(storage, str):
        return RedisStorage(storage), True
    if not isinstance(storage, Storage):
        raise TypeError(
            f"storage must be a dagrt Storage or a redis:// URL, got {type(storage).__name__}"
        )
    return storage, False


def _drive(storage: Storage | str, flow: Flow, run_id: Any = _NO_RUN) -> Any:
    store, owned = _checked(storage, run_id)
    try:
        return store._drive(flow)
    finally:
        if owned:
            store.close()


async def _adrive(storage: Storage | str, flow: Flow, run_id: Any = _NO_RUN) -> Any:
    store, owned = _checked(storage, run_id)
    try:
        return await store._adrive(flow)
    finally:
        if owned:
            await store.aclose()


def _wait_checked(wait: Any, name: str = "wait") -> float:
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait < float("inf"):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {wait!r}")
    return float(wait)


def read_run(storage: Storage | str, run_id: str, *, wait: float = 0.0) -> list[Event]:
    """Every event of ``run_id``, in the order they were logged (workers' and the
    client's entries interleave as they were written: order by ``ts`` for a timeline).

    ``storage`` is the event log's store, or its ``redis://`` URL. ``wait`` seconds:
    first wait (blocking on the log) until the run's log is complete (see
    :attr:`RunSummary.complete`); after that, what is there is returned.
    """
    if _wait_checked(wait):
        wait_for_run(storage, run_id, wait)
    return _drive(storage, _run_flow(run_id), run_id)  # type: ignore[no-any-return]


async def aread_run(storage: Storage | str, run_id: str, *, wait: float = 0.0) -> list[Event]:
    if _wait_checked(wait):
        await await_for_run(storage, run_id, wait)
    return await _adrive(storage, _run_flow(run_id), run_id)  # type: ignore[no-any-return]


def run_summary(storage: Storage | str, run_id: str) -> RunSummary:
    """The run's entry in the runs index (status, counts, whether its log is complete)."""
    return _drive(storage, _summary_flow(run_id), run_id)  # type: ignore[no-any-return]


async def arun_summary(storage: Storage | str, run_id: str) -> RunSummary:
    return await _adrive(storage, _summary_flow(run_id), run_id)  # type: ignore[no-any-return]


def wait_for_run(storage: Storage | str, run_id: str, within: float) -> RunSummary:
    """Block until the run's log is complete or ``within`` seconds passed; its summary
    then (check ``.complete``). Wakes on new entries of the log (``XREAD BLOCK``)."""
    within = _wait_checked(within, "within")
    store, owned = _checked(storage, run_id)
    try:
        deadline = time.monotonic() + within
        last = _last_id(store.xrevrange(K.events(), count=1))
        while True:
            summary = store._drive(_summary_flow(run_id))
            left = deadline - time.monotonic()
            if summary.complete or left <= 0:
                return summary  # type: ignore[no-any-return]
            reply = store.xread({K.events(): last}, count=100, block=_block(summary, left))
            if reply:
                last = reply[0][1][-1][0]
    finally:
        if owned:
            store.close()


async def await_for_run(storage: Storage | str, run_id: str, within: float) -> RunSummary:
    """:func:`wait_for_run` for async code."""
    within = _wait_checked(within, "within")
    store, owned = _checked(storage, run_id)
    try:
        summary = await store._adrive(_summary_flow(run_id))
        with anyio.move_on_after(within):
            last = _last_id(await store.axrevrange(K.events(), count=1))
            while True:
                summary = await store._adrive(_summary_flow(run_id))
                if summary.complete:
                    break
                reply = await store.axread(
                    {K.events(): last}, count=100, block=_block(summary, within)
                )
                if reply:
                    last = reply[0][1][-1][0]
        return summary  # type: ignore[no-any-return]
    finally:
        if owned:
            await store.aclose()


def _block(summary: RunSummary, left: float) -> float:
    """How long to wait for new entries before looking at the run again: until it has
    been quiet long enough, if that is what it waits for."""
    block = min(left, 5.0)
    if summary.status in ("failed", "cancelled") and summary.ended >= summary.started:
        block = min(block, max(0.01, SETTLE - summary.quiet()))
    return block


def _last_id(entries: list[Any]) -> bytes | str:
    return entries[0][0] if entries else "0-0"


def read_graph(storage: Storage | str, run_id: str) -> RunGraph:
    """The graph of ``run_id`` as logged when it was submitted."""
    return _drive(storage, _graph_flow(run_id), run_id)  # type: ignore[no-any-return]


async def aread_graph(storage: Storage | str, run_id: str) -> RunGraph:
    return await _adrive(storage, _graph_flow(run_id), run_id)  # type: ignore[no-any-return]


def _window(since: float | None, until: float | None, limit: int | None) -> Flow:
    for label, value in (("since", since), ("until", until)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < 1e11  # seconds since 1970, before the year 5000
        ):
            raise ValueError(
                f"{label} must be a wall-clock time in seconds (time.time()) or None, got {value!r}"
            )
    return _log_flow(since, until, None if limit is None else _limit(limit))


def read_log(
    storage: Storage | str,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> list[Event]:
    """Events of every run and of none (worker started/heartbeat/stopped) in the order
    they were logged, between the wall-clock times ``since`` and ``until`` (by when
    they were written), at most ``limit``."""
    return _drive(storage, _window(since, until, limit))  # type: ignore[no-any-return]


async def aread_log(
    storage: Storage | str,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> list[Event]:
    return await _adrive(storage, _window(since, until, limit))  # type: ignore[no-any-return]


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")
    return limit


def list_runs(storage: Storage | str, limit: int = 20) -> list[RunSummary]:
    """The most recent runs, newest first."""
    return _drive(storage, _runs_flow(_limit(limit)))  # type: ignore[no-any-return]


async def alist_runs(storage: Storage | str, limit: int = 20) -> list[RunSummary]:
    return await _adrive(storage, _runs_flow(_limit(limit)))  # type: ignore[no-any-return]
