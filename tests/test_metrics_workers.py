"""What workers log: attempts and retries, tasks taken over from a worker that died,
outputs made again, tiny tasks of the fast lane, heartbeats, and shutdown.

Workers are real ``dagrt worker`` processes; the log is read back once complete.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Pool, worker_env
from helpers import add, big, first, grow, inc, second, shrink

import dagrt
from dagrt import keys as K
from dagrt.metrics import (
    TaskExecutionMetrics,
    TaskFailed,
    TaskStarted,
    Transfer,
    WorkerHeartbeat,
    aread_graph,
    aread_log,
    aread_run,
    read_graph,
    read_log,
)
from dagrt.storage import RedisStorage
from dagrt.workflows import pairwise


def _count_calls(folder: str, i: int, fails: int) -> int:
    """Note a call of task ``i`` in ``folder``; fail the first ``fails`` calls."""
    path = os.path.join(folder, str(i))
    with open(path, "a") as f:
        f.write("x")
    if os.path.getsize(path) <= fails:
        raise RuntimeError(f"call {os.path.getsize(path)} of task {i} fails")
    return i


flaky = dagrt.task(_count_calls, name="flaky", retries=2, retry_delay=0)


def calls(folder: Path, i: int) -> int:
    return (folder / str(i)).stat().st_size


async def events_of(url: str, run_id: str) -> list[Any]:
    storage = RedisStorage(url)
    try:
        with anyio.fail_after(30):
            return await aread_run(storage, run_id, wait=20)
    finally:
        await storage.aclose()


async def until_a_task_runs(storage: RedisStorage) -> None:
    """Block until a worker's heartbeat names a task in flight."""
    with anyio.fail_after(30):
        while not any(e.kind == "worker-heartbeat" and e.running for e in await aread_log(storage)):
            await storage.axread({K.events(): "$"}, block=5)


async def test_a_tiny_task_that_fails_keeps_its_retries_and_logs_each_attempt(
    pool: Pool, tmp_path: Path
) -> None:
    """A function measured tiny runs in the fast lane; when it fails there and has
    retries, its next attempts run apart, with its budget: retries=2 is 3 calls, each
    attempt logged with its number (failed ones as task-failed, final=False)."""
    folder = str(tmp_path)
    async with dagrt.Client(pool.url) as client:
        warm = [flaky(folder, i, 0) for i in range(40)]  # the workers measure it tiny
        assert await client.compute(warm) == list(range(40))
        fut = client.submit([flaky(folder, i, 2) for i in range(100, 110)])
        assert await fut == list(range(100, 110))
    assert [calls(tmp_path, i) for i in range(100, 110)] == [3] * 10
    events = await events_of(pool.url, fut.run_id)
    for task in range(10):
        mine = [e for e in events if getattr(e, "task", None) == task]
        started = sorted(e.attempt for e in mine if isinstance(e, TaskStarted))
        failed = sorted(e.attempt for e in mine if isinstance(e, TaskFailed))
        [done] = [e for e in mine if isinstance(e, TaskExecutionMetrics)]
        assert started == [1, 2, 3]
        assert failed == [1, 2]
        assert all(not e.final for e in mine if isinstance(e, TaskFailed))
        assert done.attempt == 3
        # the task's span is its last attempt's
        last = next(e for e in mine if isinstance(e, TaskStarted) and e.attempt == 3)
        assert done.start == pytest.approx(last.ts, abs=0.05)


async def test_tiny_tasks_share_out_their_batch_span(pool: Pool) -> None:
    """Tiny tasks run back to back in batches (one download, one upload for all); the
    batch's span is shared out among them in the order they ran, so their spans never
    overlap on a worker's lane, each holds its call, download and upload, and the
    worker shows as busy for as long as it was."""
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(pairwise(add, [inc(i) for i in range(512)]))
        await fut
    finished = [e for e in await events_of(pool.url, fut.run_id) if e.kind == "task-finished"]
    assert len(finished) == 1023
    assert len({(e.worker_id, e.start, e.end) for e in finished}) == len(finished)
    for e in finished:
        assert e.start <= e.end
        parts = e.execution_time + e.download_time + e.upload_time
        assert e.end - e.start >= parts - 1e-6


async def test_tiny_tasks_flushed_mid_batch_are_each_logged_once(pool_factory: Any) -> None:
    """Workers hold the fast lane's rows per run until a flush, which may come between
    a batch's download and its upload (here every 3 events): every task and every
    input still appear exactly once."""
    pool: Pool = pool_factory(2, "--flush-size", "3", "--flush-interval", "0")
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(pairwise(add, [inc(i) for i in range(1024)]))
        assert await fut == sum(range(1, 1025))
    events = await events_of(pool.url, fut.run_id)
    finished = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    assert sorted(e.task for e in finished) == list(range(2047))
    inputs = [
        (e.producer, e.consumer)
        for e in events
        if isinstance(e, Transfer) and e.consumer is not None
    ]
    storage = RedisStorage(pool.url)
    parents = (await aread_graph(storage, fut.run_id)).parents
    await storage.aclose()
    assert sorted(inputs) == sorted((p, c) for c, ps in enumerate(parents) for p in ps)


