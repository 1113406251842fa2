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

The figures are computed by :func:`.analysis.analyze` from the events alone (and
the run's graph, for edges and names); this module draws and writes them. Plotting
is matplotlib's (imported when a report is drawn), done in one collection per row
and function, so a run of 100,000 tasks draws in seconds.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import keys as K
from ..storage import Storage
from .analysis import Bar, RunAnalysis, analyze
from .read import RunSummary, _checked, read_graph, read_run, run_summary
from .run_graph import RunGraph

__all__ = ["write_report"]

TOP_BYTES = 30  # tasks shown in the bytes plot


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


PATHS = {
    "upload": "uploaded to the server",
    "download": "downloaded from the server",
    "local": "in the worker's memory",
    "map": "mapped from the host's store",
    "direct": "fetched from another host",
    "recompute": "computed again",
    "store": "written to the host's store",
}


def _paths(by_path: dict[str, int]) -> str:
    """Bytes by how they came, in words (the paths that moved any)."""
    if not by_path:
        return "none"
    return "; ".join(f"{PATHS.get(k, k)} {v:,}" for k, v in by_path.items() if v) or "none"


def _avoided(avoided: dict[str, int], by: dict[str, int]) -> str:
    """What locality saved, in words (from the transfers that did not happen)."""
    parts = []
    if avoided.get("read"):
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
        parts.append(
            f"{avoided['read']:,} not read again (children ran where it was"
            + (f": {reasons})" if reasons else ")")
        )
    if avoided.get("stored"):
        parts.append(f"{avoided['stored']:,} never stored (read only where it was made)")
    return "; ".join(parts) or "none"


def _counts(counts: dict[str, int]) -> str:
    """Counts by name, the largest first (``""`` reads "not said")."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k or 'not said'} {v:,}" for k, v in items) or "none"


def _lanes(lanes: dict[str, int]) -> str:
    """Tasks per lane (resources, priority: :mod:`dagrt.resources`)."""
    if not lanes:
        return "none (every task on the tasks stream)"
    return ", ".join(f"{v:,} in {k}" for k, v in sorted(lanes.items(), key=lambda kv: -kv[1]))


def plot_bytes(a: RunAnalysis) -> str:
    plt = _plt()
    fig, (by_fn, top) = plt.subplots(1, 2, figsize=(11, 3.4), width_ratios=(2, 3))
    functions = sorted(a.bytes_per_function, key=lambda f: -sum(a.bytes_per_function[f].values()))
    net = [a.bytes_per_function[f]["network"] for f in functions]
    here = [a.bytes_per_function[f]["local"] for f in functions]
    by_fn.bar(functions, net, label="over the network")
    by_fn.bar(functions, here, bottom=net, label="on the host (memory, store)")
    by_fn.set_ylabel("bytes")
    by_fn.set_title("Bytes moved per function")
    by_fn.tick_params(axis="x", labelrotation=30)
    by_fn.legend(fontsize="small")
    most = sorted(a.bytes_per_task, key=lambda t: -a.bytes_per_task[t])[:TOP_BYTES]
    top.bar(range(len(most)), [a.bytes_per_task[t] for t in most])
    top.set_xticks(range(len(most)), [str(t) for t in most], rotation=90, fontsize="x-small")
    top.set_xlabel(f"task (graph index), the {len(most)} that moved most")
    top.set_title(
        f"Total: {a.bytes_network:,} bytes over the network, {a.bytes_local:,} on the host"
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
        "bytes_by_path": a.bytes_by_path,
        "bytes_avoided": a.bytes_avoided,
        "bytes_avoided_by": a.bytes_avoided_by,
        "placements": a.placements,
        "holds": a.holds,
        "from_cache": a.from_cache,
        "skipped": a.skipped,
        "parent": list(a.parent) if a.parent else None,
        "graphs": a.graphs,
        "priority": a.priority,
        "lanes": a.lanes,
        "critical_path": a.critical_path,
        "critical_seconds": a.critical_seconds,
        "slowest": [asdict(b) for b in a.slowest],
        "failures": a.failures,
        "retried": a.retried,
        "timed_out": a.timed_out,
        "notes": a.notes,
    }


def _img(name: str, alt: str, plots: dict[str, str]) -> str:
    return f'<img id="{name}" alt="{alt}" src="data:image/png;base64,{plots[name]}">'


def _script_json(data: Any) -> str:
    """JSON that a ``<script type="application/json">`` holds as it is (no ``</script>``
    can end it early; parsing the element's text gives ``data`` back)."""
    text = json.dumps(data)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _run_folder(out: Path, run_id: str) -> Path:
    """``out/<run_id>``, checked to be a folder inside ``out`` (the run id is checked
    first: this holds also if ``out/<run_id>`` is a link to elsewhere)."""
    target = out / K.check_run_id(run_id)
    if target.resolve().parent != out.resolve():
        raise ValueError(
            f"the report of run {run_id!r} would be written to {target.resolve()}, outside"
            f" {out.resolve()}"
        )
    return target


def write_report(
    storage: Storage | str, run_id: str, out: Path | str = "reports", *, wait: float = 0.0
) -> Path:
    """Write the report of ``run_id`` under ``out/<run_id>/``; the HTML file's path.

    ``wait`` seconds: first wait for the run's log to be complete (workers write their
    events on their own schedule); a report of an incomplete log says so.
    """
    target = _run_folder(Path(out), run_id)  # (before anything is read)
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
    try:
        a = analyze(events, graph)
    except (TypeError, ValueError) as exc:  # (the log is read as written)
        raise ValueError(
            f"the event log of run {run_id} holds values dagrt does not write (text where"
            f" a number belongs: written by a third party?): {exc}"
        ) from exc
    a.notes[:0] = _log_notes(summary, a)
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


def _number(value: object, spec: str = ".4f") -> str:
    """A number of the log as ``spec`` formats it; anything else (the log is read as
    written: a value a third party wrote) as escaped text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, spec)
    return html.escape(str(value))


def _page(a: RunAnalysis, series: dict[str, Any], plots: dict[str, str]) -> str:
    """The report's HTML: every value from the log escaped (``e``, or ``n`` for numbers)."""
    e, n = html.escape, _number
    by_task: dict[int, Bar] = {}
    for b in a.bars:
        if b.outcome == "finished":
            by_task[b.task] = b
    path_rows = "".join(
        f"<tr><td>{i}</td><td>{e(by_task[t].key)}</td><td>{e(by_task[t].name)}</td>"
        f"<td>{e(by_task[t].worker)}</td><td>{n(by_task[t].start)}</td>"
        f"<td>{n(by_task[t].span)}</td><td>{n(by_task[t].execute)}</td></tr>"
        for i, t in enumerate(a.critical_path)
        if t in by_task
    )
    slow_rows = "".join(
        f"<tr><td>{e(b.key)}</td><td>{e(b.name)}</td><td>{e(b.worker)}</td>"
        f"<td>{n(b.execute)}</td><td>{n(b.span)}</td><td>{n(b.download)}</td>"
        f"<td>{n(b.upload)}</td><td>{n(b.waiting)}</td><td>{n(b.attempt, '')}</td></tr>"
        for b in a.slowest
    )
    retry_rows = "".join(
        f"<tr><td>{e(r['task'])}</td><td>{e(r['name'])}</td><td>"
        + ", ".join(
            f"{n(x['attempt'], '')}: {e(x['outcome'])} on {e(x['worker'])}"
            f" ({n(x['seconds'], '.3f')} s)"
            for x in r["attempts"]
        )
        + "</td></tr>"
        for r in a.retried
    )
    fail_rows = "".join(
        f"<h3>{e(f['task'])} ({e(f['exc_type'])}, attempt {n(f['attempt'], '')} on"
        f" {e(f['worker'])})"
        f"</h3><p>{e(f['message'])}</p><pre>{e(f['traceback'])}</pre>"
        for f in a.failures
    )
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in a.notes)
    path_seconds = f"{len(a.critical_path)} tasks, {n(a.critical_seconds, '.3f')} s"
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
<tr><th>tasks</th><td>{n(a.n_tasks, "")} ({n(a.tasks_logged, "")} logged)</td></tr>
<tr><th>makespan</th><td>{n(a.makespan, ".3f")} s</td></tr>
<tr><th>workers</th><td>{e(", ".join(a.workers))}</td></tr>
<tr><th>bytes moved</th><td>{n(a.bytes_network, ",")} over the network, {
        n(a.bytes_local, ",")
    } on the host</td></tr>
<tr><th>bytes by path</th><td>{e(_paths(a.bytes_by_path))}</td></tr>
<tr><th>bytes locality kept from moving</th><td>{
        e(_avoided(a.bytes_avoided, a.bytes_avoided_by))
    }</td></tr>
<tr><th>why tasks ran where they did</th><td>{e(_counts(a.placements))}</td></tr>
<tr><th>waits for a child (delayed I/O)</th><td>{e(_counts(a.holds))}</td></tr>
<tr><th>attempts past their timeout</th><td>{e(_counts(a.timed_out))}</td></tr>
<tr><th>tasks not run</th><td>{n(a.from_cache, "")} found in the cache, {
        n(a.skipped, "")
    } not needed then</td></tr>
<tr><th>the graph of</th><td>{
        e(
            f"task {a.parent[1]} of run {a.parent[0]}"
            if a.parent
            else "none (submitted by a client)"
        )
    }</td></tr>
<tr><th>graphs its tasks returned</th><td>{
        e(f"{len(a.graphs)}: " + ", ".join(a.graphs[:20]) + (" ..." if len(a.graphs) > 20 else ""))
        if a.graphs
        else "none"
    }</td></tr>
<tr><th>priority, and tasks in lanes</th><td>{e(f"{a.priority}; " + _lanes(a.lanes))}</td></tr>
<tr><th>critical path</th><td>{e(path_seconds)}</td></tr>
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
