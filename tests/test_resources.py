"""Resources and priorities (``dagrt.resources``), on real workers and in process.

A task that needs resources runs only on a worker that has them, and never more at
once than the worker's amounts allow; a task no live worker can hold fails the run
with :class:`dagrt.ResourceError` instead of waiting; ready work of a higher priority
is taken first, and lower priorities are not starved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Pool

import dagrt
from dagrt import keys as K
from dagrt.metrics.events import WorkerStarted
from dagrt.metrics.read import aread_log, arun_summary
from dagrt.metrics.report import write_report
from dagrt.resources import (
    Capacity,
    LaneOrder,
    can_hold,
    check_resources,
    lane_of,
    needs_of,
    parse_resources,
)
from dagrt.storage import RedisStorage

# --------------------------------------------------------------------------- task functions


@dagrt.task(resources={"gpu": 1})
def on_gpu(i: int, pause: float = 0.0) -> tuple[int, int, float, float]:
    """Which process ran it, and when it began and ended."""
    t0 = time.time()
    time.sleep(pause)
    return i, os.getpid(), t0, time.time()


@dagrt.task
def anywhere(i: int) -> int:
    return os.getpid()


@dagrt.task
def stamp(i: int, pause: float = 0.0) -> tuple[int, float]:
    time.sleep(pause)
    return i, time.time()


@dagrt.task
def gate(pause: float) -> float:
    time.sleep(pause)
    return time.time()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans that overlap at one moment."""
    edges = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


# --------------------------------------------------------------------------- amounts and lanes


def test_amounts_are_numbers_or_sizes_and_bad_ones_say_what_is_wrong() -> None:
    assert check_resources({"memory": "4GB", "gpu": 1}) == {"gpu": 1.0, "memory": 4e9}
    assert check_resources({"memory": "2GiB"}) == {"memory": 2.0 * 2**30}
    assert parse_resources("gpu=2, memory=32GB") == {"gpu": 2.0, "memory": 32e9}
    assert check_resources({}) is None
    for bad, says in [
        ({"gpu": 0}, "> 0"),
        ({"gpu": -1}, "> 0"),
        ({"gpu": True}, "a number"),
        ({"memory": "4 parsecs"}, "not an amount"),
        ({"g pu": 1}, "not a resource name"),
        ([("gpu", 1)], "dict"),
    ]:
        with pytest.raises(ValueError, match=says):
            check_resources(bad)
    with pytest.raises(ValueError, match="name=amount"):
        parse_resources("gpu")
    with pytest.raises(ValueError, match="resources"):
        dagrt.task(resources={"gpu": "lots"})(lambda: 1)
    with pytest.raises(ValueError, match="priority"):
        dagrt.task(priority=1.5)(lambda: 1)  # type: ignore[arg-type]


def test_a_lane_names_its_resources_and_priority_and_reads_back() -> None:
    assert lane_of(None, 0) == ""
    assert lane_of({"gpu": 1.0}, 0) == "gpu=1"
    assert lane_of({"memory": 4e9, "gpu": 0.5}, -2) == "gpu=0.5,memory=4000000000|p=-2"
    assert lane_of(None, 3) == "|p=3"
    assert lane_of({"p": 1.0}, 0) == "p=1"  # (a resource named p is no priority)
    assert needs_of("p=1") == ({"p": 1.0}, 0)
    for lane in ["gpu=1", "gpu=0.5,memory=4000000000|p=-2", "|p=3", "p=2|p=-1"]:
        assert lane_of(*needs_of(lane)) == lane
    for bad in ["|q=1", "|p=0", "gpu|p=1"]:
        with pytest.raises(ValueError):
            needs_of(bad)
    assert can_hold({"gpu": 2.0}, {"gpu": 1.0})
    assert not can_hold({}, {"gpu": 1.0})


def test_a_worker_reads_higher_priorities_first_and_every_eighth_read_lowest_first() -> None:
    order = LaneOrder()
    order.set({"|p=5": ({}, 5), "|p=-1": ({}, -1), "gpu=1": ({"gpu": 1.0}, 0)})
    capacity = Capacity({"gpu": 1.0})
    plans = [order.plan(10, capacity) for _ in range(8)]
    assert plans[0] == [("|p=5", 10), ("gpu=1", 1), ("", 10), ("|p=-1", 10)]
    assert plans[7] == plans[0][::-1]  # (aging: the eighth read starts low)
    capacity.try_acquire("entry", {"gpu": 1.0})
    assert ("gpu=1", 0) in order.plan(10, capacity)  # (all held: none of that lane now)
    assert LaneOrder().plan(10, capacity) == []  # (no lanes: the tasks stream only)


