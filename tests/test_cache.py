"""Cached and resumable runs, on the in-process runtime and on real workers.

A task marked ``@task(cache=...)`` keeps its output under a key made of its function's
content and its inputs; a later run with the same inputs, from any client or process,
takes the value from there, and whatever only that task needed does not run either.
A run that fails keeps what it finished: ``client.retry(future)`` (or
``compute(..., resume=True)``) runs only what did not finish and what depends on it.
Each task appends its name to a file when it runs: the file says what ran.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Pool, worker_env
from helpers import ran, what_ran

import dagrt
from dagrt import keys as K
from dagrt.cachekeys import task_keys
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run
from dagrt.storage import RedisStorage

# --------------------------------------------------------------------------- tasks


@dagrt.task
def load(log: str, n: int) -> list[int]:
    ran(log, "load")
    return list(range(n))


@dagrt.task(cache=True)
def prepare(log: str, xs: list[int]) -> list[int]:
    ran(log, "prepare")
    return [2 * x for x in xs]


@dagrt.task
def summarize(log: str, xs: list[int], fail: bool = False) -> int:
    ran(log, "summarize")
    if fail:
        raise RuntimeError("summarize failed")
    return sum(xs)


@dagrt.task
def finish(log: str, x: int, fail: bool = False) -> int:
    ran(log, "finish")
    if fail:
        raise RuntimeError("finish failed")
    return 10 * x


@dagrt.task(cache=False)
def never_cached(log: str) -> int:
    ran(log, "never_cached")
    return 1


@dagrt.task
def plain(log: str, x: int) -> int:
    ran(log, "plain")
    return x + 1


def pipeline(log: str, n: int = 5, fail: bool = False) -> dagrt.Node:
    return summarize(log, prepare(log, load(log, n)), fail)


# --------------------------------------------------------------------------- caching


async def test_a_cached_task_runs_once_and_what_only_it_needed_not_again(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    log = tmp_path / "ran"
    assert await any_client.compute(pipeline(str(log))) == 20
    assert what_ran(log) == ["load", "prepare", "summarize"]
    assert await any_client.compute(pipeline(str(log))) == 20
    assert what_ran(log) == ["summarize"]  # prepare from the cache; load not needed


async def test_other_inputs_are_another_key(any_client: dagrt.Client, tmp_path: Path) -> None:
    log = tmp_path / "ran"
    await any_client.compute(pipeline(str(log), 5))
    what_ran(log)
    assert await any_client.compute(pipeline(str(log), 6)) == 30
    assert what_ran(log) == ["load", "prepare", "summarize"]


async def test_a_run_whose_outputs_are_all_in_the_cache_runs_nothing(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    log = tmp_path / "ran"
    first = prepare(str(log), load(str(log), 3))
    assert await any_client.compute(first) == [0, 2, 4]
    what_ran(log)
    assert await any_client.compute(prepare(str(log), load(str(log), 3))) == [0, 2, 4]
    assert what_ran(log) == []


async def test_the_cache_is_shared_by_clients(tmp_path: Path) -> None:
    """In-process, entries live in this process's memory: a later client finds them."""
    log = tmp_path / "ran"
    async with dagrt.Client(processes=False) as client:
        await client.compute(pipeline(str(log)))
    what_ran(log)
    async with dagrt.Client(processes=False) as client:
        await client.compute(pipeline(str(log)))
    assert what_ran(log) == ["summarize"]


