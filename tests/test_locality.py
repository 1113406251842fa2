"""Locality on workers: fan-out clustering (children of a large output run where it is).

Two workers in this process share one storage (InMemoryStorage, which runs the
scheduler's own Lua scripts, and a real server); the event log says which worker
ran each task. A crash test kills a real worker process in a clustered child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import cloudpickle
import numpy as np
import pytest
from helpers import Signals, gate, note_call
from test_data_plane import hosts_pool, sums
from test_worker import TwinClient

import dagrt
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run, arun_summary
from dagrt.storage import InMemoryStorage, RedisStorage, Storage
from dagrt.storage import commands as C
from dagrt.workers import Worker

MiB = 2**20


@dagrt.task
def make(n: int) -> Any:
    return np.arange(n, dtype=np.float64)


@dagrt.task
def part(a: Any, i: int, pause: float) -> float:
    """A slice's sum, after ``pause`` seconds (sleeping keeps it off the fast lane)."""
    time.sleep(pause)
    return float(a[i::8].sum())


@dagrt.task
def tally(*xs: float) -> float:
    return float(sum(xs))


def fan(n_children: int, pause: float, size: int = MiB) -> Any:
    """One output of ``size`` float64 values (8 bytes each), its children, one sink."""
    a = make(size)
    return tally(*[part(a, i, pause) for i in range(n_children)])


def expected(n_children: int, size: int = MiB) -> float:
    a = np.arange(size, dtype=np.float64)
    return float(sum(a[i::8].sum() for i in range(n_children)))


@contextlib.asynccontextmanager
async def two_workers(
    storage: Storage, concurrency: int, **settings: Any
) -> AsyncIterator[tuple[TwinClient, list[Worker]]]:
    """Two workers, one thread each, on one storage, and a client."""
    workers = [
        Worker(
            storage,
            **settings,
            concurrency=concurrency,
            threads=1,
            heartbeat=0.2,
            claim_timeout=2,
            graceful_timeout=1,
        )
        for _ in range(2)
    ]
    running = [asyncio.create_task(w.async_run()) for w in workers]
    for w in workers:
        await w.ready.wait()
    async with TwinClient(storage) as client:
        yield client, workers
    for w in workers:
        w.stop()
    await asyncio.gather(*running)


@pytest.fixture
async def pair(backend: Storage) -> AsyncIterator[tuple[TwinClient, list[Worker]]]:
    async with two_workers(backend, 8) as both:
        yield both


async def placement(client: TwinClient, fut: Any) -> dict[str, str]:
    """Task name -> the worker that ran it (the last to finish it)."""
    events = await aread_run(client.storage, fut.run_id, wait=10)
    return {e.key: e.worker_id for e in events if e.kind == "task-finished"}


def counts(workers: list[Worker], name: str) -> int:
    return sum(w.counts.get(name, 0) for w in workers)


async def test_children_of_a_large_output_run_on_the_worker_that_made_it(
    pair: tuple[TwinClient, list[Worker]],
) -> None:
    """An 8 MiB output with 6 children: one is kept (Wukong's "become"), five are
    claimed by the same completion, and all six run where the output is, one after
    another (no spill: waiting for the thread is allowed for 30 s here)."""
    client, workers = pair
    async with TwinClient(client.storage, locality={"spill_after_s": 30}) as c:
        fut = c.submit(fan(6, 0.02))
        assert await fut == expected(6)
        where = await placement(c, fut)
    maker = next(w for k, w in where.items() if k.startswith("make"))
    assert {w for k, w in where.items() if k.startswith("part")} == {maker}
    assert counts(workers, "claimed") == 5
    assert counts(workers, "spilled") == 0
    # the log says why each ran there, and what that kept from moving
    a = analyze(await aread_run(c.storage, fut.run_id, wait=10))
    assert a.placements["cluster"] == 5
    assert a.placements["become"] >= 1
    assert a.bytes_avoided_by["cluster"] >= 5 * 8 * MiB  # five reads of the array
    assert a.bytes_avoided_by["become"] >= 8 * MiB  # (one more, and the sink's small ones)


async def test_clustering_takes_no_more_children_than_its_cap(
    pair: tuple[TwinClient, list[Worker]],
) -> None:
    client, workers = pair
    options = dagrt.LocalityOptions(cluster_max_children=3, spill_after_s=30)
    async with TwinClient(client.storage, locality=options) as c:
        assert await c.compute(fan(6, 0.0)) == expected(6)
    assert counts(workers, "claimed") == 2  # (and one kept: three of the six)


