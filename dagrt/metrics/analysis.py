"""What a run's time and bytes went to, computed from its events alone (and its graph).

:func:`analyze` turns a run's events (as :func:`~dagrt.metrics.read_run` gives them)
into a :class:`RunAnalysis`: a :class:`Bar` per task attempt (finished, retried,
failed, lost or skipped), placed on rows of its worker that never overlap; the time
breakdown per worker (task-seconds executing, downloading, uploading and waiting;
wall-clock busy and idle); bytes moved per task and function, over the network and
kept local; the critical path (:func:`critical_path`); the slowest, retried and
failed tasks. No plotting here: :mod:`.report` draws and writes these figures.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import TIMEOUT_TYPE
from ..keys import sub_run_id
from .events import (
    RUN_ENDED,
    Event,
    HoldEnded,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    TaskStarted,
    Transfer,
)
from .run_graph import RunGraph

__all__ = ["LOST", "MAX_ROWS", "Bar", "RunAnalysis", "analyze", "critical_path"]

MAX_ROWS = 32  # rows per worker in the Gantt chart; more overlap shares the last row
LOST = "dagrt.WorkerLostError"


@dataclass
class Bar:
    """One attempt of a task: where and when it ran, and how it ended."""

    task: int
    key: str
    name: str
    worker: str
    start: float  # seconds since the run was submitted
    end: float
    execute: float
    download: float
    upload: float
    failed: bool = False  # the run's failure: this attempt failed and no retry followed
    attempt: int = 1
    # finished, retried (failed, another followed), failed, lost (its worker went silent:
    # a mark at its start, its end unknown), skipped (not run: its run had ended)
    outcome: str = "finished"
    row: int = 0  # the worker's row in the Gantt chart

    @property
    def span(self) -> float:
        return self.end - self.start

    @property
    def waiting(self) -> float:
        """In flight but neither executing, downloading nor uploading."""
        return max(0.0, self.span - self.execute - self.download - self.upload)


@dataclass
class RunAnalysis:
    """The figures of one run, computed from its events (and its graph)."""

    run_id: str
    status: str
    n_tasks: int
    makespan: float
    submitted: float
    workers: list[str]
    bars: list[Bar]
    breakdown: dict[str, dict[str, float]]  # worker -> execute/download/upload/waiting/...
    bytes_per_task: dict[int, int]  # task -> bytes it downloaded and uploaded
    bytes_network: int
    bytes_local: int
    critical_path: list[int]
    critical_seconds: float
    slowest: list[Bar]
    failures: list[dict[str, Any]] = field(default_factory=list)
    retried: list[dict[str, Any]] = field(default_factory=list)
    # attempts that ran past their timeout ("final": the last attempt of their task)
    timed_out: dict[str, int] = field(default_factory=dict)
    bytes_per_function: dict[str, dict[str, int]] = field(default_factory=dict)
    # bytes by how they came: upload, download, local, map, direct, recompute, store
    bytes_by_path: dict[str, int] = field(default_factory=dict)
    # bytes that did not move because of where tasks ran, from what happened: "read"
    # (a child read its input in the memory of the worker that made it, kept there for
    # it or still in its cache: a read avoided), "stored" (an output never stored: its
    # children all read it there)
    bytes_avoided: dict[str, int] = field(default_factory=dict)
    # the "read" bytes above by why their reader ran there (a placement: "become",
    # "cluster", "delayed", "chain"; "dispatched": it found the input in the cache of
    # the worker that read the task)
    bytes_avoided_by: dict[str, int] = field(default_factory=dict)
    # finished tasks by why they ran on their worker (dagrt.metrics.events.PLACEMENTS;
    # "" for logs that do not say)
    placements: dict[str, int] = field(default_factory=dict)
    # waits for a child of a large output (delayed I/O) by how they ended: hit, miss,
    # timeout
    holds: dict[str, int] = field(default_factory=dict)
    # tasks not run: their output was in the cache / the run needed nothing of them
    from_cache: int = 0
    skipped: int = 0
    # the task whose returned graph this run is (its run, its key), if it is one
    parent: tuple[str, str] | None = None
    priority: int = 0  # the run's (dagrt.resources)
    lanes: dict[str, int] = field(default_factory=dict)  # its tasks per lane
    # the runs of the graphs this run's tasks returned (logged by workers: "expanded")
    graphs: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # worker -> rows in the Gantt chart
    tasks_logged: int = 0  # distinct tasks with a finished or failed attempt
    notes: list[str] = field(default_factory=list)  # what the reader should know


#: transfers that did not cross a socket: a worker's memory, its host's store, made again
ON_THE_HOST = frozenset({"local", "map", "recompute", "store"})


def _avoided(
    transfers: list[Transfer], placed: dict[int, str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes locality kept from moving, counted from the transfers that happened: each
    child that read its input from the memory of the worker that made it avoided one
    read ("read"); an output that was never uploaded nor put in a store, yet read
    there, avoided its one write ("stored"). And the reads by why the child ran there
    (``placed``: task -> placement)."""
    written = {t.producer for t in transfers if t.direction in ("upload", "store")}
    out = {"read": 0, "stored": 0}
    by: dict[str, int] = {}
    seen: set[int] = set()
    for t in transfers:
        if t.direction != "local" or t.consumer is None:
            continue
        out["read"] += t.bytes
        why = placed.get(t.consumer) or "not said"
        by[why] = by.get(why, 0) + t.bytes
        if t.producer not in written and t.producer not in seen:
            seen.add(t.producer)
            out["stored"] += t.bytes
    return {k: v for k, v in out.items() if v}, by


