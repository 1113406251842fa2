"""``dagrt report RUN_ID``: where a run's time and bytes went, from the event log alone.

Writes ``<out>/<run>/report.html`` (self-contained: plots embedded as PNG) and
``report.json`` (the same figures as data: every series a plot draws):

* a Gantt chart of tasks per worker lane, coloured by function, the critical
  path outlined;
* the time breakdown: execute / download / upload / waiting, per worker;
* bytes moved per task and in total, over the network and kept local;
* the critical path (the longest chain of task durations through the graph);
* the slowest tasks.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..storage import Storage
from .events import Event, RunFinished, RunSubmitted, TaskExecutionMetrics, TaskFailed, Transfer
from .read import RunGraph, read_graph, read_run

__all__ = ["RunAnalysis", "analyze", "write_report"]


@dataclass
class Bar:
    task: int
    key: str
    name: str
    worker: str
    start: float  # seconds since the run was submitted
    end: float
    execute: float
    download: float
    upload: float
    failed: bool = False


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
    breakdown: dict[str, dict[str, float]]  # worker -> execute/download/upload/waiting
    bytes_per_task: dict[int, int]  # task -> bytes it downloaded and uploaded
    bytes_network: int
    bytes_local: int
    critical_path: list[int]
    critical_seconds: float
    slowest: list[Bar]
    failures: list[dict[str, Any]] = field(default_factory=list)


def analyze(events: list[Event], graph: RunGraph | None = None) -> RunAnalysis:
    """Compute a run's figures from its events (the graph adds the critical path)."""
    submitted = next((e for e in events if isinstance(e, RunSubmitted)), None)
    finished = next((e for e in events if isinstance(e, RunFinished)), None)
    if submitted is None:
        raise ValueError("the events have no run-submitted event")
    t0 = submitted.ts
    finishes = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    # a task may have finished twice (a worker died after completing): keep the first
    by_task: dict[int, TaskExecutionMetrics] = {}
    for e in sorted(finishes, key=lambda e: e.end):
        by_task.setdefault(e.task, e)
    bars = [
        Bar(
            e.task,
            e.key,
            e.name,
            e.worker_id,
            e.start - t0,
            e.end - t0,
            e.execution_time,
            e.download_time,
            e.upload_time,
        )
        for e in sorted(by_task.values(), key=lambda e: (e.worker_id, e.start))
    ]
    failures: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, TaskFailed) and event.final:
            f = event
            bars.append(
                Bar(f.task, f.key, f.name, f.worker_id, f.ts - t0, f.ts - t0, 0, 0, 0, failed=True)
            )
            failures.append(
                {
                    "task": f.key,
                    "name": f.name,
                    "worker": f.worker_id,
                    "exc_type": f.exc_type,
                    "message": f.message,
                    "traceback": f.traceback,
                }
            )
    end = max([b.end for b in bars] + [finished.ts - t0 if finished else 0.0])
    makespan = finished.makespan if finished else end
    workers = sorted({b.worker for b in bars if b.worker})
    breakdown = {}
    for w in workers:
        mine = [b for b in bars if b.worker == w]
        execute = sum(b.execute for b in mine)
        download = sum(b.download for b in mine)
        upload = sum(b.upload for b in mine)
        breakdown[w] = {
            "execute": execute,
            "download": download,
            "upload": upload,
            "waiting": max(0.0, makespan - execute - download - upload),
        }
    per_task: dict[int, int] = {}
    network = local = 0
    for event in events:
        if isinstance(event, Transfer):
            task = event.consumer if event.consumer is not None else event.producer
            per_task[task] = per_task.get(task, 0) + event.bytes
            if event.local:
                local += event.bytes
            else:
                network += event.bytes
    path, seconds = critical_path(by_task, graph) if graph is not None else ([], 0.0)
    slowest = sorted(
        (b for b in bars if not b.failed), key=lambda b: b.end - b.start, reverse=True
    )[:10]
    return RunAnalysis(
        run_id=submitted.run_id,
        status=finished.status if finished else "running",
        n_tasks=submitted.n_tasks,
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
    )


def critical_path(
    finished: dict[int, TaskExecutionMetrics], graph: RunGraph
) -> tuple[list[int], float]:
    """The chain of tasks with the largest total duration (graph order is topological)."""
    best = [0.0] * len(graph)
    via: list[int | None] = [None] * len(graph)
    for i, parents in enumerate(graph.parents):
        e = finished.get(i)
        own = (e.end - e.start) if e is not None else 0.0
        top = max(parents, key=lambda p: best[p], default=None)
        best[i] = own + (best[top] if top is not None else 0.0)
        via[i] = top
    if not best:
        return [], 0.0
    last = max(range(len(best)), key=lambda i: best[i])
    path = []
    node: int | None = last
    while node is not None:
        path.append(node)
        node = via[node]
    return path[::-1], best[last]


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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _colors(names: list[str]) -> dict[str, Any]:
    plt = _plt()
    palette = plt.get_cmap("tab20")
    return {name: palette(i % 20) for i, name in enumerate(sorted(set(names)))}