@pytest.mark.parametrize(
    "locality",
    [
        {"enabled": False},
        {"cluster_fanout": False},
        {"keep_children": False},
        {"cluster_min_bytes": 64 * MiB},  # 8 MiB is not large then
    ],
)
async def test_options_that_turn_clustering_off(
    pair: tuple[TwinClient, list[Worker]], locality: dict[str, Any]
) -> None:
    client, workers = pair
    async with TwinClient(client.storage, locality=locality) as c:
        assert await c.compute(fan(6, 0.0)) == expected(6)
    assert counts(workers, "claimed") == 0


@pytest.mark.parametrize(
    ("run", "own", "claimed"),
    [
        (None, {"cluster_fanout": False}, 0),  # the task turns off what the run has on
        (None, False, 0),  # (False: enabled=False)
        (None, {"cluster_min_bytes": 64 * MiB}, 0),
        (None, {"cluster_max_children": 3}, 2),
        (False, {"enabled": True}, 5),  # and turns on what the run has off
        ({"cluster_fanout": False}, {"cluster_fanout": True}, 5),
        (False, {"cluster_fanout": True}, 0),  # enabled stays the run's: False
    ],
)
async def test_a_task_function_replaces_the_locality_options_it_names(
    pair: tuple[TwinClient, list[Worker]], run: Any, own: Any, claimed: int
) -> None:
    """``@task(locality=...)`` (here ``make.options(...)``) applies to what happens at
    its tasks' completion; the fields it does not name stay the run's. The other task
    functions of the run go by the run's options."""
    client, workers = pair
    own_make = make.options(locality=own)
    if isinstance(own, dict):  # (only the fields given count)
        assert own_make.locality is not None
        assert own_make.locality.model_fields_set == set(own)
    async with TwinClient(client.storage, locality=run) as c:
        a = own_make(MiB)
        fut = c.submit(tally(*[part(a, i, 0.0) for i in range(6)]))
        assert await fut == expected(6)
    assert counts(workers, "claimed") == claimed


def test_a_task_functions_locality_options_are_checked_where_they_are_written() -> None:
    with pytest.raises(ValueError, match=r"bad locality options \(fanout: Extra inputs"):
        dagrt.task(locality={"fanout": False})(tally)
    with pytest.raises(ValueError, match="cluster_max_children"):
        make.options(locality={"cluster_max_children": 1})
    with pytest.raises(TypeError, match="locality must be"):
        dagrt.task(locality="off")(tally)  # type: ignore[arg-type]
    # a task function with its own options travels by value with them
    local = dagrt.task(locality={"delayed_io": False})(lambda x: x)
    again = pickle.loads(cloudpickle.dumps(local))
    assert again.locality == local.locality
    assert again.locality.model_fields_set == {"delayed_io"}


async def test_the_in_process_runtime_accepts_a_task_functions_locality_options() -> None:
    own = make.options(locality={"enabled": False})
    async with dagrt.Client(processes=False, locality=False) as client:
        assert await client.compute(tally(part(own(16), 0, 0.0))) == float(sum(range(0, 16, 8)))


async def test_claimed_children_that_wait_too_long_go_back_to_the_pool(
    pair: tuple[TwinClient, list[Worker]],
) -> None:
    """The spill rule: with one thread and children of 0.2 s, the claimed children
    cannot start at once; after ``spill_after_s`` they are given back, and the other
    worker runs some of them. Every task finishes exactly once."""
    client, workers = pair
    async with TwinClient(client.storage, locality={"spill_after_s": 0.05}) as c:
        fut = c.submit(fan(6, 0.2))
        assert await fut == expected(6)
        events = await aread_run(c.storage, fut.run_id, wait=10)
    finished = [e.key for e in events if e.kind == "task-finished"]
    assert len(finished) == len(set(finished)) == 8
    assert counts(workers, "spilled") >= 1
    assert len({e.worker_id for e in events if e.kind == "task-finished"}) == 2
    # the array stayed in its worker's memory until then: stored once, before the first
    # child went back (the other worker read it; nothing was computed twice)
    assert counts(workers, "stored_late") == 1
    assert counts(workers, "recomputed") == 0
    assert analyze(events).bytes_by_path["upload"] >= 8 * MiB  # (the log says so too)