def analyze(events: list[Event], graph: RunGraph | None = None) -> RunAnalysis:
    """Compute a run's figures from its events (the graph adds names and the
    critical path)."""
    if not events:
        raise ValueError("no events to analyze")
    submitted = next((e for e in events if isinstance(e, RunSubmitted)), None)
    finished = next((e for e in events if isinstance(e, RunFinished)), None)
    # without its submission (its client died while submitting), the run starts with
    # its first event
    t0 = (
        submitted.ts
        if submitted is not None
        else min(e.start if isinstance(e, TaskExecutionMetrics) else e.ts for e in events)
    )
    names = graph.names if graph is not None else None
    keys = graph.keys if graph is not None else None

    def key_of(task: int, key: str) -> str:
        return key or (keys[task] if keys is not None and task < len(keys) else f"#{task}")

    def name_of(task: int, name: str) -> str:
        return name or (names[task] if names is not None and task < len(names) else "?")

    bars = _attempts(events, t0, key_of, name_of)
    end = max([b.end for b in bars] + [finished.ts - t0 if finished else 0.0])
    makespan = finished.makespan if finished else end
    workers = sorted({b.worker for b in bars if b.worker})
    rows = _assign_rows(bars)
    breakdown = {w: _breakdown([b for b in bars if b.worker == w], makespan) for w in workers}

    per_task: dict[int, int] = {}
    per_function: dict[str, dict[str, int]] = {}
    by_path: dict[str, int] = {}
    transfers: list[Transfer] = []
    placed: dict[int, tuple[float, str]] = {}  # task -> (end, placement) of its last finish
    holds: dict[str, int] = {}
    network = local = 0
    for event in events:
        if isinstance(event, TaskExecutionMetrics):
            if event.task not in placed or event.end >= placed[event.task][0]:
                placed[event.task] = (event.end, event.placed)
        elif isinstance(event, HoldEnded):
            holds[event.outcome] = holds.get(event.outcome, 0) + 1
        elif isinstance(event, Transfer):
            transfers.append(event)
            task = event.consumer if event.consumer is not None else event.producer
            per_task[task] = per_task.get(task, 0) + event.bytes
            moved = per_function.setdefault(name_of(task, ""), {"network": 0, "local": 0})
            by_path[event.direction] = by_path.get(event.direction, 0) + event.bytes
            if event.local or event.direction in ON_THE_HOST:
                local += event.bytes
                moved["local"] += event.bytes
            else:
                network += event.bytes
                moved["network"] += event.bytes

    why = {task: p for task, (_, p) in placed.items()}
    avoided, avoided_by = _avoided(transfers, why)
    placements: dict[str, int] = {}
    for p in why.values():
        placements[p] = placements.get(p, 0) + 1

    done = [b for b in bars if b.outcome == "finished"]
    last_done: dict[int, Bar] = {}
    for b in done:  # a task finished twice (made again after its worker died): the last
        if b.task not in last_done or b.end > last_done[b.task].end:
            last_done[b.task] = b
    path, seconds = critical_path(last_done, graph) if graph is not None else ([], 0.0)
    slowest = sorted(done, key=lambda b: (b.execute, b.span), reverse=True)[:10]

    failures = [
        {
            "task": key_of(e.task, e.key),
            "name": name_of(e.task, e.name),
            "worker": e.worker_id,
            "attempt": e.attempt,
            "exc_type": e.exc_type,
            "message": e.message,
            "traceback": e.traceback,
        }
        for e in events
        if isinstance(e, TaskFailed) and e.final and e.exc_type != RUN_ENDED
    ]
    timed_out: dict[str, int] = {}
    for e in events:
        if isinstance(e, TaskFailed) and e.exc_type == TIMEOUT_TYPE:
            kind = "final" if e.final else "retried"
            timed_out[kind] = timed_out.get(kind, 0) + 1
    attempts: dict[int, list[Bar]] = {}
    for b in bars:
        attempts.setdefault(b.task, []).append(b)
    retried = [
        {
            "task": group[0].key,
            "name": group[0].name,
            "attempts": [
                {"attempt": b.attempt, "worker": b.worker, "outcome": b.outcome, "seconds": b.span}
                for b in sorted(group, key=lambda b: b.attempt)
            ],
        }
        for group in attempts.values()
        if len(group) > 1
    ]
    logged = len({b.task for b in bars if b.outcome in ("finished", "failed")})
    notes = []
    if graph is None:
        notes.append(
            "The run's graph is not in the log: tasks logged in batches show no key or"
            " function name, and there is no critical path."
        )
    run_id = submitted.run_id if submitted is not None else events[0].run_id
    return RunAnalysis(
        run_id=run_id,
        status=finished.status if finished else "running" if submitted else "unknown",
        n_tasks=submitted.n_tasks
        if submitted is not None
        else len(graph)
        if graph is not None
        else len({b.task for b in bars}),
        makespan=makespan,
        submitted=t0,
        workers=workers,
        bars=bars,
        breakdown=breakdown,
        bytes_per_task=per_task,
        bytes_network=network,
        bytes_local=local,
        critical_path=path,
        critical_seconds=seconds,
        slowest=slowest,
        failures=failures,
        retried=retried,
        timed_out=timed_out,
        bytes_per_function=per_function,
        bytes_by_path=by_path,
        bytes_avoided=avoided,
        bytes_avoided_by=avoided_by,
        placements=placements,
        holds=holds,
        from_cache=finished.from_cache if finished is not None else 0,
        skipped=finished.skipped if finished is not None else 0,
        parent=(submitted.parent_run, submitted.parent_task)
        if submitted is not None and submitted.parent_run
        else None,
        graphs=[sub_run_id(run_id, t) for t, p in sorted(why.items()) if p == "expanded"],
        priority=submitted.priority if submitted is not None else 0,
        lanes=dict(submitted.lanes) if submitted is not None else {},
        rows=rows,
        tasks_logged=logged,
        notes=notes,
    )


