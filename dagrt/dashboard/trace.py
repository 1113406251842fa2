"""A run as Chrome Trace Event JSON (Perfetto, chrome://tracing): one complete slice
per task attempt, a process per worker, a thread per slot (tasks of one worker that
overlap in time go to different slots)."""

from __future__ import annotations

from typing import Any

from ..metrics.events import Event, RunSubmitted, TaskExecutionMetrics, TaskFailed

__all__ = ["chrome_trace"]


def chrome_trace(events: list[Event]) -> dict[str, Any]:
    submitted = next((e.ts for e in events if isinstance(e, RunSubmitted)), None)
    slices = [e for e in events if isinstance(e, TaskExecutionMetrics | TaskFailed)]
    t0 = submitted if submitted is not None else min((_start(e) for e in slices), default=0.0)
    workers: dict[str, int] = {}
    free_at: dict[str, list[float]] = {}
    out: list[dict[str, Any]] = []
    for e in sorted(slices, key=_start):
        pid = workers.setdefault(e.worker_id, len(workers) + 1)
        start, end = _start(e), _end(e)
        slots = free_at.setdefault(e.worker_id, [])
        tid = next((i for i, t in enumerate(slots) if t <= start), len(slots))
        if tid == len(slots):
            slots.append(end)
        else:
            slots[tid] = end
        args: dict[str, Any] = {"task": e.task, "key": e.key, "attempt": e.attempt}
        if isinstance(e, TaskExecutionMetrics):
            args.update(
                input_bytes=e.input_bytes,
                output_bytes=e.output_bytes,
                download_time=e.download_time,
                upload_time=e.upload_time,
                kept=e.kept,
            )
        else:
            args.update(failed=True, exc_type=e.exc_type, message=e.message)
        out.append(
            {
                "name": e.name,
                "cat": "failed" if isinstance(e, TaskFailed) else "task",
                "ph": "X",
                "ts": (start - t0) * 1e6,
                "dur": max(0.0, end - start) * 1e6,
                "pid": pid,
                "tid": tid,
                "args": args,
            }
        )
    for name, pid in workers.items():
        out.append(
            {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}}
        )
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def _start(e: Event) -> float:
    return e.start if isinstance(e, TaskExecutionMetrics) else e.ts


def _end(e: Event) -> float:
    return e.end if isinstance(e, TaskExecutionMetrics) else e.ts