async def test_an_output_whose_children_all_run_on_its_worker_is_never_stored(
    pair: tuple[TwinClient, list[Worker]],
) -> None:
    """Each of the six children has the array as its one input and all run where it
    was made (one kept, five claimed): the array is never stored (keep mode L for a
    fan-out), and the log says so. With keep_outputs off for ``make`` it is stored."""
    client, workers = pair
    for own in (None, {"keep_outputs": False}):
        async with TwinClient(client.storage, locality={"spill_after_s": 30}) as c:
            a = make.options(locality=own)(MiB)
            fut = c.submit(tally(*[part(a, i, 0.0) for i in range(6)]))
            assert await fut == expected(6)
            where = await placement(c, fut)
            run = analyze(await aread_run(c.storage, fut.run_id, wait=10))
        assert len(set(ran(where, "part")) | set(ran(where, "make"))) == 1
        stored = run.bytes_by_path.get("upload", 0) + run.bytes_by_path.get("store", 0)
        if own is None:
            assert run.bytes_avoided.get("stored", 0) >= 8 * MiB
            assert stored < MiB  # (the small sums only)
        else:
            assert stored >= 8 * MiB
    assert counts(workers, "stored_late") == 0


@dagrt.task
def held(signals: Signals, a: Any, i: int) -> float:
    """A child of the large output that waits at gate ``held<i>`` until released."""
    gate.fn(signals, f"held{i}")
    return float(a[i::8].sum())


async def test_a_cancelled_run_leaves_no_claimed_child_behind(
    backend: Storage, signals: Signals
) -> None:
    """Cancelled while one claimed child runs and the others wait for the thread: none
    of those starts after the cancel, and once the workers stopped (with grace) none of
    their entries is left pending."""
    workers = [Worker(backend, threads=1, heartbeat=0.2, graceful_timeout=5) for _ in range(2)]
    running = [asyncio.create_task(w.async_run()) for w in workers]
    async with TwinClient(backend, locality={"spill_after_s": 30}) as c:
        a = make(MiB)
        fut = c.submit(tally(*[held(signals, a, i) for i in range(6)]))
        await signals.started("held0")  # the kept child runs; the claimed ones wait
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        for i in range(6):
            await signals.release(f"held{i}")
        for w in workers:
            w.stop()
        await asyncio.gather(*running)
        events = await aread_run(backend, fut.run_id, wait=10)
    started = {e.key for e in events if e.kind == "task-started" and e.key.startswith("held")}
    assert len(started) == 1
    assert counts(workers, "claimed") == 5
    stream, group = dagrt.keys.tasks_stream(), dagrt.keys.TASKS_GROUP
    assert backend.pipeline([C.Cmd(("XPENDING", stream, group, "-", "+", 100))])[0] == []


# --------------------------------------------------------------------------- crashes


@dagrt.task
def part_dies(log: str, a: Any, i: int, die: bool) -> float:
    """``part`` that records each call in ``log`` and, with ``die``, kills its worker
    the first time it runs."""
    note_call(log, str(i), die)
    time.sleep(0.05)
    return float(a[i::8].sum())


@pytest.mark.parametrize("stored", [False, True])
async def test_a_worker_killed_in_a_clustered_child(
    pool_factory: Any, tmp_path: Path, stored: bool
) -> None:
    """The worker that holds the large output dies while it runs one of its claimed
    children: their entries were pending for it, so the other worker takes them over
    after the claim timeout and the run ends right; no child is lost. The output was
    in that worker's memory only (its children are its alone): the other worker makes
    it again, once; stored (keep_outputs off for ``make``), it is read."""
    pool = pool_factory(2)
    log = str(tmp_path / "calls")
    async with dagrt.Client(pool.url, locality={"spill_after_s": 30}) as client:
        a = make.options(locality={"keep_outputs": not stored})(MiB)
        fut = client.submit(tally(*[part_dies(log, a, i, i == 3) for i in range(6)]))
        with anyio.fail_after(60):
            assert await fut == expected(6)
        storage = RedisStorage(pool.url)
        events = await aread_run(storage, fut.run_id, wait=10)
        await storage.aclose()
    calls = Path(log).read_text().split()
    assert sorted(set(calls)) == [str(i) for i in range(6)]
    assert calls.count("3") == 2  # killed once, then run by the other worker
    assert sum(1 for w in pool.workers if w.poll() is not None) == 1
    # (the killed worker's own events may be lost with it: count what the other logged)
    assert analyze(events).placements.get("recomputed", 0) == (0 if stored else 1)


