"""Random DAGs while workers are killed at random.

Three ``dagrt worker`` processes serve a real server; a chaos task SIGKILLs one of
them every 0.5-2 s and starts another in its place. Meanwhile a client runs random
DAGs, three at a time: small and large values (arrays of 2 MB cross the server and
the workers' memory), tasks that fail on their first attempt and are retried, and
runs cancelled at a random moment. Every run must end (none hangs: the client's
watchdog would say so) with the exact value, or as cancelled, and leave no key but
its end marker. Slow (about a minute): still run by ``.ci/run``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from conftest import Pool

import dagrt
from dagrt import keys as K
from dagrt.storage import RedisStorage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SEED = 20261204
SECONDS = 40  # of rounds of runs (a round: three runs at once), at least
BIG = 1 << 18  # elements of a large value: 2 MB of int64


@dagrt.task
def leaf(i: int, size: int) -> Any:
    import numpy as np

    return np.full(size, i, dtype=np.int64)


@dagrt.task
def combine(*parts: Any) -> Any:
    import numpy as np

    return np.add.reduce(parts) + 1


@dagrt.task(retries=2, retry_delay=0.2)
def flaky(url: str, key: str, part: Any) -> Any:
    """Fails on its first attempt (a counter on the server says which one this is)."""
    import redis

    with redis.Redis.from_url(url) as r:
        if r.incr(key) == 1:
            raise RuntimeError(f"{key}: the first attempt fails")
    return part


@dataclass
class Planned:
    node: dagrt.Node
    value: int  # every element of the output
    size: int
    cancel_after: float | None  # seconds, or None: let it finish


def random_dag(rng: random.Random, url: str, name: str) -> Planned:
    """Layers of tasks, each with one to three parents in earlier layers; the values
    are constant arrays, so the expected output is one number."""
    size = rng.choice([8, 8, BIG])
    nodes: list[tuple[dagrt.Node, int]] = [(leaf(i, size), i) for i in range(rng.randint(2, 6))]
    for layer in range(rng.randint(2, 5)):
        made = []
        for j in range(rng.randint(1, 5)):
            parents = rng.sample(nodes, min(len(nodes), rng.randint(1, 3)))
            node, value = combine(*(p for p, _ in parents)), sum(v for _, v in parents) + 1
            if rng.random() < 0.2:
                node = flaky(url, f"{name}:{layer}:{j}", node)
            made.append((node, value))
        nodes += made
    sink = combine(*(n for n, _ in nodes[-3:]))
    value = sum(v for _, v in nodes[-3:]) + 1
    cancel_after = rng.uniform(0, 0.5) if rng.random() < 0.2 else None
    return Planned(sink, value, size, cancel_after)


async def chaos(pool: Pool, rng: random.Random, stop: anyio.Event, kills: list[int]) -> None:
    """SIGKILL a random live worker every 0.5-2 s, and start another in its place."""
    while not stop.is_set():
        with anyio.move_on_after(rng.uniform(0.5, 2.0)):
            await stop.wait()
        if stop.is_set():
            return
        alive = [w for w in pool.workers if w.poll() is None]
        victim = rng.choice(alive)
        os.kill(victim.pid, signal.SIGKILL)
        kills.append(victim.pid)
        await anyio.to_thread.run_sync(pool.spawn, *FLAGS)


FLAGS = ("--threads", "2")


async def test_random_dags_survive_random_worker_kills(pool_factory: Any) -> None:
    rng = random.Random(SEED)
    pool: Pool = pool_factory(3, *FLAGS)
    outcomes: dict[str, int] = {"value": 0, "cancelled": 0}
    run_ids: list[str] = []
    kills: list[int] = []
    stop = anyio.Event()

    async def one(client: dagrt.Client, planned: Planned) -> None:
        fut = client.submit(planned.node)
        run_ids.append(fut.run_id)
        if planned.cancel_after is not None:
            await anyio.sleep(planned.cancel_after)
            fut.cancel()
        with anyio.fail_after(120):  # never a hang (the watchdog fires after 10 s)
            try:
                out = await fut
            except asyncio.CancelledError:
                assert planned.cancel_after is not None, "only a cancelled run ends so"
                outcomes["cancelled"] += 1
                return
        assert out.shape == (planned.size,)
        assert int(out.min()) == int(out.max()) == planned.value
        outcomes["value"] += 1

    async with anyio.create_task_group() as chaos_group:
        chaos_group.start_soon(chaos, pool, random.Random(SEED + 1), stop, kills)
        async with dagrt.Client(pool.url, stall_timeout=10) as client:
            started = anyio.current_time()
            rounds = 0
            while anyio.current_time() - started < SECONDS:
                round_no, rounds = rounds, rounds + 1
                async with anyio.create_task_group() as runs:
                    for k in range(3):
                        planned = random_dag(rng, pool.url, f"r{round_no}-{k}")
                        runs.start_soon(one, client, planned)
        stop.set()

    print(f"stress: {rounds} rounds, {len(kills)} workers killed, {outcomes}")
    assert len(kills) >= 15, "the chaos must have killed workers during the runs"
    assert outcomes["value"] + outcomes["cancelled"] == rounds * 3
    assert outcomes["value"] >= rounds * 3 // 2
    storage = RedisStorage(pool.url)
    try:
        for run_id in run_ids:  # every key of every run is gone but its end marker
            left = sorted(storage.scan_iter(f"dagrt:{{{run_id}}}*"))
            assert left == [K.RunKeys(run_id).end]
    finally:
        await storage.aclose()