def plot_gantt(a: RunAnalysis) -> str:
    plt = _plt()
    lanes = {w: i for i, w in enumerate(a.workers)}
    colors = _colors([b.name for b in a.bars])
    on_path = set(a.critical_path)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.5 * max(1, len(lanes))))
    from matplotlib.patches import Patch

    for name in sorted(colors):
        mine = [b for b in a.bars if b.name == name and not b.failed]
        for b in mine:
            ax.broken_barh(
                [(b.start, max(b.end - b.start, 1e-6))],
                (lanes.get(b.worker, 0) - 0.4, 0.8),
                color=colors[name],
                edgecolor="black" if b.task in on_path else "none",
                linewidth=0.8,
            )
    for b in (b for b in a.bars if b.failed):
        ax.plot([b.start], [lanes.get(b.worker, 0)], marker="x", color="red", markersize=10)
    ax.set_yticks(range(len(lanes)), list(lanes))
    ax.set_xlabel("seconds since submission")
    ax.set_title("Tasks per worker (outlined: the critical path; x: failures)")
    handles = [Patch(color=colors[name], label=name) for name in sorted(colors)]
    ax.legend(handles=handles, loc="upper right", fontsize="small", ncols=min(4, len(colors)) or 1)
    return _png(fig)


def plot_breakdown(a: RunAnalysis) -> str:
    plt = _plt()
    parts = ("execute", "download", "upload", "waiting")
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * max(1, len(a.workers))))
    left = [0.0] * len(a.workers)
    for part in parts:
        values = [a.breakdown[w][part] for w in a.workers]
        ax.barh(a.workers, values, left=left, label=part)
        left = [x + y for x, y in zip(left, values, strict=True)]
    ax.set_xlabel("seconds")
    ax.set_title("Time breakdown per worker")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def plot_bytes(a: RunAnalysis) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3))
    tasks = sorted(a.bytes_per_task)
    ax.bar(range(len(tasks)), [a.bytes_per_task[t] for t in tasks], width=1.0)
    ax.set_xlabel("task (index)")
    ax.set_ylabel("bytes moved")
    ax.set_title(
        f"Bytes per task: {a.bytes_network:,} over the network, {a.bytes_local:,} kept local"
    )
    return _png(fig)


# --------------------------------------------------------------------------- output


def _series(a: RunAnalysis) -> dict[str, Any]:
    return {
        "run_id": a.run_id,
        "status": a.status,
        "n_tasks": a.n_tasks,
        "makespan": a.makespan,
        "workers": a.workers,
        "gantt": [asdict(b) for b in a.bars],
        "breakdown": a.breakdown,
        "bytes_per_task": {str(k): v for k, v in sorted(a.bytes_per_task.items())},
        "bytes_network": a.bytes_network,
        "bytes_local": a.bytes_local,
        "critical_path": a.critical_path,
        "critical_seconds": a.critical_seconds,
        "slowest": [asdict(b) for b in a.slowest],
        "failures": a.failures,
    }


def _img(name: str, alt: str, plots: dict[str, str]) -> str:
    return f'<img id="{name}" alt="{alt}" src="data:image/png;base64,{plots[name]}">'


def write_report(storage: Storage, run_id: str, out: Path | str = "reports") -> Path:
    """Write the report of ``run_id`` under ``out/<run_id>/``; the HTML file's path."""
    events = read_run(storage, run_id)
    try:
        graph: RunGraph | None = read_graph(storage, run_id)
    except Exception:
        graph = None
    a = analyze(events, graph)
    target = Path(out) / run_id
    target.mkdir(parents=True, exist_ok=True)
    series = _series(a)
    (target / "report.json").write_text(json.dumps(series, indent=1))
    plots = {
        "gantt": plot_gantt(a),
        "breakdown": plot_breakdown(a),
        "bytes": plot_bytes(a),
    }
    names = {b.task: b for b in a.bars}
    path_rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(names[t].key)}</td><td>{html.escape(names[t].name)}"
        f"</td><td>{names[t].end - names[t].start:.4f}</td></tr>"
        for i, t in enumerate(a.critical_path)
        if t in names
    )
    slow_rows = "".join(
        f"<tr><td>{html.escape(b.key)}</td><td>{html.escape(b.name)}</td>"
        f"<td>{html.escape(b.worker)}</td><td>{b.end - b.start:.4f}</td>"
        f"<td>{b.execute:.4f}</td><td>{b.download:.4f}</td><td>{b.upload:.4f}</td></tr>"
        for b in a.slowest
    )
    fail_rows = "".join(
        f"<h3>{html.escape(f['task'])} ({html.escape(f['exc_type'])})</h3>"
        f"<p>{html.escape(f['message'])}</p><pre>{html.escape(f['traceback'])}</pre>"
        for f in a.failures
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dagrt run {html.escape(run_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head>
<body>
<h1>Run {html.escape(run_id)}</h1>
<table>
<tr><th>status</th><td>{html.escape(a.status)}</td></tr>
<tr><th>tasks</th><td>{a.n_tasks}</td></tr>
<tr><th>makespan</th><td>{a.makespan:.3f} s</td></tr>
<tr><th>workers</th><td>{html.escape(", ".join(a.workers))}</td></tr>
<tr><th>bytes moved</th><td>{a.bytes_network:,} over the network, {a.bytes_local:,} local</td></tr>
<tr><th>critical path</th><td>{len(a.critical_path)} tasks, {a.critical_seconds:.3f} s</td></tr>
</table>
<h2>Tasks per worker</h2>{_img("gantt", "Gantt chart", plots)}
<h2>Time breakdown</h2>{_img("breakdown", "time breakdown", plots)}
<h2>Bytes moved</h2>{_img("bytes", "bytes per task", plots)}
<h2>Critical path</h2>
<table><tr><th>#</th><th>task</th><th>function</th><th>seconds</th></tr>{path_rows}</table>
<h2>Slowest tasks</h2><table><tr><th>task</th><th>function</th><th>worker</th><th>seconds</th>
<th>execute</th><th>download</th><th>upload</th></tr>{slow_rows}</table>
{"<h2>Failures</h2>" + fail_rows if a.failures else ""}
<script type="application/json" id="series">{html.escape(json.dumps(series))}</script>
</body></html>
"""
    report = target / "report.html"
    report.write_text(page)
    return report