# --------------------------------------------------------------------------- delayed I/O


@dagrt.task
def small(pause: float) -> float:
    time.sleep(pause)
    return 1.0


@dagrt.task
def join(*xs: Any) -> float:
    return float(sum(float(np.sum(x)) for x in xs))


@pytest.fixture
async def narrow(backend: Storage) -> AsyncIterator[tuple[TwinClient, list[Worker]]]:
    """Two workers that each take one entry at a time (so that two roots run apart)."""
    async with two_workers(backend, 1) as both:
        yield both


def ran(where: dict[str, str], prefix: str) -> list[str]:
    return [w for k, w in where.items() if k.startswith(prefix)]


async def test_a_child_waited_for_runs_where_its_large_input_is(
    narrow: tuple[TwinClient, list[Worker]],
) -> None:
    """Delayed I/O: ``make`` (8 MiB) completes while ``small`` still sleeps, so its
    worker becomes the waiter of ``join``; the completion of ``small`` on the other
    worker hands ``join`` to it (a note in its inbox), and it runs there, reading the
    large input from memory."""
    client, workers = narrow
    fut = client.submit(join(make(MiB), small(0.4)))
    assert await fut == float(np.arange(MiB, dtype=np.float64).sum()) + 1.0
    where = await placement(client, fut)
    assert ran(where, "small") != ran(where, "make")  # (one root on each worker)
    assert ran(where, "join") == ran(where, "make")
    assert (counts(workers, "held"), counts(workers, "woken")) == (1, 1)
    assert counts(workers, "hold_timeout") == 0
    a = analyze(await aread_run(client.storage, fut.run_id, wait=10))
    assert a.placements["delayed"] == 1
    assert a.holds == {"hit": 1}
    assert a.bytes_avoided_by["delayed"] >= 8 * MiB


@pytest.mark.parametrize("own", [{"delayed_io": False}, {"delayed_io_max_wait_s": 0.0}])
async def test_a_task_function_may_turn_delayed_io_off_for_its_outputs(
    narrow: tuple[TwinClient, list[Worker]], own: dict[str, Any]
) -> None:
    client, workers = narrow
    fut = client.submit(join(make.options(locality=own)(MiB), small(0.4)))
    assert await fut == float(np.arange(MiB, dtype=np.float64).sum()) + 1.0
    assert counts(workers, "held") == 0
    a = analyze(await aread_run(client.storage, fut.run_id, wait=10))
    assert "delayed" not in a.placements
    assert not a.holds


@pytest.mark.parametrize(
    ("locality", "inline"),
    [(None, True), ({"inline_inputs": False}, False), ({"inline_max_bytes": 64}, False)],
)
async def test_a_small_output_travels_inside_the_entries_of_its_children(
    narrow: tuple[TwinClient, list[Worker]], locality: Any, inline: bool
) -> None:
    """``make(16)`` (a few hundred bytes) has six children: its worker keeps one, the
    other five are dispatched with the output in their entries, so the other worker
    (one entry at a time, each child sleeps) runs those it takes without reading it;
    the same results with it off, or with a bound below the output's size."""
    client, workers = narrow
    async with TwinClient(client.storage, locality=locality) as c:
        fut = c.submit(fan(6, 0.1, size=16))
        assert await fut == expected(6, size=16)
        where = await placement(c, fut)
    maker = ran(where, "make")
    elsewhere = [w for w in ran(where, "part") if w not in maker]
    assert elsewhere  # (the other worker took some)
    # (one read there: an output with several children stays in its memory once read)
    assert (counts(workers, "inline") > 0) == inline


async def test_a_wait_that_times_out_leaves_the_child_to_its_last_parent(
    narrow: tuple[TwinClient, list[Worker]],
) -> None:
    client, workers = narrow
    async with TwinClient(client.storage, locality={"delayed_io_max_wait_s": 0.05}) as c:
        fut = c.submit(join(make(MiB), small(0.5)))
        assert await fut == float(np.arange(MiB, dtype=np.float64).sum()) + 1.0
        where = await placement(c, fut)
    assert ran(where, "join") == ran(where, "small")  # Wukong's "become", as without
    assert (counts(workers, "held"), counts(workers, "hold_timeout")) == (1, 1)
    assert counts(workers, "woken") == 0
    a = analyze(await aread_run(client.storage, fut.run_id, wait=10))
    assert a.holds == {"timeout": 1}
    assert a.placements["become"] == 1