@dagrt.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@dagrt.task
def tiny_child(x: float) -> float:
    return x + 1


async def test_a_kept_child_says_so_in_the_fast_lane_too(pool: Pool) -> None:
    async with dagrt.Client(pool.url) as client:
        warm = [tiny_child(float(i)) for i in range(40)]  # measured tiny
        await client.compute(warm)
        fut = client.submit([tiny_child(nap(0.01)) for _ in range(6)])
        await fut
    events = await events_of(pool.url, fut.run_id)
    finished = {e.task: e for e in events if isinstance(e, TaskExecutionMetrics)}
    children = [e for e in finished.values() if e.name == "tiny_child"]
    assert len(children) == 6
    assert all(e.kept for e in children)  # each ran where its parent's output was


async def test_a_task_taken_over_from_a_dead_worker_is_its_next_attempt(
    pool_factory: Any, tmp_path: Path
) -> None:
    """The worker dies running ``first``; the one that takes the entry over logs that
    attempt as lost (a WorkerLostError, not final) and runs the task as attempt 2."""
    env = worker_env(DAGRT_FAILPOINTS="before_run:first", DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit([second(first(i)) for i in range(4)])
        with anyio.fail_after(60):
            assert await fut == [i * 10 + 7 for i in range(4)]
    events = await events_of(pool.url, fut.run_id)
    lost = [e for e in events if isinstance(e, TaskFailed) and e.exc_type.endswith("LostError")]
    assert lost
    assert "first" in {e.name for e in lost}
    finished = {(e.task, e.attempt) for e in events if isinstance(e, TaskExecutionMetrics)}
    for note in lost:
        assert not note.final
        assert (note.task, note.attempt + 1) in finished


async def test_an_output_made_again_is_logged_where_it_was_made(
    pool_factory: Any, tmp_path: Path
) -> None:
    """big and grow keep their outputs in memory (each has one child that runs there);
    their worker dies running shrink. The worker that takes over makes them again, and
    the log says so: a task-finished of each on that worker, as a later attempt, and
    the bytes shrink then reads stay on it."""
    env = worker_env(DAGRT_FAILPOINTS="before_run:shrink", DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit([shrink(grow(big(i))) for i in range(4)])
        with anyio.fail_after(60):
            assert await fut == [i + 1 for i in range(4)]
    events = await events_of(pool.url, fut.run_id)
    storage = RedisStorage(pool.url)
    graph = read_graph(storage, fut.run_id)
    await storage.aclose()
    finished: dict[int, list[TaskExecutionMetrics]] = {}
    for e in events:
        if isinstance(e, TaskExecutionMetrics):
            finished.setdefault(e.task, []).append(e)
    taken_over = [e for es in finished.values() for e in es if e.name == "shrink" and e.attempt > 1]
    assert taken_over
    for e in taken_over:  # its parents were made again where it ran, as later attempts
        [parent] = graph.parents[e.task]
        [grandparent] = graph.parents[parent]
        for q in (parent, grandparent):
            again = [x for x in finished.get(q, []) if x.worker_id == e.worker_id]
            assert again, (q, finished.get(q))
            assert again[-1].attempt > 1
        reads = [
            m
            for m in events
            if m.kind == "transfer" and m.consumer == e.task and m.worker_id == e.worker_id
        ]
        assert reads
        assert all(m.local for m in reads)


async def test_heartbeats_name_the_tasks_in_flight(pool_factory: Any) -> None:
    pool: Pool = pool_factory(1, "--heartbeat", "0.2", "--name", "beat")
    storage = RedisStorage(pool.url)
    since = time.time()
    node = nap(1.0)
    async with dagrt.Client(pool.url) as client:
        await client.compute(node)
    with anyio.fail_after(20):
        while True:
            beats = [e for e in read_log(storage, since=since) if isinstance(e, WorkerHeartbeat)]
            if any(b.running for b in beats):
                break
            await storage.axread({K.events(): "$"}, block=5)
    assert {k for b in beats for k in b.running} == {node.key}
    await storage.aclose()


def test_a_worker_stops_past_a_task_it_cannot_interrupt(pool_factory: Any) -> None:
    """A sync task outlives the graceful timeout: the worker writes its last events and
    exits without waiting for it (another worker takes the entry over)."""
    pool: Pool = pool_factory(0)
    worker = pool.spawn(
        "--graceful-timeout", "0.5", "--claim-timeout", "60", "--heartbeat", "0.2", "--name", "w"
    )
    storage = RedisStorage(pool.url)

    async def submit() -> str:
        watch = RedisStorage(pool.url)  # this loop's connections, closed with it
        async with dagrt.Client(pool.url) as client:
            fut = client.submit(nap(60.0))
            await until_a_task_runs(watch)
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
            assert time.monotonic() - started < 15
            fut.cancel()
        await watch.aclose()
        return fut.run_id

    anyio.run(submit)
    kinds = [e.kind for e in read_log(storage) if e.worker_id == "w"]
    assert kinds[-1] == "worker-stopped"
    storage.close()


def test_a_worker_whose_log_server_stopped_answering_still_stops(pool_factory: Any) -> None:
    """The server is paused (it takes connections, answers nothing): SIGTERM still ends
    the worker within its bounds (graceful timeout, the last heartbeat, close_timeout),
    saying what it could not write."""
    pool: Pool = pool_factory(0)
    worker = pool.spawn("--graceful-timeout", "0.5", "--flush-close-timeout", "1", "--name", "w")
    pool.server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert time.monotonic() - started < 15
    finally:
        pool.server.process.send_signal(signal.SIGCONT)


def test_a_second_signal_stops_a_worker_without_waiting_for_its_tasks(pool_factory: Any) -> None:
    pool: Pool = pool_factory(0)
    worker = pool.spawn("--graceful-timeout", "60", "--heartbeat", "0.2", "--name", "w")
    storage = RedisStorage(pool.url)

    async def go() -> None:
        watch = RedisStorage(pool.url)
        async with dagrt.Client(pool.url) as client:
            fut = client.submit(nap(60.0))
            await until_a_task_runs(watch)
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            await anyio.sleep(0.5)  # the first signal: the worker waits for its task...
            assert worker.poll() is None
            worker.send_signal(signal.SIGTERM)  # ...the second: it stops now
            assert await anyio.to_thread.run_sync(worker.wait, 30) == 0
            assert time.monotonic() - started < 15
            fut.cancel()
        await watch.aclose()

    anyio.run(go)
    assert [e.kind for e in read_log(storage) if e.worker_id == "w"][-1] == "worker-stopped"
    storage.close()


async def test_a_run_on_workers_logs_how_long_its_submission_took(pool: Pool) -> None:
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(pairwise(add, [inc(i) for i in range(200)]))
        await fut
    [finished] = [e for e in await events_of(pool.url, fut.run_id) if e.kind == "run-finished"]
    assert 0 < finished.submit_seconds < finished.makespan  # type: ignore[attr-defined]


@dagrt.task
def step(x: int) -> int:
    return x + 1


@dagrt.task
def middle(x: int) -> int:
    return x * 2


async def test_only_the_attempt_a_dead_worker_was_running_is_logged_lost(
    pool_factory: Any, tmp_path: Path
) -> None:
    """One chain on one worker (each task keeps its one child): it dies running the
    middle task. The worker that takes the chain over finds the tasks before it done,
    logs the middle one's attempt lost, and runs the ones after as first attempts."""
    env = worker_env(DAGRT_FAILPOINTS="before_run:middle", DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    node: Any = 0
    for _ in range(5):
        node = step(node)
    node = middle(node)
    for _ in range(5):
        node = step(node)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(node)
        with anyio.fail_after(60):
            assert await fut == 5 * 2 + 5
    events = await events_of(pool.url, fut.run_id)
    lost = [e for e in events if isinstance(e, TaskFailed) and e.exc_type.endswith("LostError")]
    assert [e.name for e in lost] == ["middle"]
    finished = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    assert {e.attempt for e in finished if e.name == "step"} == {1}
    assert [e.attempt for e in finished if e.name == "middle"] == [2]


async def test_tasks_waiting_for_a_thread_when_their_run_ends_do_not_run(
    pool_factory: Any,
) -> None:
    """One thread: one nap runs, the next waits for the thread. The run is cancelled:
    the running nap finishes and learns the run is over (the one that took its thread
    meanwhile runs); the tasks still waiting then are not called, and their attempts
    end in the log as skipped (RUN_ENDED), so the log is whole."""
    from dagrt.metrics import RUN_ENDED, run_summary

    pool: Pool = pool_factory(1, "--threads", "1", "--heartbeat", "0.2")
    storage = RedisStorage(pool.url)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit([nap(0.5) for _ in range(6)])
        await until_a_task_runs(storage)  # a heartbeat names the running nap
        fut.cancel()
    events = await events_of(pool.url, fut.run_id)
    skipped = [e for e in events if isinstance(e, TaskFailed) and e.exc_type == RUN_ENDED]
    ran = [e for e in events if isinstance(e, TaskExecutionMetrics)]
    assert skipped
    assert len(ran) <= 2
    summary = run_summary(storage, fut.run_id)
    assert summary.status == "cancelled"
    assert summary.failed == 0  # a skipped attempt is not a failure of its task
    assert summary.ended >= summary.started
    assert summary.complete
    await storage.aclose()