def _attempts(events: list[Event], t0: float, key_of: Any, name_of: Any) -> list[Bar]:
    """A bar per attempt: finished ones from their task-finished event; failed, retried
    and lost ones from their task-started to their task-failed event."""
    starts: dict[tuple[int, int], TaskStarted] = {}
    for e in events:
        if isinstance(e, TaskStarted):
            starts.setdefault((e.task, e.attempt), e)
    bars = []
    for e in events:
        if isinstance(e, TaskExecutionMetrics):
            bars.append(
                Bar(
                    e.task,
                    key_of(e.task, e.key),
                    name_of(e.task, e.name),
                    e.worker_id,
                    e.start - t0,
                    e.end - t0,
                    e.execution_time,
                    e.download_time,
                    e.upload_time,
                    attempt=e.attempt,
                )
            )
        elif isinstance(e, TaskFailed):
            began = starts.get((e.task, e.attempt))
            lost = e.exc_type == LOST and not e.final
            if lost:
                outcome = "lost"
            elif e.exc_type == RUN_ENDED:
                outcome = "skipped"  # it did not run: its run had ended
            else:
                outcome = "failed" if e.final else "retried"
            # a lost attempt ran on the worker that went silent (its start says which);
            # when it ended is unknown (the note is the takeover, much later): a mark
            worker = began.worker_id if lost and began is not None else e.worker_id
            start = began.ts if began is not None else e.ts
            end = start if lost else e.ts
            bars.append(
                Bar(
                    e.task,
                    key_of(e.task, e.key),
                    name_of(e.task, e.name),
                    worker,
                    start - t0,
                    end - t0,
                    0.0,
                    0.0,
                    0.0,
                    failed=outcome == "failed",
                    attempt=e.attempt,
                    outcome=outcome,
                )
            )
    bars.sort(key=lambda b: (b.worker, b.start, b.task))
    return bars


