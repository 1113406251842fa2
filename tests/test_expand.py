"""Tasks that add tasks: a task returns a graph, which runs, and its result is the task's.

A task function may return nodes (a node, a DAG, or lists, tuples, dicts and sets of
them and of constants): the graph runs as a sub-run, and the task's value, for its
children and for the client, is the same structure with the values in place. Neither
runtime holds a thread while the graph runs; on workers nobody waits at all: the
sub-run's end completes the task, on whichever worker reads the entry it leaves. A
failure in the graph fails the task with the original exception; a run that ends
stops its graphs; crashes at either end lose nothing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Pool

import dagrt
from dagrt import keys as K
from dagrt import submission
from dagrt.keys import sub_run_id
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run
from dagrt.metrics.report import write_report
from dagrt.storage import InMemoryStorage, RedisStorage
from dagrt.storage import commands as C

# --------------------------------------------------------------------------- tasks


@dagrt.task
def square(x: int) -> int:
    return x * x


@dagrt.task
def total(xs: list[int]) -> int:
    return sum(xs)


@dagrt.task
def split(n: int) -> Any:
    """A fan-out whose width is the task's input: known only when it runs."""
    return total([square(i) for i in range(n)])


@dagrt.task
def plus_one(x: int) -> int:
    return x + 1


@dagrt.task
def shaped(n: int) -> Any:
    return {"squares": [square(i) for i in range(n)], "pair": (total([1, 2]), "const"), "n": n}


@dagrt.task
def fib(n: int) -> Any:
    if n < 2:
        return n
    return add(fib(n - 1), fib(n - 2))


@dagrt.task
def add(a: int, b: int) -> int:
    return a + b


@dagrt.task
def fragile(i: int) -> int:
    if i == 2:
        raise ValueError(f"chunk {i} is bad")
    return i


@dagrt.task(retries=2, retry_delay=0)
def fans_out_to_a_failure(n: int, log: str) -> Any:
    with open(log, "a") as f:
        f.write("called\n")
    return [fragile(i) for i in range(n)]


class Box:
    def __init__(self, node: Any) -> None:
        self.node = node


@dagrt.task
def boxed() -> Box:
    return Box(square(3))


@dagrt.task
def slow_square(x: int, marker: str, seconds: float) -> int:
    Path(marker).write_text("started")
    time.sleep(seconds)
    return x * x


@dagrt.task
def fans_out_slowly(marker: str, seconds: float) -> Any:
    return total([slow_square(i, marker, seconds) for i in range(3)])


@dagrt.task
def wide(n: int) -> Any:
    return [split(i) for i in range(n)]


def squares_up_to(n: int) -> int:
    return sum(i * i for i in range(n))


# --------------------------------------------------------------------------- helpers


def run_keys(url: str) -> list[str]:
    """The keys of runs on the server (their end markers aside)."""
    storage = RedisStorage(url)
    try:
        return sorted(k for k in storage.scan_iter("dagrt:{*") if not k.endswith(":end"))
    finally:
        storage.close()


# --------------------------------------------------------------------------- behaviour


async def test_a_task_fans_out_to_a_width_known_only_when_it_runs(
    any_client: dagrt.Client,
) -> None:
    assert await any_client.compute(split(10)) == squares_up_to(10)
    assert await any_client.compute(split(0)) == 0
    # its children see the graph's value, like any task's
    assert await any_client.compute(plus_one(split(4))) == squares_up_to(4) + 1


async def test_the_returned_tree_comes_back_with_values_in_place(
    any_client: dagrt.Client,
) -> None:
    assert await any_client.compute(shaped(3)) == {
        "squares": [0, 1, 4],
        "pair": (3, "const"),
        "n": 3,
    }


async def test_graphs_returned_within_graphs_run_to_the_end(any_client: dagrt.Client) -> None:
    """Recursion: each call returns a graph of further calls (hundreds of sub-runs)."""
    assert await any_client.compute(fib(12)) == 144
    assert await any_client.compute(wide(4)) == [squares_up_to(i) for i in range(4)]