# --------------------------------------------------------------------------- on workers


@pytest.fixture
def mixed_pool(pool_factory: Callable[..., Pool]) -> tuple[Pool, subprocess.Popen[str]]:
    """A pool of two workers: one plain, one with two GPUs and four threads."""
    made = pool_factory(1)
    gpu = made.spawn(
        "--claim-timeout", "2", "--heartbeat", "0.5", "--resources", "gpu=2", "--threads", "4"
    )
    return made, gpu


async def test_tasks_that_need_a_resource_run_only_on_workers_that_have_it(
    mixed_pool: tuple[Pool, subprocess.Popen[str]],
) -> None:
    pool, gpu = mixed_pool
    async with dagrt.Client(pool.url) as client:
        ran = await client.compute([on_gpu(i) for i in range(12)])
        plain = await client.compute([anywhere(i) for i in range(40)])
    assert {pid for _, pid, _, _ in ran} == {gpu.pid}
    assert [i for i, *_ in ran] == list(range(12))
    assert len(set(plain)) >= 1  # (unconstrained tasks run anywhere)


async def test_a_worker_runs_no_more_at_once_than_its_amounts_allow(
    mixed_pool: tuple[Pool, subprocess.Popen[str]],
) -> None:
    pool, _ = mixed_pool
    async with dagrt.Client(pool.url) as client:
        ran = await client.compute([on_gpu(i, 0.3) for i in range(6)])
        big = on_gpu.options(resources={"gpu": 2})
        alone = await client.compute([big(i, 0.2) for i in range(3)])
    assert most_at_once([(t0, t1) for *_, t0, t1 in ran]) == 2  # four threads, two GPUs
    assert most_at_once([(t0, t1) for *_, t0, t1 in alone]) == 1


async def test_children_of_a_resource_task_and_mixed_graphs_give_the_right_result(
    mixed_pool: tuple[Pool, subprocess.Popen[str]],
) -> None:
    pool, _ = mixed_pool

    @dagrt.task
    def add(a: Any, b: Any) -> int:
        return (a[0] if isinstance(a, tuple) else a) + (b[0] if isinstance(b, tuple) else b)

    async with dagrt.Client(pool.url) as client:
        level = [on_gpu(i) if i % 2 else stamp(i) for i in range(16)]
        while len(level) > 1:
            level = [add(level[k], level[k + 1]) for k in range(0, len(level), 2)]
        assert await client.compute(level[0]) == sum(range(16))


async def test_work_released_at_once_is_shared_by_the_workers_that_can_hold_it(
    pool_factory: Callable[..., Pool],
) -> None:
    """Six GPU children become ready in one completion; each of two one-GPU workers was
    waiting in a blocking read, which hands it every entry there is: each takes the one
    it can hold and gives the rest back to the lane, so both work."""
    pool = pool_factory(0)
    # (eight threads: a read takes up to nine entries, more than there are)
    first = pool.spawn("--heartbeat", "0.5", "--resources", "gpu=1", "--threads", "8")
    second = pool.spawn("--heartbeat", "0.5", "--resources", "gpu=1", "--threads", "8")

    @dagrt.task
    def seed() -> int:
        return 0

    @dagrt.task(resources={"gpu": 1})
    def after(start: int, i: int) -> tuple[int, int, float, float]:
        return on_gpu.fn(start + i, 0.3)

    async with dagrt.Client(pool.url) as client:
        await client.compute(on_gpu(0))  # (both read the lane from now on)
        await anyio.sleep(1.5)  # (... and wait in a blocking read)
        s = seed()
        ran = await client.compute([after(s, i) for i in range(6)])
    assert {pid for _, pid, _, _ in ran} == {first.pid, second.pid}
    assert most_at_once([(t0, t1) for *_, t0, t1 in ran]) == 2


async def test_a_priority_beyond_the_range_with_the_runs_added_is_refused(
    mixed_pool: tuple[Pool, subprocess.Popen[str]],
) -> None:
    pool, _ = mixed_pool
    async with dagrt.Client(pool.url) as client:
        with pytest.raises(ValueError, match="priority of stamp plus the run's"):
            await client.compute(stamp.options(priority=10**6)(1), priority=1)


