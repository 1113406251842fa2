"""The report: figures computed from the events alone, and the page that shows them."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Pool
from helpers import add, inc

import dagrt
from dagrt.metrics import RunFinished, RunSubmitted
from dagrt.metrics import recorder as rec
from dagrt.metrics import wire as wf
from dagrt.metrics.analysis import analyze
from dagrt.metrics.report import write_report
from dagrt.metrics.run_graph import RunGraph
from dagrt.storage import RedisStorage
from dagrt.workflows import pairwise

T0 = 1_800_000_000.0


def finished(task: int, worker: str, start: float, end: float, execute: float, **kw: Any) -> Any:
    return wf.from_wire(
        rec.task_finished(
            "r", worker, task, "", "", kw.get("attempt", 1), T0 + start, T0 + end, execute
        )
    )


def started(task: int, worker: str, at: float, attempt: int = 1) -> Any:
    return wf.from_wire(rec.task_started(T0 + at, "r", worker, task, "", "", attempt))


def failed(task: int, worker: str, at: float, attempt: int, final: bool, exc: str) -> Any:
    return wf.from_wire(
        rec.task_failed(T0 + at, "r", worker, task, "", "", attempt, exc, "no", "tb", final)
    )


def run(n: int, makespan: float, status: str = "finished") -> tuple[Any, Any]:
    return (
        RunSubmitted(kind="run-submitted", ts=T0, run_id="r", n_tasks=n),
        RunFinished(
            kind="run-finished", ts=T0 + makespan, run_id="r", status=status, makespan=makespan
        ),
    )


GRAPH = RunGraph(  # 0, 1 -> 2 -> 3
    keys=["a", "b", "c", "d"],
    names=["load", "load", "join", "save"],
    parents=[[], [], [0, 1], [2]],
    outputs=[3],
)


def test_every_attempt_is_a_bar_and_says_how_it_ended() -> None:
    submitted, end = run(4, 10.0)
    events = [
        submitted,
        finished(0, "w1", 0, 2, 1.5),
        started(1, "w2", 0),
        failed(1, "w2", 1, 1, False, "IOError"),  # retried
        started(1, "w2", 1.5, 2),
        failed(1, "w3", 4, 2, False, "dagrt.WorkerLostError"),  # w2 went silent
        finished(1, "w3", 4, 6, 1.0, attempt=3),
        finished(2, "w3", 6, 8, 2.0),
        started(3, "w1", 8),
        failed(3, "w1", 9, 1, True, "ValueError"),
        end,
    ]
    a = analyze(events, GRAPH)
    outcomes = sorted((b.task, b.attempt, b.outcome, b.worker) for b in a.bars)
    assert outcomes == [
        (0, 1, "finished", "w1"),
        (1, 1, "retried", "w2"),
        (1, 2, "lost", "w2"),  # drawn where it ran, not where its loss was noticed
        (1, 3, "finished", "w3"),
        (2, 1, "finished", "w3"),
        (3, 1, "failed", "w1"),
    ]
    assert [b.key for b in a.bars if b.task == 2] == ["c"]  # names come from the graph
    assert [r["task"] for r in a.retried] == ["b"]
    assert [f["exc_type"] for f in a.failures] == ["ValueError"]
    # the chain that set the makespan: the last finished output's ancestry, through
    # the parent that finished last (b, not a)
    assert a.critical_path == [1, 2]
    assert a.critical_seconds == pytest.approx(8 - 4)


def test_overlapping_attempts_of_a_worker_get_rows_of_their_own() -> None:
    submitted, end = run(4, 3.0)
    events = [
        submitted,
        finished(0, "w1", 0, 2, 2.0),
        finished(1, "w1", 1, 3, 2.0),  # overlaps 0: a second slot
        finished(2, "w1", 2, 3, 1.0),  # after 0 ended: its row again
        finished(3, "w2", 0, 1, 1.0),
        end,
    ]
    a = analyze(events, GRAPH)
    rows = {b.task: b.row for b in a.bars}
    assert rows[0] != rows[1]
    assert rows[2] == rows[0]
    assert a.rows == {"w1": 2, "w2": 1}
    for worker in a.workers:
        for row in range(a.rows[worker]):
            spans = sorted((b.start, b.end) for b in a.bars if (b.worker, b.row) == (worker, row))
            assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(spans))


def test_the_breakdown_adds_up() -> None:
    """Task-seconds by activity sum to the tasks' time in flight; busy and idle to the
    makespan, however the tasks of a worker overlap."""
    submitted, end = run(3, 10.0)
    events = [
        submitted,
        wf.from_wire(rec.task_finished("r", "w1", 0, "", "", 1, T0, T0 + 4, 2.0, 0, 0, 1.0, 0.5)),
        finished(1, "w1", 2, 6, 3.0),
        finished(2, "w1", 8, 9, 1.0),
        end,
    ]
    w1 = analyze(events, GRAPH).breakdown["w1"]
    assert w1["execute"] == pytest.approx(6.0)
    assert (w1["download"], w1["upload"]) == (pytest.approx(1.0), pytest.approx(0.5))
    assert sum(w1[k] for k in ("execute", "download", "upload", "waiting")) == pytest.approx(9.0)
    assert w1["busy"] == pytest.approx(7.0)  # 0-6 and 8-9
    assert w1["busy"] + w1["idle"] == pytest.approx(10.0)


def test_without_its_graph_a_report_says_what_it_lacks() -> None:
    submitted, end = run(1, 1.0)
    a = analyze([submitted, finished(0, "w1", 0, 1, 1.0), end], None)
    assert a.critical_path == []
    assert any("graph" in note for note in a.notes)


@dagrt.task(retries=1, retry_delay=0)
def once_flaky(folder: str, i: int) -> int:
    import os

    path = os.path.join(folder, f"{i}")
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError(f"first call of {i} fails")
    return i


def page_series(report: Path) -> dict[str, Any]:
    """The figures embedded in the page, read as a page's script would read them."""
    found = re.search(
        r'<script type="application/json" id="series">(.*?)</script>', report.read_text(), re.S
    )
    assert found is not None
    return json.loads(found.group(1))  # type: ignore[no-any-return]


