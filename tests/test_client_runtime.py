"""The client and its distributed runtime against a real pool: runs that outlive their
keys' TTL, runs whose keys vanish, cancelling on worker processes, the client's id."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from conftest import Pool
from helpers import Signals, gate, mark, wait_for_events

import dagrt
from dagrt import DAG, RunNotFoundError
from dagrt import keys as K
from dagrt.distributed import DistributedRuntime
from dagrt.keys import new_run_id
from dagrt.storage import RedisStorage


async def test_a_run_that_outlives_its_ttl_is_kept_alive(pool: Pool, signals: Signals) -> None:
    """Keys with a 2 s TTL, a task that takes longer: the runtime renews them while it
    waits, and the run ends with its value."""
    run_id = new_run_id()
    result: list[Any] = []
    async with DistributedRuntime(pool.url, ttl=2) as runtime:
        assert runtime.storage is not None
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    result.extend(await runtime.run(DAG(gate(signals, "long", 7)), run_id))

                tg.start_soon(run)
                await signals.started("long")
                await anyio.sleep(3)  # the TTL is the point: let it pass, and more
                assert await runtime.storage.aexists(K.RunKeys(run_id).meta)
                await signals.release("long")
    assert result == [7]


async def test_a_run_whose_keys_are_gone_raises_at_once(pool: Pool, signals: Signals) -> None:
    """Keys deleted mid-run (or expired, or a flushed server): the wait ends with an
    error that names the run, instead of blocking on a stream nobody writes."""
    run_id = new_run_id()
    async with DistributedRuntime(pool.url) as runtime:
        storage = runtime.storage
        assert storage is not None

        async def delete_once_started() -> None:
            await signals.started("held")
            assert await storage.adelete_matching(f"dagrt:{{{run_id}}}*")

        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(delete_once_started)
                    with pytest.raises(RunNotFoundError, match=run_id):
                        await runtime.run(DAG(gate(signals, "held", 1)), run_id)
        finally:
            await signals.release("held")


async def test_cancel_stops_the_run_on_the_server(pool: Pool, signals: Signals) -> None:
    """``runtime.cancel(run_id)`` (what ``RunFuture.cancel()`` calls, synchronously) ends
    the wait at once; the run is stopped on the server, its child never starts, and
    its keys are deleted."""
    run_id = new_run_id()
    dag = DAG(mark(signals, "after", gate(signals, "w", 1)))
    ended: list[BaseException] = []
    async with DistributedRuntime(pool.url) as runtime:
        storage = runtime.storage
        assert storage is not None
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    try:
                        await runtime.run(dag, run_id)
                    except BaseException as exc:  # the run's cancellation, not this task's
                        ended.append(exc)

                tg.start_soon(run)
                await signals.started("w")
                runtime.cancel(run_id)
        assert [type(e).__name__ for e in ended] == ["CancelledError"]
        assert await storage.aget(K.RunKeys(run_id).end) == b"cancelled"
        assert [k async for k in storage.ascan_iter(f"dagrt:{{{run_id}}}*")] == [
            K.RunKeys(run_id).end
        ]
        control = await storage.axrange(K.control(), "-", "+")
        assert any(f.get(b"r") == run_id.encode() for _, f in control)  # workers were told
        await signals.release("w")
    async with dagrt.Client(pool.url) as client:  # the pool still serves
        assert await client.compute(mark(signals, "later")) == "later"
    assert signals.marks() == ["later"]  # the cancelled run's child never ran


async def test_the_run_meta_and_the_event_log_name_the_same_client(
    pool: Pool, signals: Signals
) -> None:
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(gate(signals, "seen", 1))
        await signals.started("seen")
        storage = RedisStorage(pool.url)
        stored = await storage.ahget(K.RunKeys(fut.run_id).meta, "client")
        await signals.release("seen")
        assert await fut == 1
    events = await wait_for_events(
        storage, fut.run_id, lambda es: any(e.kind == "run-submitted" for e in es)
    )
    await storage.aclose()
    [submitted] = [e for e in events if e.kind == "run-submitted"]
    assert stored is not None
    assert stored.decode() == submitted.client_id
    assert submitted.client_id.startswith("client-")
