"""``dagrt report RUN_ID``: where a run's time and bytes went, from the event log alone.

Writes ``<out>/<run>/report.html`` (self-contained: plots embedded as PNG) and
``report.json`` (the same figures as data: every series a plot draws):

* a Gantt chart of task attempts per worker, one row per slot (attempts of a
  worker that overlap go on rows of their own), coloured by function, failed
  and lost attempts marked, the critical path outlined;
* the time breakdown per worker: task-seconds executing, downloading inputs,
  uploading outputs and waiting in flight (for a thread, for completion, between
  retries), and wall-clock time busy (some task in flight) or idle;
* bytes moved, per function and for the tasks that moved most, over the network
  and kept on a worker, and in total;
* the critical path: the chain that set the makespan, walked back from the last
  output to finish through the parent each task waited for last;
* the slowest tasks (by execution time), and the retried and failed ones.

The figures are computed by :func:`analyze` from the events alone (and the run's
graph, for edges and names); plotting is matplotlib's, done in one collection per
row and function, so a run of 100,000 tasks draws in seconds.
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..storage import Storage
from .events import (
    RUN_ENDED,
    Event,
    RunFinished,
    RunSubmitted,
    TaskExecutionMetrics,
    TaskFailed,
    TaskStarted,
    Transfer,
)
from .read import (
    RunSummary,
    _checked,
    read_graph,
    read_run,
    run_summary,
)
from .run_graph import RunGraph

__all__ = ["Bar", "RunAnalysis", "analyze", "write_report"]

MAX_ROWS = 32  # rows per worker in the Gantt chart; more overlap shares the last row
TOP_BYTES = 30  # tasks shown in the bytes plot
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
    bytes_per_function: dict[str, dict[str, int]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # worker -> rows in the Gantt chart
    tasks_logged: int = 0  # distinct tasks with a finished or failed attempt
    notes: list[str] = field(default_factory=list)  # what the reader should know


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
    network = local = 0
    for event in events:
        if isinstance(event, Transfer):
            task = event.consumer if event.consumer is not None else event.producer
            per_task[task] = per_task.get(task, 0) + event.bytes
            moved = per_function.setdefault(name_of(task, ""), {"network": 0, "local": 0})
            if event.local:
                local += event.bytes
                moved["local"] += event.bytes
            else:
                network += event.bytes
                moved["network"] += event.bytes

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
    return RunAnalysis(
        run_id=submitted.run_id if submitted is not None else events[0].run_id,
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
        bytes_per_function=per_function,
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


# --------------------------------------------------------------------------- plots


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("dagrt report needs matplotlib: pip install 'dagrt[report]'") from exc
    return plt


def _png(fig: Any) -> str:
    plt = _plt()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return base64.b64encode(buf.getvalue()).decode()
    finally:
        plt.close(fig)


def _colors(names: list[str]) -> dict[str, Any]:
    plt = _plt()
    palette = plt.get_cmap("tab20")
    return {name: palette(i % 20) for i, name in enumerate(sorted(set(names)))}


def _row_positions(a: RunAnalysis) -> tuple[dict[tuple[str, int], float], list[tuple[float, str]]]:
    """Each (worker, row)'s y position, and the tick of each worker (its rows' middle)."""
    y: dict[tuple[str, int], float] = {}
    ticks = []
    at = 0.0
    for w in a.workers:
        n = a.rows.get(w, 1)
        for row in range(n):
            y[(w, row)] = at + row
        ticks.append((at + (n - 1) / 2, w))
        at += n + 0.6  # a gap between workers
    return y, ticks


def plot_gantt(a: RunAnalysis) -> str:
    plt = _plt()
    from matplotlib.patches import Patch

    y, ticks = _row_positions(a)
    colors = _colors([b.name for b in a.bars])
    height = 1.2 + 0.28 * max(1, len(y)) + 0.3 * len(a.workers)
    fig, ax = plt.subplots(figsize=(11, min(height, 30)))
    floor = max(a.makespan, 1e-9) / 4000  # the narrowest bar drawn: still visible
    groups: dict[tuple[str, int, str, str], list[tuple[float, float]]] = {}
    for b in a.bars:
        groups.setdefault((b.worker, b.row, b.name, b.outcome), []).append(
            (b.start, max(b.span, floor))
        )
    for (worker, row, name, outcome), spans in groups.items():
        ax.broken_barh(
            spans,
            (y.get((worker, row), 0) - 0.4, 0.8),
            facecolors=colors[name] if outcome == "finished" else "white",
            edgecolors="none" if outcome == "finished" else _OUTCOME_EDGE[outcome],
            hatch=None if outcome == "finished" else "////",
            linewidth=0.8,
        )
    on_path = set(a.critical_path)
    path_spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for b in a.bars:
        if b.task in on_path and b.outcome == "finished":
            path_spans.setdefault((b.worker, b.row), []).append((b.start, max(b.span, floor)))
    for (worker, row), spans in path_spans.items():
        ax.broken_barh(
            spans,
            (y.get((worker, row), 0) - 0.45, 0.9),
            facecolors="none",
            edgecolors="black",
            linewidth=1.2,
        )
    ax.set_yticks([t for t, _ in ticks], [w for _, w in ticks])
    ax.invert_yaxis()
    ax.set_xlim(0, max(a.makespan, max((b.end for b in a.bars), default=0.0)) * 1.01 or 1)
    ax.set_xlabel("seconds since submission")
    ax.set_title(
        "Task attempts per worker, a row per slot (outlined: the critical path;"
        " hatched: failed, retried, lost or skipped attempts)"
    )
    handles = [Patch(color=colors[name], label=name) for name in sorted(colors)][:40]
    handles += [
        Patch(facecolor="white", edgecolor=edge, hatch="////", label=outcome)
        for outcome, edge in _OUTCOME_EDGE.items()
        if any(b.outcome == outcome for b in a.bars)
    ]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        frameon=False,
    )
    return _png(fig)


_OUTCOME_EDGE = {"failed": "red", "retried": "darkorange", "lost": "grey", "skipped": "silver"}


def plot_breakdown(a: RunAnalysis) -> str:
    plt = _plt()
    workers = a.workers or ["-"]
    fig, (tasks, wall) = plt.subplots(
        1, 2, figsize=(11, 1.4 + 0.5 * len(workers)), sharey=True, width_ratios=(3, 2)
    )
    left = [0.0] * len(workers)
    for part in ("execute", "download", "upload", "waiting"):
        values = [a.breakdown.get(w, {}).get(part, 0.0) for w in workers]
        tasks.barh(workers, values, left=left, label=part)
        left = [x + v for x, v in zip(left, values, strict=True)]
    tasks.set_xlabel("task-seconds (summed over tasks: slots overlap)")
    tasks.set_title("What tasks spent their time on")
    tasks.legend(loc="upper left", bbox_to_anchor=(0, -0.25), ncols=4, fontsize="small")
    left = [0.0] * len(workers)
    for part, color in (("busy", "tab:green"), ("idle", "lightgrey")):
        values = [a.breakdown.get(w, {}).get(part, 0.0) for w in workers]
        wall.barh(workers, values, left=left, label=part, color=color)
        left = [x + v for x, v in zip(left, values, strict=True)]
    wall.set_xlabel("seconds of the makespan")
    wall.set_title("Worker busy (a task in flight) or idle")
    wall.legend(loc="upper left", bbox_to_anchor=(0, -0.25), ncols=2, fontsize="small")
    return _png(fig)


def plot_bytes(a: RunAnalysis) -> str:
    plt = _plt()
    fig, (by_fn, top) = plt.subplots(1, 2, figsize=(11, 3.4), width_ratios=(2, 3))
    functions = sorted(a.bytes_per_function, key=lambda f: -sum(a.bytes_per_function[f].values()))
    net = [a.bytes_per_function[f]["network"] for f in functions]
    here = [a.bytes_per_function[f]["local"] for f in functions]
    by_fn.bar(functions, net, label="over the network")
    by_fn.bar(functions, here, bottom=net, label="kept on the worker")
    by_fn.set_ylabel("bytes")
    by_fn.set_title("Bytes moved per function")
    by_fn.tick_params(axis="x", labelrotation=30)
    by_fn.legend(fontsize="small")
    most = sorted(a.bytes_per_task, key=lambda t: -a.bytes_per_task[t])[:TOP_BYTES]
    top.bar(range(len(most)), [a.bytes_per_task[t] for t in most])
    top.set_xticks(range(len(most)), [str(t) for t in most], rotation=90, fontsize="x-small")
    top.set_xlabel(f"task (graph index), the {len(most)} that moved most")
    top.set_title(
        f"Total: {a.bytes_network:,} bytes over the network, {a.bytes_local:,} kept local"
    )
    if not most:
        for ax in (by_fn, top):
            ax.text(0.5, 0.5, "no bytes moved", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
    return _png(fig)


# --------------------------------------------------------------------------- output


def _series(a: RunAnalysis) -> dict[str, Any]:
    return {
        "run_id": a.run_id,
        "status": a.status,
        "n_tasks": a.n_tasks,
        "tasks_logged": a.tasks_logged,
        "makespan": a.makespan,
        "workers": a.workers,
        "rows": a.rows,
        "gantt": [asdict(b) for b in a.bars],
        "breakdown": a.breakdown,
        "bytes_per_task": {str(k): v for k, v in sorted(a.bytes_per_task.items())},
        "bytes_per_function": a.bytes_per_function,
        "bytes_network": a.bytes_network,
        "bytes_local": a.bytes_local,
        "critical_path": a.critical_path,
        "critical_seconds": a.critical_seconds,
        "slowest": [asdict(b) for b in a.slowest],
        "failures": a.failures,
        "retried": a.retried,
        "notes": a.notes,
    }


def _img(name: str, alt: str, plots: dict[str, str]) -> str:
    return f'<img id="{name}" alt="{alt}" src="data:image/png;base64,{plots[name]}">'


def _script_json(data: Any) -> str:
    """JSON that a ``<script type="application/json">`` holds as it is (no ``</script>``
    can end it early; parsing the element's text gives ``data`` back)."""
    text = json.dumps(data)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def write_report(
    storage: Storage | str, run_id: str, out: Path | str = "reports", *, wait: float = 0.0
) -> Path:
    """Write the report of ``run_id`` under ``out/<run_id>/``; the HTML file's path.

    ``wait`` seconds: first wait for the run's log to be complete (workers write their
    events on their own schedule); a report of an incomplete log says so.
    """
    store, owned = _checked(storage, run_id)
    try:
        events = read_run(store, run_id, wait=wait)
        summary = run_summary(store, run_id)
        try:
            graph: RunGraph | None = read_graph(store, run_id)
        except Exception:  # missing or unreadable: the report says what that leaves out
            graph = None
    finally:
        if owned:
            store.close()
    a = analyze(events, graph)
    a.notes[:0] = _log_notes(summary, a)
    target = Path(out) / run_id
    target.mkdir(parents=True, exist_ok=True)
    series = _series(a)
    (target / "report.json").write_text(json.dumps(series, indent=1))
    plots = {
        "gantt": plot_gantt(a),
        "breakdown": plot_breakdown(a),
        "bytes": plot_bytes(a),
    }
    report = target / "report.html"
    report.write_text(_page(a, series, plots))
    return report


def _log_notes(summary: RunSummary, a: RunAnalysis) -> list[str]:
    notes = []
    if summary.dropped:
        notes.append(
            f"{summary.dropped} events of this run were dropped: a writer's buffer was full"
            " while the log's server was away (events-dropped in the log says whose)."
            " Tasks and transfers are missing from what follows."
        )
    if summary.complete or summary.dropped:
        return notes
    if summary.status == "running":
        return [
            f"The run is still going (no run-finished event yet): {a.tasks_logged} of"
            f" {a.n_tasks} tasks logged so far."
        ]
    if summary.status == "unknown":
        return [
            "The log has no run-submitted or run-finished event of this run (its client"
            f" may have died while submitting it): {a.tasks_logged} tasks logged."
        ]
    return [
        f"The log of this run is not complete: {a.tasks_logged} of {a.n_tasks} tasks and"
        f" {summary.ended} of {summary.started} started attempts have logged their end."
        " Workers may still be writing their events (report again in a moment), or one"
        " died holding them."
    ]


def _page(a: RunAnalysis, series: dict[str, Any], plots: dict[str, str]) -> str:
    e = html.escape
    by_task: dict[int, Bar] = {}
    for b in a.bars:
        if b.outcome == "finished":
            by_task[b.task] = b
    path_rows = "".join(
        f"<tr><td>{i}</td><td>{e(by_task[t].key)}</td><td>{e(by_task[t].name)}</td>"
        f"<td>{e(by_task[t].worker)}</td><td>{by_task[t].start:.4f}</td>"
        f"<td>{by_task[t].span:.4f}</td><td>{by_task[t].execute:.4f}</td></tr>"
        for i, t in enumerate(a.critical_path)
        if t in by_task
    )
    slow_rows = "".join(
        f"<tr><td>{e(b.key)}</td><td>{e(b.name)}</td><td>{e(b.worker)}</td>"
        f"<td>{b.execute:.4f}</td><td>{b.span:.4f}</td><td>{b.download:.4f}</td>"
        f"<td>{b.upload:.4f}</td><td>{b.waiting:.4f}</td><td>{b.attempt}</td></tr>"
        for b in a.slowest
    )
    retry_rows = "".join(
        f"<tr><td>{e(r['task'])}</td><td>{e(r['name'])}</td><td>"
        + ", ".join(
            f"{x['attempt']}: {e(x['outcome'])} on {e(x['worker'])} ({x['seconds']:.3f} s)"
            for x in r["attempts"]
        )
        + "</td></tr>"
        for r in a.retried
    )
    fail_rows = "".join(
        f"<h3>{e(f['task'])} ({e(f['exc_type'])}, attempt {f['attempt']} on {e(f['worker'])})"
        f"</h3><p>{e(f['message'])}</p><pre>{e(f['traceback'])}</pre>"
        for f in a.failures
    )
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in a.notes)
    path_seconds = f"{len(a.critical_path)} tasks, {a.critical_seconds:.3f} s"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dagrt run {e(a.run_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}
.note{{background:#fff4d6;border-left:4px solid #e0a800;padding:0.5em 1em}}</style></head>
<body>
<h1>Run {e(a.run_id)}</h1>
{notes}
<table>
<tr><th>status</th><td>{e(a.status)}</td></tr>
<tr><th>tasks</th><td>{a.n_tasks} ({a.tasks_logged} logged)</td></tr>
<tr><th>makespan</th><td>{a.makespan:.3f} s</td></tr>
<tr><th>workers</th><td>{e(", ".join(a.workers))}</td></tr>
<tr><th>bytes moved</th><td>{a.bytes_network:,} over the network, {a.bytes_local:,} local</td></tr>
<tr><th>critical path</th><td>{path_seconds}</td></tr>
</table>
<h2>Tasks per worker</h2>{_img("gantt", "Gantt chart", plots)}
<h2>Time breakdown</h2>{_img("breakdown", "time breakdown", plots)}
<h2>Bytes moved</h2>{_img("bytes", "bytes moved", plots)}
<h2>Critical path</h2>
<p>The chain that set the makespan: from the output that finished last back through the
parent each task waited for last.</p>
<table><tr><th>#</th><th>task</th><th>function</th><th>worker</th><th>start</th>
<th>seconds</th><th>execute</th></tr>{path_rows}</table>
<h2>Slowest tasks (by execution time)</h2><table><tr><th>task</th><th>function</th>
<th>worker</th><th>execute</th><th>in flight</th><th>download</th><th>upload</th>
<th>waiting</th><th>attempt</th></tr>{slow_rows}</table>
{
        "<h2>Retried tasks</h2><table><tr><th>task</th><th>function</th><th>attempts</th></tr>"
        + retry_rows
        + "</table>"
        if a.retried
        else ""
    }
{"<h2>Failures</h2>" + fail_rows if a.failures else ""}
<script type="application/json" id="series">{_script_json(series)}</script>
</body></html>
"""