async def test_the_page_of_a_run_with_retries_on_workers(pool: Pool, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    async with dagrt.Client(pool.url) as client:
        node = pairwise(add, [once_flaky(str(tmp_path), i) for i in range(8)])
        fut = client.submit(node)
        assert await fut == sum(range(8))
    with anyio.fail_after(60):
        path = await anyio.to_thread.run_sync(
            lambda: write_report(pool.url, fut.run_id, tmp_path / "out", wait=20)
        )
    series = page_series(path)
    assert series == json.loads((path.parent / "report.json").read_text())
    assert len(series["retried"]) == 8
    assert {a["outcome"] for r in series["retried"] for a in r["attempts"]} == {
        "retried",
        "finished",
    }
    assert sum(b["outcome"] == "finished" for b in series["gantt"]) == 15
    assert series["notes"] == []  # the log was complete
    page = path.read_text()
    assert "Retried tasks" in page
    assert page.count("data:image/png;base64,") == 3
    assert plt.get_fignums() == []  # every figure was closed


async def test_a_report_of_ten_thousand_tasks(tmp_path: Path) -> None:
    async with dagrt.Client(processes=False) as client:
        fut = client.submit(pairwise(add, [inc(i) for i in range(5_000)]))
        await fut
        storage = client.metrics.storage  # type: ignore[union-attr]
        await client.metrics.flush()  # type: ignore[union-attr]
        path = await anyio.to_thread.run_sync(write_report, storage, fut.run_id, tmp_path)
    series = json.loads((path.parent / "report.json").read_text())
    assert len(series["gantt"]) == len({b["task"] for b in series["gantt"]}) == 9_999
    assert series["critical_path"][-1] == 9_998


async def test_a_report_while_the_run_goes_on_says_so(redis_url: str, tmp_path: Path) -> None:
    storage = RedisStorage(redis_url)
    async with dagrt.Client(processes=False, metrics=redis_url) as client:

        @dagrt.task
        def wait_a_bit(x: int) -> int:
            time.sleep(1.0)
            return x

        fut = client.submit(add(wait_a_bit(1), 1))
        await client.metrics.flush()  # type: ignore[union-attr]
        path = await anyio.to_thread.run_sync(write_report, storage, fut.run_id, tmp_path)
        assert "still going" in " ".join(page_series(path)["notes"])
        await fut
    await storage.aclose()
