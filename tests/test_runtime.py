"""What every runtime must do: the same results and errors, whatever runs the DAG.

Each test takes ``any_client``, which is parametrized over the runtimes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import Signals, add, collect, gate, inc, mark, total

import dagrt
from dagrt import DAG, TaskError


@dagrt.task
def nothing(*_: Any) -> None:
    return None


@dagrt.task
def boom(x: Any) -> int:
    raise ValueError(f"boom on {x}")


@dagrt.task
async def async_inc(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@dagrt.task
def keyword_only(*, a: int, b: int = 2) -> int:
    return a * 10 + b


async def test_the_issue_example(any_client: dagrt.Client) -> None:
    a = add(1, 2)
    b = total({"left": [a, add(a, 1)], "right": [(a,)]}, scale=a)
    assert await any_client.compute(b) == 30
    futs = [any_client.submit(x) for x in (a, b)]
    assert await any_client.gather(futs) == [3, 30]
    seen = [fut async for fut in any_client.as_completed(futs)]
    assert sorted(f.run_id for f in seen) == sorted(f.run_id for f in futs)
    assert all(f.done() and f.status == "finished" for f in futs)


async def test_what_compute_returns(any_client: dagrt.Client) -> None:
    a, b = inc(1), inc(10)
    assert await any_client.compute(a) == 2
    assert await any_client.compute(DAG(a)) == 2
    assert await any_client.compute(DAG(a, b)) == (2, 11)
    assert await any_client.compute(a, b) == (2, 11)
    assert await any_client.compute([a, {"k": (b, 5)}, "c"]) == [2, {"k": (11, 5)}, "c"]
    assert await any_client.compute(DAG(a, b), a) == ((2, 11), 2)
    assert await any_client.compute(7) == 7  # constants need no run
    assert await any_client.compute(nothing(a)) is None
    assert await any_client.compute(keyword_only(a=a)) == 22
    assert await any_client.compute(keyword_only(b=a, a=1)) == 12
    assert await any_client.compute(add(2**70, inc(-1))) == 2**70  # beyond 64-bit ints


async def test_async_tasks_are_awaited(any_client: dagrt.Client) -> None:
    x = async_inc(inc(async_inc(0)))
    assert await any_client.compute(add(x, async_inc(x))) == 3 + 4


async def test_a_diamond_and_a_chain(any_client: dagrt.Client) -> None:
    top = inc(0)
    assert await any_client.compute(add(inc(top), add(top, 10))) == 2 + 11
    node = inc(0)
    for _ in range(499):
        node = inc(node)
    assert await any_client.compute(node) == 500


async def test_wide_fan_out_then_fan_in(any_client: dagrt.Client) -> None:
    root = inc(0)
    leaves = [add(root, i) for i in range(1_000)]
    assert await any_client.compute(collect(*leaves)) == [1 + i for i in range(1_000)]


async def test_a_task_error_names_the_task_and_carries_the_traceback(
    any_client: dagrt.Client,
) -> None:
    bad = boom(inc(1))
    with pytest.raises(TaskError) as info:
        await any_client.compute(inc(bad))
    err = info.value
    assert err.task == bad.key
    assert err.name == "boom"
    assert err.exc_type == "ValueError"
    assert err.message == "boom on 2"
    assert "raise ValueError" in err.remote_traceback
    assert "test_runtime.py" in err.remote_traceback
    assert "boom on 2" in str(err)
    assert bad.key in str(err)
    if err.exception is not None:
        assert type(err.exception) is ValueError


async def test_a_traceback_starts_at_the_task_and_shows_its_source(
    any_client: dagrt.Client,
) -> None:
    """A function defined inline travels by value and still shows file, line and code."""

    @dagrt.task
    def divide(x: int) -> float:
        return x / (x - x)  # the failing line

    with pytest.raises(TaskError) as info:
        await any_client.compute(divide(inc(1)))
    tb = info.value.remote_traceback
    frames = [line for line in tb.splitlines() if line.lstrip().startswith("File ")]
    assert "test_runtime.py" in frames[0]
    assert "in divide" in frames[0]
    assert "return x / (x - x)  # the failing line" in tb
    assert "<dynamic-code>" not in tb
    assert "anyio" not in tb
    assert "dagrt/workers" not in tb


async def test_after_a_failure_the_rest_of_the_run_stops(
    any_client: dagrt.Client, signals: Signals
) -> None:
    bad = boom(0)
    after = mark(signals, "after", bad)
    with pytest.raises(TaskError):
        await any_client.compute(mark(signals, "last", after))
    assert signals.marks() == []


@dagrt.task(retries=2)
def flaky(signals: Signals, fails: int, x: int) -> int:
    """Fails its first ``fails`` attempts (counted across processes)."""
    with signals._redis() as r:
        attempt = r.incr(f"{signals.prefix}:attempts")
    if attempt <= fails:
        raise OSError(f"transient failure {attempt}")
    return x * 2


async def test_retries_rerun_a_failing_task(any_client: dagrt.Client, signals: Signals) -> None:
    assert await any_client.compute(flaky(signals, 2, 21)) == 42
    with signals._redis() as r:
        assert int(r.get(f"{signals.prefix}:attempts")) == 3
        r.delete(f"{signals.prefix}:attempts")
    with pytest.raises(TaskError) as info:
        await any_client.compute(flaky.options(retries=1)(signals, 5, 1))
    assert info.value.attempt == 2
    assert info.value.exc_type == "OSError"
    assert info.value.message == "transient failure 2"


async def test_cancelling_a_run(any_client: dagrt.Client, signals: Signals) -> None:
    fut = any_client.submit(mark(signals, "after", gate(signals, "wait", 1)))
    await signals.started("wait")
    assert fut.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await fut
    assert fut.cancelled()
    assert fut.status == "cancelled"
    assert fut.cancel() is False  # already over
    await signals.release("wait")
    # the client still works, and the cancelled run's child never runs
    assert await any_client.compute(inc(1)) == 2
    assert signals.marks() == []


async def test_sync_tasks_do_not_block_the_event_loop(client: dagrt.Client) -> None:
    released = threading.Event()

    @dagrt.task
    def blocking() -> str:
        released.wait(10)
        return "ran in a thread" if released.is_set() else "timed out"

    fut = client.submit(blocking())
    await asyncio.sleep(0.05)  # the loop runs while the task blocks its thread
    released.set()
    assert await fut == "ran in a thread"


async def test_fifty_runs_at_once_some_failing(any_client: dagrt.Client) -> None:
    futs = []
    for i in range(50):
        base = add(i, i)
        node = boom(base) if i % 7 == 3 else add(inc(base), base)
        futs.append(any_client.submit(node))
    results = await any_client.gather(futs, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 7 == 3:
            assert isinstance(result, TaskError)
            assert result.message == f"boom on {2 * i}"
        else:
            assert result == 4 * i + 1


async def test_every_task_runs_exactly_once_across_concurrent_runs(
    any_client: dagrt.Client, signals: Signals
) -> None:
    """Shared counters see each task once, with many runs on the pool at a time."""
    futs = []
    for run in range(10):
        layer = [mark(signals, f"{run}:{i}") for i in range(30)]
        layer2 = [
            mark(signals, f"{run}:{30 + i}", layer[i], layer[(i + 1) % 30]) for i in range(30)
        ]
        futs.append(any_client.submit(collect(*layer, *layer2)))
    results = await any_client.gather(futs)
    for run, names in enumerate(results):
        assert names == [f"{run}:{i}" for i in range(60)]
    assert sorted(signals.marks()) == sorted(f"{r}:{i}" for r in range(10) for i in range(60))


async def test_a_10000_deep_chain_and_a_10000_wide_fan_out_run(any_client: dagrt.Client) -> None:
    node = inc(0)
    for _ in range(9_999):
        node = inc(node)
    assert await any_client.compute(node) == 10_000
    root = inc(0)
    assert await any_client.compute(collect(*[add(root, i) for i in range(10_000)])) == [
        1 + i for i in range(10_000)
    ]


@dagrt.task
def scaled(a: Any, by: float) -> Any:
    return {"a": a * by, "first": float(a.flat[0]) * by}


@dagrt.task
def stacked(*parts: Any) -> Any:
    import numpy as np

    return np.vstack([p["a"] for p in parts])


async def test_large_arrays_in_arguments_and_results_arrive_intact(
    any_client: dagrt.Client,
) -> None:
    """Megabytes of numpy data as a task's argument (stored apart, by content, and
    shared by the tasks that take it) and as results (written in pieces, never
    joined into one frame) come out equal, in every runtime."""
    import numpy as np

    base = np.arange(600_000, dtype=np.float64).reshape(600, 1000)  # 4.8 MB
    parts = [scaled(base, k) for k in (1.0, 2.0, 3.0)]
    out = await any_client.compute(stacked(*parts))
    assert out.shape == (1800, 1000)
    assert np.array_equal(out, np.vstack([base, base * 2, base * 3]))
    out[0, 0] = -1.0  # results are the caller's own, writable arrays
    assert base[0, 0] == 0.0