async def test_a_wait_whose_output_left_the_cache_is_a_miss(backend: Storage) -> None:
    """The hold budget: a worker whose value cache cannot hold the 8 MiB output still
    waits for its child and runs it (reading its input from storage); the log calls
    that wait a miss, not a hit."""
    async with two_workers(backend, 1, cache_bytes=MiB) as (client, _):
        fut = client.submit(join(make(MiB), small(0.4)))
        assert await fut == float(np.arange(MiB, dtype=np.float64).sum()) + 1.0
        a = analyze(await aread_run(client.storage, fut.run_id, wait=10))
    assert a.holds == {"miss": 1}
    assert a.placements["delayed"] == 1
    assert "delayed" not in a.bytes_avoided_by  # (its input came from storage)


async def test_a_wait_longer_than_the_claim_timeout_runs_nothing_twice(
    pool_factory: Any, tmp_path: Path
) -> None:
    """Workers take over entries idle for 2 s; a worker waits 3 s for a child (its
    large parent done, the other parent sleeping): nothing it holds is an entry, so
    nothing is taken over, and every task runs once."""
    pool = pool_factory(2, "--concurrency", "1", "--threads", "1")  # a root on each
    log = str(tmp_path / "calls")
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(join(make(MiB), slow_note(log, 3.0)))
        with anyio.fail_after(60):
            assert await fut == float(np.arange(MiB, dtype=np.float64).sum()) + 1.0
        events = await aread_run(pool.url, fut.run_id, wait=30)
    finished = [e.key for e in events if e.kind == "task-finished"]
    assert len(finished) == len(set(finished)) == 3
    assert Path(log).read_text().split() == ["slow"]
    assert analyze(events).holds == {"hit": 1}


@dagrt.task
def slow_note(log: str, pause: float) -> float:
    note_call(log, "slow", False)
    time.sleep(pause)
    return 1.0


@pytest.mark.parametrize("n_large", [2, 3])
async def test_several_large_parents_of_one_child_never_wait_for_each_other(
    narrow: tuple[TwinClient, list[Worker]], n_large: int
) -> None:
    """Only the first large parent to complete waits for the child; the others
    complete at once; the child runs once, on the worker of one of them."""
    client, workers = narrow
    fut = client.submit(join(*[make(MiB) for _ in range(n_large)], small(0.2)))
    expected = n_large * float(np.arange(MiB, dtype=np.float64).sum()) + 1.0
    with anyio.fail_after(30):
        assert await fut == expected
    events = await aread_run(client.storage, fut.run_id, wait=10)
    finished = [e.key for e in events if e.kind == "task-finished"]
    assert len(finished) == len(set(finished)) == n_large + 2
    assert counts(workers, "held") <= 1


async def test_the_in_process_runtime_accepts_the_delayed_io_options() -> None:
    options = dagrt.LocalityOptions(delayed_io=True, delayed_io_max_wait_s=0.1)
    async with dagrt.Client(processes=False, locality=options) as client:
        assert await client.compute(join(make(16), small(0.0))) == float(sum(range(16))) + 1.0
    with pytest.raises(ValueError, match="delayed_io_max_wait_s"):
        dagrt.LocalityOptions.of({"delayed_io_max_wait_s": -1})


@dagrt.task
def make_and_tell(signals: Signals, n: int) -> Any:
    """``make``, that says which process ran it (on the list ``<prefix>:made``)."""
    with signals._redis() as r:
        r.rpush(f"{signals.prefix}:made", os.getpid())
    return np.arange(n, dtype=np.float64)


async def test_a_worker_killed_while_it_waits_for_a_child(
    pool_factory: Any, signals: Signals
) -> None:
    """The worker that holds the large output and waits for its child (delayed I/O)
    is SIGKILLed; the other parent is then released. The child is handed to the dead
    worker (its live key has not expired yet) or, once it has, dispatched: either way
    the other worker runs it (taking the entry over, or reading it) and the run ends
    right."""
    pool = pool_factory(2, "--concurrency", "1", "--threads", "1")  # a root on each
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(join(make_and_tell(signals, MiB), gate(signals, "held0", 1.0)))
        storage = RedisStorage(pool.url)

        def made() -> int:
            with signals._redis() as r:
                reply = r.blpop(f"{signals.prefix}:made", 30)
            assert reply is not None, "make_and_tell did not run"
            return int(reply[1])

        pid = await anyio.to_thread.run_sync(made)
        rk = dagrt.keys.RunKeys(fut.run_id)
        with anyio.fail_after(30):  # its completion registered it as the child's waiter
            last = "0-0"
            while not await storage.ahget(rk.wait, "2"):
                reply = await storage.axread({rk.progress: last}, block=5)
                last = reply[0][1][-1][0] if reply else last
        os.kill(pid, signal.SIGKILL)
        await signals.release("held0")
        with anyio.fail_after(60):
            assert await fut == float(np.arange(MiB, dtype=np.float64).sum()) + 1.0
        await storage.aclose()
    assert sum(1 for w in pool.workers if w.poll() is not None) == 1