async def test_lanes_are_unregistered_when_no_running_run_uses_them(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(1)
    async with dagrt.Client(pool.url) as client:
        await client.compute([stamp(i) for i in range(3)], priority=4)
        both = [client.submit(stamp.options(priority=2)(i)) for i in range(2)]
        await both[0]
        await both[1]
    storage = RedisStorage(pool.url)
    try:
        assert await storage.ahgetall(K.lanes(K.tasks_stream())) == {}
    finally:
        await storage.aclose()


async def test_a_task_no_live_worker_can_hold_fails_at_submission_and_writes_nothing(
    mixed_pool: tuple[Pool, subprocess.Popen[str]],
) -> None:
    pool, _ = mixed_pool
    huge = on_gpu.options(resources={"gpu": 4, "memory": "1TB"})
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(huge(1))
        with pytest.raises(dagrt.ResourceError, match="needs gpu=4,memory=1000000000000"):
            await fut
        assert await client.compute(on_gpu(2)) is not None  # the pool goes on
    storage = RedisStorage(pool.url)
    try:
        assert await storage.aexists(K.RunKeys(fut.run_id).meta) == 0
    finally:
        await storage.aclose()


async def test_a_worker_that_starts_later_reads_a_new_lane_at_once(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(1)
    async with dagrt.Client(pool.url) as client:
        await client.compute(anywhere(0))  # (the plain worker reads the registry: empty)
        tpu = pool.spawn("--heartbeat", "30", "--resources", "tpu=1")
        needs_tpu = on_gpu.options(resources={"tpu": 1})
        t0 = time.monotonic()
        [(_, pid, _, _)] = await client.compute([needs_tpu(1)])
        assert pid == tpu.pid
        assert time.monotonic() - t0 < 10  # rung, not found at its heartbeat in 30 s


async def test_a_task_whose_worker_died_is_taken_over_only_by_one_that_can_hold_it(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(1)  # a plain worker, which takes over silent workers' entries
    first = pool.spawn("--claim-timeout", "2", "--heartbeat", "0.5", "--resources", "gpu=1")
    async with dagrt.Client(pool.url, stall_timeout=60) as client:
        fut = client.submit(tell_then_hold(pool.url, "began", 7, 2.0))
        assert await began(pool.url, "began") == first.pid
        first.send_signal(signal.SIGKILL)
        first.wait()
        await anyio.sleep(3)  # (past the claim timeout: the plain worker took it over)
        second = pool.spawn("--claim-timeout", "2", "--heartbeat", "0.5", "--resources", "gpu=1")
        i, pid, _, _ = await fut
    assert (i, pid) == (7, second.pid)


async def test_a_run_whose_lane_lost_every_worker_that_could_hold_it_fails(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(1)
    gpu = pool.spawn("--claim-timeout", "2", "--heartbeat", "0.5", "--resources", "gpu=1")
    async with dagrt.Client(pool.url, stall_timeout=2) as client:
        fut = client.submit([tell_then_hold(pool.url, "began", i, 1.0) for i in range(4)])
        assert await began(pool.url, "began") == gpu.pid
        gpu.terminate()  # (its task in flight finishes; the others wait in the lane)
        with pytest.raises(dagrt.ResourceError, match="none of the 1 live worker"):
            await fut


async def test_the_log_and_report_say_the_runs_priority_its_lanes_and_what_workers_have(
    mixed_pool: tuple[Pool, subprocess.Popen[str]], tmp_path: Path
) -> None:
    pool, _ = mixed_pool
    soon = stamp.options(priority=2)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit([on_gpu(i) for i in range(3)] + [soon(i) for i in range(2)], priority=1)
        await fut
    with anyio.fail_after(60):
        path = await anyio.to_thread.run_sync(
            lambda: write_report(pool.url, fut.run_id, tmp_path, wait=20)
        )
    series = json.loads((path.parent / "report.json").read_text())
    assert series["priority"] == 1
    assert series["lanes"] == {"gpu=1|p=1": 3, "|p=3": 2}
    assert "3 in gpu=1|p=1, 2 in |p=3" in path.read_text()
    storage = RedisStorage(pool.url)
    try:
        summary = await arun_summary(storage, fut.run_id)
        assert (summary.priority, summary.lanes) == (1, {"gpu=1|p=1": 3, "|p=3": 2})
        events = await aread_log(storage)
    finally:
        await storage.aclose()
    has = [e.resources for e in events if isinstance(e, WorkerStarted)]
    assert {"gpu": 2.0} in has
    assert {} in has  # (the plain worker)


# --------------------------------------------------------------------------- priorities


async def test_ready_work_of_a_higher_priority_run_is_taken_first(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(1, "--threads", "1")
    async with dagrt.Client(pool.url) as client:
        busy = client.submit(gate(1.0))  # (the one thread is busy while both wait)
        await anyio.sleep(0.3)
        low = client.submit([stamp(i, 0.02) for i in range(12)])
        high = client.submit([stamp(100 + i, 0.02) for i in range(12)], priority=10)
        await busy
        low_times = [t for _, t in await low]
        high_times = [t for _, t in await high]
    before = sum(t < max(high_times) for t in low_times)
    assert before <= 4, (before, sorted(low_times), sorted(high_times))


async def test_a_steady_flow_of_high_priority_work_does_not_starve_the_rest(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(1, "--threads", "1")
    hot = stamp.options(priority=5)
    async with dagrt.Client(pool.url) as client:
        busy = client.submit(gate(0.5))
        await anyio.sleep(0.2)
        flood = client.submit([hot(i, 0.01) for i in range(300)])
        low = client.submit(stamp(-1))
        await busy
        _, low_done = await low
        high_done = [t for _, t in await flood]
    assert low_done < max(high_done)
    assert sum(t > low_done for t in high_done) > 100  # (long before the flood ended)


async def test_priorities_order_a_runs_own_tasks(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(1, "--threads", "1")
    urgent = stamp.options(priority=3)
    async with dagrt.Client(pool.url) as client:
        busy = client.submit(gate(0.8))
        await anyio.sleep(0.3)
        both = client.submit(
            [stamp(i, 0.02) for i in range(10)] + [urgent(50 + i) for i in range(5)]
        )
        await busy
        done = await both
    order = [i for i, _ in sorted(done, key=lambda x: x[1])]
    assert sum(i >= 50 for i in order[:7]) == 5, order


# --------------------------------------------------------------------------- in process


async def test_in_process_resources_bound_what_runs_at_once() -> None:
    async with dagrt.Client(processes=False, threads=4, resources={"gpu": 2}) as client:
        ran = await client.compute([on_gpu(i, 0.15) for i in range(6)])

        @dagrt.task(resources={"gpu": 1})
        async def on_loop(i: int) -> tuple[float, float]:
            t0 = time.time()
            await anyio.sleep(0.1)
            return t0, time.time()

        spans = await client.compute([on_loop(i) for i in range(4)])
    assert most_at_once([(t0, t1) for *_, t0, t1 in ran]) == 2
    assert most_at_once(spans) == 2


async def test_in_process_a_failed_run_gives_back_what_its_tasks_held() -> None:
    @dagrt.task
    def boom() -> int:
        raise ValueError("boom")

    async with dagrt.Client(processes=False, threads=1, resources={"gpu": 2}) as client:
        with pytest.raises(dagrt.TaskError, match="boom"):
            await client.compute([boom(), on_gpu(1), on_gpu(2), on_gpu(3)])
        with anyio.fail_after(20):  # (nothing is held for good: these run)
            assert len(await client.compute([on_gpu(i, 0.05) for i in range(4)])) == 4


async def test_in_process_a_task_the_process_cannot_hold_fails_before_anything_runs() -> None:
    ran = threading.Event()

    @dagrt.task
    def first() -> int:
        ran.set()
        return 1

    async with dagrt.Client(processes=False) as client:
        with pytest.raises(dagrt.ResourceError, match=r"processes=False, resources="):
            await client.compute([first(), on_gpu(1)])
    assert not ran.is_set()


async def test_in_process_priorities_order_ready_tasks() -> None:
    urgent = stamp.options(priority=1)
    async with dagrt.Client(processes=False, threads=1) as client:
        done = await client.compute(
            [stamp(i) for i in range(5)] + [urgent(10 + i) for i in range(5)]
        )
        later = await client.compute([stamp(i) for i in range(5)], priority=-3)
    order = [i for i, _ in sorted(done, key=lambda x: x[1])]
    assert order[:5] == [10, 11, 12, 13, 14] or set(order[:5]) == {10, 11, 12, 13, 14}
    assert len(later) == 5


def test_client_refuses_resources_for_a_pool_it_does_not_start() -> None:
    with pytest.raises(ValueError, match="dagrt worker --resources"):
        dagrt.Client("redis://localhost:1", resources={"gpu": 1})


# --------------------------------------------------------------------------- helpers


@dagrt.task(resources={"gpu": 1})
def tell_then_hold(url: str, key: str, i: int, pause: float) -> tuple[int, int, float, float]:
    """Say on the stream ``key`` that it began, then hold a GPU for ``pause`` seconds."""
    import redis

    with redis.Redis.from_url(url) as r:
        r.xadd(key, {"pid": os.getpid()})
    return on_gpu.fn(i, pause)


async def began(url: str, key: str) -> int:
    """Block until a task says on ``key`` that it began; the pid of its worker."""
    storage = RedisStorage(url)
    try:
        reply = await storage.axread({key: "0-0"}, count=1, block=30)
        assert reply, f"no task began within 30 s ({key})"
        return int(reply[0][1][0][1][b"pid"])
    finally:
        await storage.aclose()