def _assign_rows(bars: list[Bar]) -> dict[str, int]:
    """Give each bar a row of its worker so that bars of one row never overlap (the
    fewest rows that do it, up to ``MAX_ROWS``); the rows each worker needs."""
    rows: dict[str, int] = {}
    by_worker: dict[str, list[Bar]] = {}
    for b in bars:
        by_worker.setdefault(b.worker, []).append(b)
    for worker, mine in by_worker.items():
        free: list[tuple[float, int]] = []  # (when the row frees, row)
        used = 0
        for b in sorted(mine, key=lambda b: (b.start, b.end)):
            if free and free[0][0] <= b.start:
                _, row = heapq.heappop(free)
            elif used < MAX_ROWS:
                row, used = used, used + 1
            else:  # too much overlap to draw apart: the row that frees first takes it
                _, row = heapq.heappop(free)
            b.row = row
            heapq.heappush(free, (b.end, row))
        rows[worker] = max(1, used)
    return rows


def _breakdown(bars: list[Bar], makespan: float) -> dict[str, float]:
    """Task-seconds by activity, and wall-clock seconds with some task in flight."""
    busy = 0.0
    reach = float("-inf")
    for b in sorted(bars, key=lambda b: b.start):
        if b.end > reach:
            busy += b.end - max(b.start, reach)
            reach = b.end
    return {
        "execute": sum(b.execute for b in bars),
        "download": sum(b.download for b in bars),
        "upload": sum(b.upload for b in bars),
        "waiting": sum(b.waiting for b in bars),
        "busy": busy,
        "idle": max(0.0, makespan - busy),
    }


def critical_path(finished: dict[int, Bar], graph: RunGraph) -> tuple[list[int], float]:
    """The chain that set the makespan: from the output that finished last, back through
    the parent each task waited for (the one that finished last), to a root. Its
    seconds: from the first task's start to the last one's end (waits included)."""
    outputs = [i for i in graph.outputs if i in finished] or list(finished)
    if not outputs:
        return [], 0.0
    node: int | None = max(outputs, key=lambda i: finished[i].end)
    path = []
    seen = set()
    while node is not None and node not in seen:
        seen.add(node)
        path.append(node)
        parents = [p for p in graph.parents[node] if p in finished]
        node = max(parents, key=lambda p: finished[p].end, default=None)
    path.reverse()
    return path, finished[path[-1]].end - finished[path[0]].start