# --------------------------------------------------------------------------- random DAGs


@dagrt.task
def node(seed: int, size: int, pause: float, *parents: Any) -> Any:
    """An array of ``size`` float64s whose value depends on every parent's, after
    ``pause`` seconds."""
    time.sleep(pause)
    value = (seed + sum(float(np.asarray(p).sum()) % 1000 for p in parents)) % 1000
    return np.full(size, value)


def random_dag(seed: int, n: int = 30) -> Any:
    """Random parents (0-3 earlier tasks, a few with many children), output sizes on
    both sides of the threshold used below (64 KiB), random pauses."""
    rng = random.Random(seed)
    nodes: list[Any] = []
    for i in range(n):
        pool = nodes[:3] * 3 + nodes  # (the first ones get more children: fan-outs)
        parents = list(dict.fromkeys(rng.sample(pool, min(len(pool), rng.randint(0, 3)))))
        size = rng.choice([1, 100, 5_000, 20_000, 300_000])  # 8 B to 2.4 MB
        pause = rng.choice([0.0, 0.0, 0.01, 0.05])
        nodes.append(node(i, size, pause, *parents))
    return sums(*nodes)  # (every task counts; the sink has many large parents)


LOCALITY_CASES = {
    "on": {"cluster_min_bytes": 64 * 1024, "delayed_io_max_wait_s": 0.3},
    "spill at once": {"cluster_min_bytes": 64 * 1024, "spill_after_s": 0.0},
    "off": {"enabled": False},
}


async def test_random_dags_give_the_same_results_with_locality_on_and_off(
    pool_factory: Any, tmp_path: Path
) -> None:
    """Random DAGs on two simulated hosts: with locality on (clustering and delayed I/O
    at a low threshold), with every claimed child spilled at once, and off, the
    results are the in-process runtime's, and every task finishes exactly once."""
    pool = hosts_pool(pool_factory, tmp_path, ["h1", "h2"])
    dags = [random_dag(seed) for seed in range(4)]
    async with dagrt.Client(processes=False) as local:
        expected = [await local.compute(d) for d in dags]
    for name, locality in LOCALITY_CASES.items():
        async with dagrt.Client(pool.url, locality=locality) as client:
            futures = [client.submit(d) for d in dags]
            with anyio.fail_after(120):
                assert [await f for f in futures] == expected, name
            for f in futures:
                events = await aread_run(pool.url, f.run_id, wait=30)
                finished = sorted(e.task for e in events if e.kind == "task-finished")
                summary = await arun_summary(pool.url, f.run_id)
                # (30 nodes and the sink)
                assert finished == list(range(31)), (name, finished, summary)


@pytest.mark.parametrize("own", [None, {"keep_outputs": False}])
async def test_an_output_over_the_servers_limit_still_reaches_children_on_its_worker(
    tmp_path: Path, own: Any
) -> None:
    """The server takes 2 MiB at most; the 8 MiB array goes to the worker's store when
    it is stored, and nowhere when its six children all run where it was made: either
    way the run ends right (never a ValueTooLargeError for a value sent nowhere)."""
    storage = InMemoryStorage()
    storage.max_value_bytes = 2 * MiB
    worker = Worker(
        storage,
        concurrency=8,
        threads=1,
        heartbeat=0.2,
        claim_timeout=2,
        graceful_timeout=1,
        store=str(tmp_path / "store"),
        host_id="h1",
    )
    running = asyncio.create_task(worker.async_run())
    await worker.ready.wait()
    try:
        async with TwinClient(storage, locality={"spill_after_s": 30}) as c:
            a = make.options(locality=own)(MiB)
            assert await c.compute(tally(*[part(a, i, 0.0) for i in range(6)])) == expected(6)
    finally:
        worker.stop()
        await running
