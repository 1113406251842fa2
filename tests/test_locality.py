"""Locality on workers: fan-out clustering (children of a large output run where it is).

Two workers in this process share one storage (InMemoryStorage, which runs the
scheduler's own Lua scripts, and a real server); the event log says which worker
ran each task. A crash test kills a real worker process in a clustered child.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from helpers import Signals, gate, note_call
from test_worker import TwinClient

import dagrt
from dagrt.metrics.read import aread_run
from dagrt.storage import Storage
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


@pytest.fixture
async def pair(backend: Storage) -> AsyncIterator[tuple[TwinClient, list[Worker]]]:
    """Two workers, one thread each, on one storage."""
    workers = [
        Worker(
            backend, concurrency=8, threads=1, heartbeat=0.2, claim_timeout=2, graceful_timeout=1
        )
        for _ in range(2)
    ]
    running = [asyncio.create_task(w.async_run()) for w in workers]
    for w in workers:
        await w.ready.wait()
    async with TwinClient(backend) as client:
        yield client, workers
    for w in workers:
        w.stop()
    await asyncio.gather(*running)


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


async def test_a_worker_killed_in_a_clustered_child(pool_factory: Any, tmp_path: Path) -> None:
    """The worker that holds the large output dies while it runs one of its claimed
    children: their entries were pending for it, so the other worker takes them over
    after the claim timeout and the run ends right; no child is lost."""
    pool = pool_factory(2)
    log = str(tmp_path / "calls")
    async with dagrt.Client(pool.url, locality={"spill_after_s": 30}) as client:
        a = make(MiB)
        dag = tally(*[part_dies(log, a, i, i == 3) for i in range(6)])
        with anyio.fail_after(60):
            assert await client.compute(dag) == expected(6)
    calls = Path(log).read_text().split()
    assert sorted(set(calls)) == [str(i) for i in range(6)]
    assert calls.count("3") == 2  # killed once, then run by the other worker
    assert sum(1 for w in pool.workers if w.poll() is not None) == 1
