"""Task timeouts and run timeouts, on the in-process runtime and on real workers.

``@task(timeout=...)`` (or ``Client(task_timeout=...)`` for the task functions that say
nothing) bounds one call: past it the attempt fails with ``TaskTimeout``, is retried while
retries are left, and the run fails with ``TaskTimeoutError`` (a ``TaskError`` and a
``TimeoutError``). An async task is cancelled; a sync task's thread runs on, its result
dropped. ``compute(..., timeout=...)`` bounds a whole run and cancels it.

Runs on workers use a private pool whose workers have four task threads: the threads
that timed-out calls leave running stay taken, and a pool shared with other tests must
not lose a worker to them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Pool

import dagrt
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run
from dagrt.metrics.report import write_report
from dagrt.storage import RedisStorage


@pytest.fixture(params=["in-process", "cluster"])
async def any_client(
    request: pytest.FixtureRequest, pool_factory: Any
) -> AsyncIterator[dagrt.Client]:
    if request.param == "in-process":
        async with dagrt.Client(processes=False) as c:
            yield c
    else:
        async with dagrt.Client(pool_factory(1, "--threads", "4").url) as c:
            yield c


@dagrt.task(timeout=0.3)
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@dagrt.task
def plain_sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@dagrt.task(timeout=0.3, retries=2)
def slow_first(marker: str, seconds: float) -> int:
    """Slow on its first attempt (the marker file does not exist yet), fast after."""
    path = Path(marker)
    first = not path.exists()
    path.write_text("x")
    if first:
        time.sleep(seconds)
    return 7


@dagrt.task(timeout=0.3)
async def async_sleepy(marker: str, seconds: float) -> float:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")
        raise
    return seconds


async def test_a_task_past_its_timeout_fails_with_task_timeout_error(
    any_client: dagrt.Client,
) -> None:
    started = time.monotonic()
    with pytest.raises(dagrt.TaskTimeoutError, match=r"longer than its timeout of 0\.3 s") as e:
        await any_client.compute(sleepy(3.0))
    assert time.monotonic() - started < 2.5  # (not the 3 s the call takes)
    assert isinstance(e.value, dagrt.TaskError)
    assert isinstance(e.value, TimeoutError)
    assert e.value.exc_type == "dagrt.TaskTimeout"
    assert e.value.exc_type == dagrt.exceptions.exception_type_name(dagrt.TaskTimeout)
    # a task within its time is not touched
    assert await any_client.compute(sleepy(0.01)) == 0.01


async def test_a_timed_out_attempt_is_retried(any_client: dagrt.Client, tmp_path: Path) -> None:
    assert await any_client.compute(slow_first(str(tmp_path / "m"), 3.0)) == 7


async def test_an_async_task_past_its_timeout_is_cancelled(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    marker = tmp_path / "m"
    with pytest.raises(dagrt.TaskTimeoutError):
        await any_client.compute(async_sleepy(str(marker), 5.0))
    with anyio.fail_after(10):
        while not marker.exists():  # noqa: ASYNC110 (a file the task writes)
            await anyio.sleep(0.02)
    assert marker.read_text() == "cancelled"


@pytest.mark.parametrize("processes", [False, True])
async def test_the_clients_task_timeout_applies_where_a_task_says_nothing(
    processes: bool, pool_factory: Any
) -> None:
    url = pool_factory(1, "--threads", "4").url if processes else None
    options: dict[str, Any] = {"processes": False} if not processes else {}
    async with dagrt.Client(url, task_timeout=0.3, **options) as client:
        with pytest.raises(dagrt.TaskTimeoutError, match=r"0\.3 s"):
            await client.compute(plain_sleepy(3.0))
        # a task function's own timeout wins
        assert await client.compute(plain_sleepy.options(timeout=10)(0.5)) == 0.5


async def test_a_run_past_its_timeout_is_cancelled(any_client: dagrt.Client) -> None:
    started = time.monotonic()
    with pytest.raises(dagrt.RunTimeoutError, match=r"longer than its timeout of 0\.5 s"):
        await any_client.compute(plain_sleepy(3.0), timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert await any_client.compute(plain_sleepy(0.01), timeout=30) == 0.01  # (still usable)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1", True])
def test_a_timeout_must_be_positive_seconds(bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        dagrt.task(timeout=bad)(lambda: None)
    with pytest.raises(ValueError, match="task_timeout must be a number of seconds > 0"):
        dagrt.Client(processes=False, task_timeout=bad)


async def test_a_bad_run_timeout_is_refused_before_the_run_starts() -> None:
    async with dagrt.Client(processes=False) as client:
        with pytest.raises(ValueError, match="timeout must be"):
            await client.compute(plain_sleepy(0.0), timeout=-1)


async def test_a_worker_whose_threads_are_all_stuck_exits_for_its_pool_to_replace_it(
    pool_factory: Any,
) -> None:
    """One task thread, a sync call past its timeout that sleeps on: the run fails at
    once with TaskTimeoutError; the thread stays taken, so the worker can run nothing
    more: it stops and exits with code 3 (LocalCluster and compose start another)."""
    pool: Pool = pool_factory(1, "--threads", "1")
    async with dagrt.Client(pool.url) as client:
        with pytest.raises(dagrt.TaskTimeoutError):
            await client.compute(sleepy(60.0))
    [worker] = pool.workers
    with anyio.fail_after(30):
        while worker.poll() is None:  # noqa: ASYNC110 (a process: nothing to wait on)
            await anyio.sleep(0.05)
    assert worker.returncode == 3


async def test_a_stuck_thread_is_counted_busy_and_the_others_go_on(pool_factory: Any) -> None:
    """Two task threads, one stuck past its timeout: the worker goes on with the other
    (it does not exit), and its stuck call never ran twice."""
    pool: Pool = pool_factory(1, "--threads", "2")
    async with dagrt.Client(pool.url) as client:
        with pytest.raises(dagrt.TaskTimeoutError):
            await client.compute(sleepy(8.0))
        assert await client.compute([plain_sleepy(0.05) for _ in range(4)]) == [0.05] * 4
    assert pool.workers[0].poll() is None


async def test_the_log_and_the_report_say_which_attempts_ran_past_their_timeout(
    pool_factory: Any, tmp_path: Path
) -> None:
    """A task slow on its first attempt and retried, another past its time on every
    attempt: the log's analysis counts the attempts past their timeout, and the report
    shows them."""
    pool: Pool = pool_factory(1, "--threads", "4")
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(slow_first(str(tmp_path / "m"), 3.0), sleepy.options(retries=1)(3.0))
        with pytest.raises(dagrt.TaskTimeoutError):
            await fut
    storage = RedisStorage(pool.url)
    try:
        events = await aread_run(storage, fut.run_id, wait=10)
        assert analyze(events).timed_out == {"retried": 2, "final": 1}
        html = write_report(storage, fut.run_id, tmp_path / "reports", wait=10).read_text()
    finally:
        await storage.aclose()
    assert "attempts past their timeout</th><td>retried 2, final 1" in html


def test_the_sync_helper_bounds_a_run_too() -> None:
    with pytest.raises(dagrt.RunTimeoutError):
        dagrt.compute(plain_sleepy(2.0), processes=False, timeout=0.2)
    assert dagrt.compute(plain_sleepy(0.0), processes=False, timeout=30) == 0.0