async def test_a_failure_in_the_graph_fails_the_task_with_the_original_exception(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    """The task that returned the graph fails with what its failing task raised (the
    traceback names that task); its own retries cover its call, which succeeded: it is
    not called again."""
    log = tmp_path / "calls"
    with pytest.raises(dagrt.TaskError) as caught:
        await any_client.compute(fans_out_to_a_failure(4, str(log)))
    err = caught.value
    assert err.name == "fans_out_to_a_failure"
    assert err.exc_type == "ValueError"
    assert isinstance(err.exception, ValueError)
    assert "chunk 2 is bad" in str(err)
    assert "(fragile) of the graph it returned" in err.remote_traceback
    assert log.read_text() == "called\n"


async def test_nodes_inside_other_objects_are_returned_as_they_are(
    any_client: dagrt.Client,
) -> None:
    """Only nodes in the trees dagrt walks run; elsewhere they are values like any."""
    box = await any_client.compute(boxed())
    assert isinstance(box, Box)
    assert isinstance(box.node, dagrt.Node)
    assert box.node.name == "square"


async def test_each_graph_is_logged_as_a_run_whose_parent_is_the_task() -> None:
    log = InMemoryStorage()
    async with dagrt.Client(processes=False, metrics=log) as client:
        fut = client.submit(split(3))
        assert await fut == 5
    await _graph_logged(log, fut, placed=None)


async def test_on_workers_the_log_says_the_task_completed_by_its_graph(
    pool: Pool, tmp_path: Path
) -> None:
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(split(3))
        assert await fut == 5
    await _graph_logged(pool.url, fut, placed="expanded")
    storage = RedisStorage(pool.url)
    try:
        html = write_report(storage, fut.run_id, tmp_path / "reports", wait=10).read_text()
    finally:
        await storage.aclose()
    assert f"graphs its tasks returned</th><td>1: {sub_run_id(fut.run_id, 0)}" in html


async def _graph_logged(storage: Any, fut: dagrt.RunFuture, placed: str | None) -> None:
    sub = sub_run_id(fut.run_id, 0)
    events = await aread_run(storage, sub, wait=10)
    [submitted] = [e for e in events if e.kind == "run-submitted"]
    assert (submitted.parent_run, submitted.n_tasks) == (fut.run_id, 4)
    assert submitted.parent_task.startswith("split-")
    assert [e.status for e in events if e.kind == "run-finished"] == ["finished"]
    assert sorted(e.name for e in events if e.kind == "task-finished") == ["square"] * 3 + ["total"]
    assert analyze(events).parent == (fut.run_id, submitted.parent_task)
    if placed is not None:
        parent = await aread_run(storage, fut.run_id, wait=10)
        [done] = [e for e in parent if e.kind == "task-finished"]
        assert (done.name, done.placed) == ("split", placed)
        assert analyze(parent).graphs == [sub]


@dagrt.task
def returns_what_cannot_travel() -> Any:
    import threading

    return square(threading.Lock())  # type: ignore[arg-type]


async def test_a_graph_that_cannot_be_sent_fails_its_task_with_the_cause(pool: Pool) -> None:
    async with dagrt.Client(pool.url) as client:
        with pytest.raises(dagrt.TaskError) as caught:
            await client.compute(returns_what_cannot_travel())
    assert caught.value.name == "returns_what_cannot_travel"
    assert "lock" in str(caught.value).lower()
    assert run_keys(pool.url) == []


def test_a_sub_run_id_is_derived_from_the_task_and_stays_valid() -> None:
    assert sub_run_id("20261204-120000-000-abcdef", 17) == "20261204-120000-000-abcdef.t17"
    deep = "r" * 120
    a, b = sub_run_id(deep, 1), sub_run_id(deep, 2)
    assert K.valid_run_id(a)
    assert K.valid_run_id(b)
    assert a != b


# --------------------------------------------------------------------------- on workers


async def test_a_waiting_task_holds_no_slot(pool_factory: Any) -> None:
    """One worker, one thread, two entries in flight at most: tasks waiting for their
    graphs would fill both and starve the graphs' tasks. Nothing waits; all finish."""
    pool: Pool = pool_factory(1, "--threads", "1", "--concurrency", "2")
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(60):
            assert await client.compute(wide(6)) == [squares_up_to(i) for i in range(6)]
    assert run_keys(pool.url) == []


@pytest.mark.parametrize("point", ["after_expand:split", "after_resume:split"])
async def test_a_worker_killed_at_either_end_of_a_graph_loses_nothing(
    pool_factory: Any, tmp_path: Path, point: str
) -> None:
    """Killed after submitting the graph (its entry not let go of: the task is taken
    over, called again, and finds its graph going), or after completing the task (the
    graph not deleted yet: the run's end deletes it): the right value, no key left."""
    from conftest import worker_env

    env = worker_env(DAGRT_FAILPOINTS=point, DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(60):
            assert await client.compute(plus_one(split(6))) == squares_up_to(6) + 1
    assert len(list(tmp_path.glob("dagrt-failpoint-*"))) == 1
    assert run_keys(pool.url) == []


async def test_a_worker_killed_while_the_graph_runs_loses_nothing(
    pool_factory: Any, tmp_path: Path
) -> None:
    from conftest import worker_env

    env = worker_env(DAGRT_FAILPOINTS="before_run:slow_square", DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(60):
            marker = str(tmp_path / "started")
            assert await client.compute(fans_out_slowly(marker, 0.1)) == 5
    assert len(list(tmp_path.glob("dagrt-failpoint-*"))) == 1
    assert run_keys(pool.url) == []


async def test_cancelling_the_run_stops_and_deletes_its_graphs(
    pool_factory: Any, tmp_path: Path
) -> None:
    pool: Pool = pool_factory(1, "--threads", "4")
    marker = tmp_path / "started"
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(fans_out_slowly(str(marker), 30.0))
        with anyio.fail_after(30):
            while not marker.exists():  # noqa: ASYNC110 (the slow task said it began)
                await anyio.sleep(0.02)
        sub = K.RunKeys(sub_run_id(fut.run_id, 0))
        storage = RedisStorage(pool.url)
        try:
            assert await storage.ahget(sub.meta, "status") == b"running"
            fut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fut
            assert await storage.aget(sub.end) == b"cancelled"
        finally:
            await storage.aclose()
    assert run_keys(pool.url) == []


async def test_the_watchdog_finds_a_runs_work_in_its_graphs(server_factory: Any) -> None:
    """A task waiting for its graph has no entry of its own: the run's work is the
    sub-run's. Its entries are found (not delivered yet: no worker reads); removed,
    the run has none left, which the client's watchdog calls a stall."""
    server = server_factory()
    storage = RedisStorage(server.url)
    try:
        run_id, stream = K.new_run_id(), K.tasks_stream()
        parent = await submission.submit(storage, dagrt.DAG(split(2)), run_id)
        await storage.apipeline([C.delete([stream])])  # (taken: "running")
        sub = sub_run_id(run_id, 0)
        await submission.submit(
            storage,
            dagrt.DAG(total([square(1), square(2)])),
            sub,
            parent=submission.Parent(run_id, 0, 0.0, 0.0, 1, b""),
        )
        found = await submission.outstanding(storage, parent.keys, stream)
        assert isinstance(found, str)  # the sub-run's first root, not delivered yet
        await storage.apipeline([C.delete([stream])])
        assert await submission.outstanding(storage, parent.keys, stream) == 0
    finally:
        await storage.aclose()
