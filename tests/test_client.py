"""The Client API: futures, gather, as_completed, the sync helper, bad input."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest
from helpers import add, inc

import dagrt
from dagrt import ClientClosedError, RunFuture, TaskError


@dagrt.task
def fail(x: int) -> int:
    raise KeyError(x)


def slow_task(gate: threading.Event) -> dagrt.TaskFunction:
    @dagrt.task
    def slow(x: int) -> int:
        gate.wait(10)
        return x

    return slow


def test_sync_compute_for_scripts() -> None:
    a = add(1, 2)
    assert dagrt.compute(a, processes=False) == 3
    assert dagrt.compute(a, inc(a), processes=False) == (3, 4)
    assert a.compute(processes=False) == 3


async def test_sync_compute_inside_a_running_loop_says_what_to_use() -> None:
    with pytest.raises(RuntimeError, match=r"await client\.compute"):
        dagrt.compute(add(1, 2), processes=False)


async def test_submit_a_function_call_like_dask(client: dagrt.Client) -> None:
    def mul(x: int, y: int) -> int:
        return x * y

    assert await client.submit(mul, 6, 7) == 42
    assert await client.submit(add, inc(1), y=3) == 5
    futs = client.map(mul, [1, 2, 3], [4, 5, 6])
    assert await client.gather(futs) == [4, 10, 18]


async def test_result_blocks_other_threads_but_not_the_loop(client: dagrt.Client) -> None:
    gate = threading.Event()
    fut = client.submit(slow_task(gate)(5))
    with pytest.raises(RuntimeError, match="await future"):
        fut.result()
    with pytest.raises(TimeoutError):
        await anyio.to_thread.run_sync(lambda: fut.result(timeout=0.05))
    gate.set()
    assert await anyio.to_thread.run_sync(lambda: fut.result(timeout=10)) == 5
    assert fut.result() == 5  # done: no blocking
    assert fut.exception() is None


async def test_future_state_and_callbacks(client: dagrt.Client) -> None:
    seen: list[RunFuture] = []
    fut = client.submit(fail(1))
    fut.add_done_callback(seen.append)
    with pytest.raises(TaskError) as info:
        await fut
    assert isinstance(info.value.exception, KeyError)
    assert isinstance(info.value.__cause__, KeyError)
    assert fut.status == "error"
    assert fut.done()
    assert not fut.cancelled()
    assert isinstance(fut.exception(), TaskError)
    await asyncio.sleep(0)
    assert seen == [fut]
    assert fut.run_id in repr(fut)


async def test_gather_raises_the_first_error_at_once(client: dagrt.Client) -> None:
    gate = threading.Event()
    slow = client.submit(slow_task(gate)(1))
    bad = client.submit(fail(2))
    with pytest.raises(TaskError, match="KeyError"):
        await client.gather([slow, bad])
    assert not slow.done()  # the error did not wait for the slow run
    gate.set()
    assert await slow == 1


async def test_gather_with_return_exceptions(client: dagrt.Client) -> None:
    futs = [client.submit(inc(1)), client.submit(fail(3))]
    cancelled = client.submit(slow_task(threading.Event())(1))
    cancelled.cancel()
    ok, err, gone = await client.gather([*futs, cancelled], return_exceptions=True)
    assert ok == 2
    assert isinstance(err, TaskError)
    assert isinstance(gone, asyncio.CancelledError)


async def test_as_completed_yields_in_finishing_order(client: dagrt.Client) -> None:
    gate = threading.Event()
    slow = client.submit(slow_task(gate)(1))
    fast = client.submit(inc(1))
    order = []
    async for fut in client.as_completed([slow, fast]):
        order.append(fut)
        if fut is fast:
            gate.set()
    assert order == [fast, slow]


async def test_awaiting_is_shielded_but_compute_cancels_its_run(client: dagrt.Client) -> None:
    gate = threading.Event()
    fut = client.submit(slow_task(gate)(1))
    with anyio.move_on_after(0.05):
        await fut
    assert not fut.done()  # a waiter giving up does not cancel the run
    gate.set()
    assert await fut == 1

    gate2 = threading.Event()
    started = threading.Event()

    @dagrt.task
    def blocked() -> int:
        started.set()
        gate2.wait(10)
        return 1

    done_after: list[int] = []

    @dagrt.task
    def after(x: int) -> int:
        done_after.append(x)
        return x

    with anyio.move_on_after(0.2):
        await client.compute(after(blocked()))
    gate2.set()
    assert started.is_set()
    assert await client.compute(inc(1)) == 2
    assert done_after == []  # the run of the cancelled compute() stopped


async def test_closing_the_client_cancels_pending_runs() -> None:
    gate = threading.Event()
    async with dagrt.Client(processes=False) as client:
        fut = client.submit(slow_task(gate)(1))
    gate.set()
    assert fut.cancelled()
    with pytest.raises(ClientClosedError):
        client.submit(inc(1))
    with pytest.raises(ClientClosedError, match="closed"):
        async with client:
            pass


async def test_bad_arguments_get_clear_errors() -> None:
    client = dagrt.Client(processes=False)
    with pytest.raises(ClientClosedError, match="async with"):
        client.submit(inc(1))
    with pytest.raises(TypeError, match="redis:// URL"):
        dagrt.Client(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads"):
        dagrt.Client(processes=False, threads=0)
    with pytest.raises(ValueError, match="cannot take an address"):
        dagrt.Client("redis://localhost:1", processes=False)
    with pytest.raises(ValueError, match="n_workers"):
        dagrt.Client(processes=False, n_workers=2)
    async with dagrt.Client(processes=False) as started:
        with pytest.raises(TypeError, match="needs something to compute"):
            started.submit()
        with pytest.raises(TypeError, match="keyword arguments"):
            started.submit(inc(1), retries=3)
        with pytest.raises(TypeError, match="iterable of RunFuture"):
            await started.gather(started.submit(inc(1)))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="RunFuture objects"):
            await started.gather([1, 2])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="map"):
            started.map(5, [1])  # type: ignore[arg-type]


async def test_a_client_can_be_closed_from_another_task() -> None:
    client = dagrt.Client(processes=False)
    await client.__aenter__()
    assert await client.compute(inc(1)) == 2
    await asyncio.create_task(client.close())
    assert "closed" in repr(client)
