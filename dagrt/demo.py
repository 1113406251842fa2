"""``dagrt demo``: run a workflow on a local cluster and show what happened.

Starts the embedded default (a private Redis-compatible server and worker
processes), runs the workflow with a progress bar, prints the result's summary,
the makespan, the task count and the bytes moved, and writes the run's report
(``reports/<run>/report.html``). With ``dashboard=True`` it also serves the live
dashboard and keeps the cluster up until Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread

from . import workflows
from .client import Client
from .metrics import FlushPolicy, aread_run
from .metrics.events import RunFinished, TaskExecutionMetrics, Transfer

__all__ = ["DEMO_PARAMS", "run_demo"]

DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "wordcount": {"words": 400_000, "chunks": 16},
    "tree_reduction": {"n": 4096},
    "gemm": {"n": 1200, "b": 4},
    "image_transform": {"height": 1024, "width": 1024, "tiles": 4},
    "svd1": {"m": 200_000, "n": 50, "blocks": 8},
    "svd2": {"n": 2000, "k": 10, "blocks": 4, "power": 1},
}


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tasks"


def summarize(name: str, result: Any) -> str:
    """A few lines about a workflow's result."""
    if name == "wordcount":
        total = sum(result.values())
        top = ", ".join(f"{w} ({n})" for w, n in Counter(result).most_common(5))
        return f"{total:,} words, {len(result):,} distinct; most frequent: {top}"
    if name == "tree_reduction":
        return f"sum = {result:,}"
    if name in ("svd1", "svd2"):
        u, s, vt = result
        head = ", ".join(f"{x:.4g}" for x in s[:5])
        return f"U {u.shape}, {len(s)} singular values (largest: {head}), Vt {vt.shape}"
    shape = getattr(result, "shape", None)
    return f"an array of shape {shape}" if shape is not None else repr(result)[:200]


async def run_demo(
    name: str = "wordcount",
    *,
    n_workers: int | None = None,
    path: str | None = None,
    dashboard: bool = False,
    dashboard_port: int = 8787,
    out: str | Path = "reports",
    stream: TextIO = sys.stdout,
) -> dict[str, Any]:
    """Run the demo; a summary of the run (also printed on ``stream``)."""
    flow = workflows.get(name)
    params = dict(DEMO_PARAMS[name])
    if path is not None:
        if name not in ("wordcount", "image_transform"):
            raise ValueError(f"--file applies to wordcount and image_transform, not {name}")
        if not await anyio.Path(path).is_file():
            raise ValueError(f"no such file: {path}")
        params["path"] = path

    def say(text: str = "", end: str = "\n") -> None:
        print(text, end=end, file=stream, flush=True)

    say("Starting a local cluster: a private Redis-compatible server and worker processes...")
    async with Client(
        n_workers=n_workers,
        flush=FlushPolicy(interval=0.2),
        dashboard=dashboard_port if dashboard else False,  # a process; it prints its address
    ) as client:
        runtime: Any = client._runtime
        node = flow.build(**params)
        say(
            f"Running {name} ({flow.n_tasks(**params):,} tasks) on "
            f"{len(client.cluster.processes) if client.cluster else 0} workers"
        )
        started = time.perf_counter()
        fut = client.submit(node)
        tty = stream.isatty()
        shown = -1
        async for done, total in client.progress(fut):
            if tty:
                say("\r" + _bar(done, total), end="")
            elif done * 4 // max(1, total) > shown:  # a line per quarter in logs
                shown = done * 4 // max(1, total)
                say(_bar(done, total))
        result = await fut
        wall = time.perf_counter() - started
        if tty:
            say()
        say(f"Result: {summarize(name, result)}")
        await client.metrics.flush()  # type: ignore[union-attr]
        facts = await _facts(runtime.storage, fut.run_id)
        say(
            f"Makespan: {facts['makespan']:.3f} s (wall {wall:.3f} s), tasks: {facts['tasks']:,}, "
            f"bytes moved: {facts['bytes_network']:,} over storage, "
            f"{facts['bytes_local']:,} kept on workers"
        )
        report = await anyio.to_thread.run_sync(_report, runtime.storage, fut.run_id, out)
        if report is not None:
            say(f"Report: {report}")
            say(f"Open it with: python -m webbrowser file://{report}")
        else:
            say(
                "Report: install matplotlib for it (pip install 'dagrt[report]'), then "
                f"dagrt report {fut.run_id} --redis <url of a persistent server>"
            )
        if client.dashboard_url is not None:
            say(f"Dashboard: {client.dashboard_url}#/run/{fut.run_id} (replay the run there)")
            say("Serving the dashboard; Ctrl-C stops it and the cluster.")
            await anyio.sleep_forever()
        return {"run_id": fut.run_id, "result": result, "report": report, **facts}


async def _facts(storage: Any, run_id: str) -> dict[str, Any]:
    """Makespan, tasks and bytes from the event log, once it is complete (workers write
    their events on their own schedule; this waits on the log for them)."""
    events = await aread_run(storage, run_id, wait=15)
    finished = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    moves = [e for e in events if isinstance(e, Transfer)]
    run = next((e for e in events if isinstance(e, RunFinished)), None)
    return {
        "makespan": run.makespan if run is not None else 0.0,
        "tasks": len({e.task for e in finished}),
        "bytes_network": sum(m.bytes for m in moves if not m.local),
        "bytes_local": sum(m.bytes for m in moves if m.local),
        "workers": sorted({e.worker_id for e in finished}),
    }


def _report(storage: Any, run_id: str, out: str | Path) -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from .metrics.report import write_report

    return str(write_report(storage, run_id, out).resolve())