async def test_a_policy_caches_every_task_but_those_that_say_no(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    async with dagrt.Client(processes=False, cache=True) as client:
        for _ in range(2):
            assert await client.compute([plain(str(log), 1), never_cached(str(log))]) == [2, 1]
    assert sorted(what_ran(log)) == ["never_cached", "never_cached", "plain"]


async def test_read_false_runs_cached_tasks_again(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    async with dagrt.Client(processes=False, cache={"read": False}) as client:
        await client.compute(pipeline(str(log)))
        await client.compute(pipeline(str(log)))
    assert what_ran(log) == ["load", "prepare", "summarize"] * 2


async def test_an_entry_that_expired_or_was_evicted_is_computed_again(
    pool: Pool, tmp_path: Path
) -> None:
    """A task's cache=<seconds> is its entry's time to live; an entry gone (expired,
    evicted by the server's memory policy, deleted) is a miss: the task runs."""
    log = tmp_path / "ran"
    short = prepare.options(cache=30.0)
    async with dagrt.Client(pool.url) as client:
        node = summarize(str(log), short(str(log), load(str(log), 4)))
        assert await client.compute(node) == 12
        what_ran(log)
        key = task_keys(dagrt.DAG(node), [1])[1]  # prepare's (and its parent's)
        storage = RedisStorage(pool.url)
        try:
            ttl = await storage.attl(K.cache_entry(key))
            assert ttl is not None
            assert 0 < ttl <= 30
            await storage.adelete(K.cache_entry(key))
        finally:
            await storage.aclose()
        assert await client.compute(node) == 12
    assert what_ran(log) == ["load", "prepare", "summarize"]


async def test_another_process_finds_the_entries(pool: Pool, tmp_path: Path) -> None:
    """The key is the same in another interpreter (another hash seed): a script run
    after this client's run takes prepare's value from the cache."""
    log = tmp_path / "ran"
    async with dagrt.Client(pool.url) as client:
        assert await client.compute(pipeline(str(log))) == 20
    what_ran(log)
    script = (
        "import dagrt, test_cache, sys;"
        f"print(dagrt.compute(test_cache.pipeline({str(log)!r}), address={pool.url!r}))"
    )
    out = await anyio.run_process(
        [sys.executable, "-c", script], env=worker_env(PYTHONHASHSEED="12345")
    )
    assert out.stdout.decode().split()[-1] == "20"
    assert what_ran(log) == ["summarize"]


@dagrt.task
def fan_of_prepared(log: str, n: int) -> Any:
    """A fan-out known when it runs, of cached tasks (dagrt.expand)."""
    return [prepare(log, load(log, i)) for i in range(n)]


async def test_cached_tasks_in_a_returned_graph_are_cached_too(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    log = tmp_path / "ran"
    expected = [[2 * x for x in range(i)] for i in range(3)]
    assert await any_client.compute(fan_of_prepared(str(log), 3)) == expected
    assert sorted(what_ran(log)) == ["load"] * 3 + ["prepare"] * 3
    assert await any_client.compute(fan_of_prepared(str(log), 3)) == expected
    assert what_ran(log) == []  # the graph's outputs were all in the cache


@dagrt.task
def cheap(log: str, xs: list[int]) -> int:
    ran(log, "cheap")
    return len(xs)


async def test_a_task_found_is_not_run_again_when_its_parent_runs(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    """``load`` feeds a task found in the cache and one that runs: it runs, and its
    completion does not make the one found ready again (nor end the run early)."""
    log = tmp_path / "ran"
    xs = load(str(log), 4)
    assert await any_client.compute([cheap(str(log), xs), prepare(str(log), xs)]) == [
        4,
        [0, 2, 4, 6],
    ]
    assert sorted(what_ran(log)) == ["cheap", "load", "prepare"]
    xs = load(str(log), 4)
    assert await any_client.compute([cheap(str(log), xs), prepare(str(log), xs)]) == [
        4,
        [0, 2, 4, 6],
    ]
    assert sorted(what_ran(log)) == ["cheap", "load"]


class Model:
    def __init__(self, w: int) -> None:
        self.w = w

    def predict(self, x: int) -> int:
        return self.w * x


def test_keys_follow_what_a_task_computes() -> None:
    """A bound method's object and a function among the arguments are part of the key."""

    def key(node: dagrt.Node) -> str:
        return task_keys(dagrt.DAG(node), [0])[0]

    assert key(dagrt.task(Model(1).predict)(3)) != key(dagrt.task(Model(2).predict)(3))
    assert key(dagrt.task(Model(1).predict)(3)) == key(dagrt.task(Model(1).predict)(3))

    @dagrt.task
    def apply(f: Any, x: int) -> int:
        return f(x)

    def step(x: int) -> int:
        return x + 1

    before = key(apply(step, 3))

    def step(x: int) -> int:
        return x + 2

    assert key(apply(step, 3)) != before
    # installed code (the standard library, site-packages) is named, not followed
    import json

    assert key(apply(json.dumps, 3)) != key(apply(json.loads, 3))
    assert key(apply(json.dumps, 3)) == key(apply(json.dumps, 3))
    from dagrt.cachekeys import _library

    assert _library("json")
    assert _library("pytest")
    assert not _library(__name__)  # (the tests' own code: by content, as above)


@dagrt.task
def kind_of(x: Any) -> str:
    return type(x).__name__


@dagrt.task
def fails_on(x: Any) -> int:
    raise ValueError("the task's own error")


async def test_keeping_a_failed_run_never_hides_its_error() -> None:
    """The failed task's parent has an argument that does not pickle: its output
    cannot be kept (no key), and the run still fails with the task's own error."""
    import threading

    async with dagrt.Client(processes=False) as client:
        with pytest.raises(dagrt.TaskError, match="the task's own error"):
            await client.compute(fails_on(kind_of(threading.Lock())))


# --------------------------------------------------------------------------- resuming


async def test_a_failed_run_resumes_where_it_stopped(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    """The run fails at its last task; retried, only that task runs. Resumed with
    another input for it (``compute(..., resume=True)``, as another process would),
    only it runs again too."""
    log = tmp_path / "ran"
    node = finish(str(log), plain(str(log), 1), True)
    fut = any_client.submit(node)
    with pytest.raises(dagrt.TaskError, match="finish failed"):
        await fut
    assert what_ran(log) == ["plain", "finish"]
    again = any_client.retry(fut)
    with pytest.raises(dagrt.TaskError, match="finish failed"):
        await again
    assert what_ran(log) == ["finish"]
    fixed = finish(str(log), plain(str(log), 1), False)
    assert await any_client.compute(fixed, resume=True) == 20
    assert what_ran(log) == ["finish"]
    # a resumed run whose inputs changed: the changed task and what depends on it run
    changed = finish(str(log), plain(str(log), 2), False)
    assert await any_client.compute(changed, resume=True) == 30
    assert what_ran(log) == ["plain", "finish"]


async def test_without_keep_failed_a_retry_runs_everything(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    async with dagrt.Client(processes=False, cache={"keep_failed": False}) as client:
        fut = client.submit(finish(str(log), plain(str(log), 1), True))
        with pytest.raises(dagrt.TaskError):
            await fut
        with pytest.raises(dagrt.TaskError):
            await client.retry(fut)
    assert what_ran(log) == ["plain", "finish"] * 2


async def test_the_log_counts_the_tasks_the_cache_spared(pool: Pool, tmp_path: Path) -> None:
    log = tmp_path / "ran"
    async with dagrt.Client(pool.url) as client:
        await client.compute(pipeline(str(log)))
        fut = client.submit(pipeline(str(log)))
        assert await fut == 20
    events = await aread_run(pool.url, fut.run_id, wait=10)  # (whole: 1 ran + 2 spared)
    a = analyze(events)
    assert (a.from_cache, a.skipped) == (1, 1)


# --------------------------------------------------------------------------- bad input


async def test_bad_cache_options_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache must be"):
        dagrt.task(cache=-1)(lambda: 1)
    with pytest.raises(TypeError, match=r"cache must be a dagrt\.CacheOptions"):
        dagrt.Client(processes=False, cache="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad cache options"):
        dagrt.Client(processes=False, cache={"ttl": 0})
    async with dagrt.Client(processes=False) as client:
        with pytest.raises(TypeError, match="resume must be"):
            await client.compute(plain(str(tmp_path / "x"), 1), resume="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="retry"):
            client.retry("a run")  # type: ignore[arg-type]


@dagrt.task(cache=True)
def takes_anything(x: Any) -> str:
    return type(x).__name__


async def test_an_argument_that_cannot_be_hashed_names_the_task() -> None:
    import threading

    async with dagrt.Client(processes=False) as client:
        with pytest.raises(dagrt.SerializationError, match="cache key of task takes_anything"):
            await client.compute(takes_anything(threading.Lock()))
        # (without cache it runs: the lock never leaves this process)
        assert await client.compute(takes_anything.options(cache=False)(threading.Lock()))
