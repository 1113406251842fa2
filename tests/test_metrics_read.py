"""Reading the event log: a run's events once its log is complete, the runs index,
the whole log, and what bad arguments get."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from conftest import Pool
from helpers import add, inc

import dagrt
from dagrt import keys as K
from dagrt.metrics import (
    FlushPolicy,
    MetadataStorage,
    RunSubmitted,
    TaskExecutionMetrics,
    aread_run,
    list_runs,
    read_graph,
    read_log,
    read_run,
    run_summary,
)
from dagrt.metrics import recorder as rec
from dagrt.storage import InMemoryStorage, RedisStorage


@dagrt.task
def collect(*xs: int) -> list[int]:
    return list(xs)


async def test_a_cluster_run_is_read_whole_once_its_log_is_complete(pool: Pool) -> None:
    """Workers write on their own schedule: right after the run, its log may still be
    filling. ``wait`` blocks on the log until the runs index says it is complete."""
    slow = FlushPolicy(interval=5.0, max_events=None)  # the workers' clocks would be late
    async with dagrt.Client(pool.url, flush=slow) as client:
        fut = client.submit(collect(*[add(inc(i), i) for i in range(100)]))
        await fut
        storage = RedisStorage(pool.url)
        with anyio.fail_after(20):
            events = await aread_run(storage, fut.run_id, wait=15)
        done = {e.task for e in events if isinstance(e, TaskExecutionMetrics)}
        assert done == set(range(201))
        summary = run_summary(storage, fut.run_id)
        assert summary.complete
        assert summary.done == 201
        assert summary.ended >= summary.started
        await storage.aclose()


async def test_a_run_is_complete_by_its_counts() -> None:
    """In-process runs log every task before their end; a run on workers is complete
    once its ends match its starts and, if it finished, every task finished."""
    async with dagrt.Client(processes=False) as client:
        fut = client.submit(add(inc(1), 2))
        await fut
        await client.metrics.flush()  # type: ignore[union-attr]
        summary = run_summary(client.metrics.storage, fut.run_id)  # type: ignore[union-attr]
    assert (summary.runtime, summary.status, summary.complete) == ("in-process", "finished", True)
    storage = InMemoryStorage()
    async with MetadataStorage(storage, FlushPolicy(interval=None)) as metrics:
        metrics.emit_event(
            RunSubmitted(
                kind="run-submitted", ts=time.time(), run_id="r", n_tasks=2, runtime="redis://x"
            )
        )
        now = time.time()
        metrics.emit(rec.task_started(now, "r", "w1", 0, "a", "f", 1))
        metrics.emit(rec.task_finished("r", "w1", 0, "a", "f", 1, now, now, 0.0))
        metrics.emit(
            (2, now, "r", "", "finished", 0.1, None)  # run-finished, in wire form
        )
        await metrics.flush()
        assert not run_summary(storage, "r").complete  # one task of two: a worker still holds it
        metrics.emit(rec.task_started(now, "r", "w2", 1, "b", "f", 1))
        await metrics.flush()
        assert not run_summary(storage, "r").complete
        metrics.emit(rec.task_finished("r", "w2", 1, "b", "f", 1, now, now, 0.0))
        await metrics.flush()
        assert run_summary(storage, "r").complete
    # waiting for a complete log returns at once
    assert len(read_run(storage, "r", wait=30)) == 6


def test_reading_checks_its_arguments(redis_url: str) -> None:
    storage = InMemoryStorage()
    for bad in (123, None, ["a"]):
        with pytest.raises(TypeError, match="run_id"):
            read_run(storage, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a run id"):
        read_run(storage, "../etc")
    with pytest.raises(TypeError, match="Storage or a redis:// URL"):
        read_run(object(), "r")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait"):
        read_run(storage, "r", wait=-1)
    for limit in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit"):
            list_runs(storage, limit)  # type: ignore[arg-type]
    with pytest.raises(dagrt.RunNotFoundError):
        read_run(redis_url, "no-such-run")  # a URL is a storage too


async def test_a_damaged_graph_leaves_the_events_readable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with dagrt.Client(processes=False) as client:
        fut = client.submit(add(inc(1), 2))
        await fut
        await client.metrics.flush()  # type: ignore[union-attr]
        storage = client.metrics.storage  # type: ignore[union-attr]
        storage.set(K.graph(fut.run_id), b"{}")
        with pytest.raises(dagrt.SerializationError, match="graph of run"):
            read_graph(storage, fut.run_id)
        kinds = [e.kind for e in read_run(storage, fut.run_id)]
    assert kinds.count("task-finished") == 2
    assert "reading the run's events without it" in caplog.text


async def test_the_whole_log_holds_worker_events_too(pool_factory: Any) -> None:
    pool: Pool = pool_factory(1, "--heartbeat", "0.2", "--name", "solo")
    storage = RedisStorage(pool.url)
    since = time.time() - 60
    async with dagrt.Client(pool.url) as client:
        assert await client.compute(add(inc(1), 2)) == 4
    with anyio.fail_after(20):
        while True:
            kinds = {e.kind for e in read_log(storage, since=since) if e.worker_id == "solo"}
            if {"worker-started", "worker-heartbeat", "task-finished"} <= kinds:
                break
            await storage.axread({K.events(): "$"}, block=5)
    assert read_log(storage, since=since, limit=1)[0].kind == "worker-started"
    assert read_log(storage, until=since) == []
    await storage.aclose()


@dagrt.task
def fails_late(x: int) -> int:
    time.sleep(0.2)
    raise ValueError(f"task {x} gives up")


async def test_a_failed_run_is_read_with_what_ran_before_it_failed(pool: Pool) -> None:
    """A failed run has no count to wait for: its log counts as whole once it has been
    quiet a moment (workers write what they hold when idle)."""
    slow = FlushPolicy(interval=5.0, max_events=None)
    async with dagrt.Client(pool.url, flush=slow) as client:
        fut = client.submit(collect(*[inc(i) for i in range(30)], fails_late(0)))
        with pytest.raises(dagrt.TaskError):
            await fut
    storage = RedisStorage(pool.url)
    with anyio.fail_after(30):
        events = await aread_run(storage, fut.run_id, wait=20)
    done = {e.task for e in events if isinstance(e, TaskExecutionMetrics)}
    assert len(done) == 30  # every inc ran before the failure
    assert [e.exc_type for e in events if e.kind == "task-failed"] == ["ValueError"]
    assert run_summary(storage, fut.run_id).complete
    await storage.aclose()


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_old_runs_and_worker_events_can_be_pruned(backend: str, redis_url: str) -> None:
    """prune deletes what ended before the cutoff (entries, record, graph, index) and
    worker events older than it; a run logged after it keeps every entry."""
    from dagrt.metrics import aprune, prune

    storage: Any = RedisStorage(redis_url) if backend == "redis" else InMemoryStorage()
    if backend == "redis":
        storage.flushdb()
    async with MetadataStorage(storage, FlushPolicy(interval=None)) as metrics:
        metrics.emit_event(
            RunSubmitted(kind="run-submitted", ts=time.time() - 100, run_id="old", n_tasks=1)
        )
        metrics.emit((2, time.time(), "old", "", "finished", 0.1, None))  # its run-finished
        metrics.emit_event(  # going on (a long task: nothing logged for a while)
            RunSubmitted(kind="run-submitted", ts=time.time() - 90, run_id="going", n_tasks=1)
        )
        metrics.emit((7, time.time(), "", "w1", "host", 1, 1, 1))  # a worker-started
        await metrics.flush()
        cutoff = time.time() + 0.01
        await anyio.sleep(0.05)
        metrics.emit_event(
            RunSubmitted(kind="run-submitted", ts=cutoff - 50, run_id="new", n_tasks=1)
        )
        metrics.emit(rec.task_finished("new", "w1", 0, "k", "f", 1, cutoff, cutoff, 0.0))
    before = storage.xlen(K.events())
    assert prune(storage, before=cutoff, dry_run=True).runs == ["old"]
    assert storage.xlen(K.events()) == before  # a dry run deletes nothing
    done = await aprune(storage, before=cutoff)
    assert (done.runs, done.entries) == (["old"], 2)
    assert sorted(r.run_id for r in list_runs(storage)) == ["going", "new"]
    with pytest.raises(dagrt.RunNotFoundError):
        read_run(storage, "old")
    assert [e.kind for e in read_run(storage, "new")] == ["run-submitted", "task-finished"]
    assert storage.get(K.graph("old")) is None
    with pytest.raises(TypeError, match="before"):
        prune(storage, before="yesterday")  # type: ignore[arg-type]
    if backend == "redis":
        await storage.aclose()


def test_the_prune_command(redis_url: str) -> None:
    import subprocess
    import sys

    from conftest import worker_env

    done = subprocess.run(
        [sys.executable, "-m", "dagrt", "prune", "--redis", redis_url, "--older-than", "7d"],
        capture_output=True,
        text=True,
        timeout=60,
        env=worker_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted ")
    bad = subprocess.run(
        [sys.executable, "-m", "dagrt", "prune", "--older-than", "7"],
        capture_output=True,
        text=True,
        timeout=60,
        env=worker_env(),
    )
    assert bad.returncode == 2
    assert "a number and a unit" in bad.stderr


def test_waiting_and_time_windows_are_checked() -> None:
    from dagrt.metrics import await_for_run, wait_for_run

    storage = InMemoryStorage()
    for bad in (None, "x", -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="within"):
            wait_for_run(storage, "r", bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="within"):
            anyio.run(await_for_run, storage, "r", bad)
    for bad_time in (float("nan"), float("inf"), -1, 1e20, "today"):
        with pytest.raises(ValueError, match="since"):
            read_log(storage, since=bad_time)  # type: ignore[arg-type]
