"""The worker and scheduler logic in one process, on InMemoryStorage.

InMemoryStorage runs the scheduler's own Lua scripts (through lupa), so
the whole protocol (submission, dispatch, completion, "become", failure,
cancellation) runs here without a server, next to the same tests on Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import add, collect, inc

import dagrt
from dagrt import TaskError, scheduler, submission
from dagrt import keys as K
from dagrt.distributed import DistributedRuntime
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run
from dagrt.storage import InMemoryStorage, RedisStorage, Storage
from dagrt.workers import Worker
from dagrt.workflows import pairwise


class TwinClient(dagrt.Client):
    """A client whose runs go through ``storage`` to workers in this process."""

    def __init__(self, storage: Storage, **options: Any) -> None:
        super().__init__("memory://", **options)
        self.storage = storage

    def _make_runtime(self) -> Any:
        return DistributedRuntime(storage=self.storage, locality=self.locality)


@pytest.fixture
async def twin(backend: Storage) -> AsyncIterator[tuple[dagrt.Client, Worker]]:
    storage = backend
    worker = Worker(
        storage, concurrency=4, threads=2, heartbeat=0.2, claim_timeout=1, graceful_timeout=1
    )
    running = asyncio.create_task(worker.async_run())  # a fixture may end in another task
    await worker.ready.wait()
    async with TwinClient(storage) as client:
        yield client, worker
    worker.stop()
    await running


@dagrt.task
def boom(x: int) -> int:
    raise ZeroDivisionError(f"no {x}")


async def test_a_run_through_the_scripts_in_one_process(twin: tuple[dagrt.Client, Worker]) -> None:
    client, worker = twin
    assert await client.compute(pairwise(add, [inc(i) for i in range(64)])) == sum(range(1, 65))
    assert worker.counts["done"] == 127
    assert worker.counts["kept"] > 0  # some children ran where their input was ("become")


async def test_failures_and_async_tasks(twin: tuple[dagrt.Client, Worker]) -> None:
    client, _ = twin

    @dagrt.task
    async def ainc(x: int) -> int:
        return x + 1

    assert await client.compute(collect(ainc(1), inc(ainc(2)))) == [2, 4]
    with pytest.raises(TaskError) as info:
        await client.compute(add(boom(3), inc(1)))
    assert info.value.exc_type == "ZeroDivisionError"
    assert isinstance(info.value.exception, ZeroDivisionError)


FAILS_LEFT: dict[str, int] = {}  # key -> failures still to raise (this process)
CALLS: dict[str, int] = {}


@dagrt.task(retries=1, retry_delay=0.05)
def flaky(x: int, key: str) -> int:
    CALLS[key] = CALLS.get(key, 0) + 1
    if FAILS_LEFT.get(key, 0) > 0:
        FAILS_LEFT[key] -= 1
        raise RuntimeError(f"{key} fails this time")
    return x + 1


def chain(start: int, links: int, key: str = "") -> dagrt.Node:
    x = inc(start)
    for i in range(links - 1):
        x = flaky(x, f"{key}{i}") if key else inc(x)
    return x


async def test_a_chain_of_tiny_tasks_runs_as_one_completion(
    twin: tuple[dagrt.Client, Worker],
) -> None:
    """Chain fusion: once ``inc`` is measured tiny, each chain of 16 runs in one go on
    the worker that read its first task, every link but the last kept in memory
    (never stored), and all 16 are counted by one completion."""
    client, worker = twin
    assert await client.compute([inc(i) for i in range(8)]) == list(range(1, 9))  # measured
    before = worker.counts["fused"]
    fut = client.submit([chain(i, 16) for i in range(8)])
    assert await fut == [i + 16 for i in range(8)]
    assert worker.counts["fused"] - before == 8 * 15
    # the log says so: each fused edge is a transfer in memory, each link ran kept
    events = await aread_run(client.storage, fut.run_id, wait=10)  # type: ignore[attr-defined]
    local = [e for e in events if e.kind == "transfer" and e.direction == "local"]
    assert len(local) == 8 * 15
    assert all(e.local and e.bytes > 0 for e in local)
    finished = [e for e in events if e.kind == "task-finished"]
    assert len(finished) == 8 * 16
    assert sum(e.kept for e in finished) >= 8 * 15
    assert sum(e.placed == "chain" for e in finished) == 8 * 15  # why: chain fusion
    # what that kept from moving, from what happened: each link's output was read where
    # it was made, and none but the last of each chain was ever stored
    edges = sum(e.bytes for e in local)
    assert analyze(events).bytes_avoided == {"read": edges, "stored": edges}


@pytest.mark.parametrize(
    ("locality", "links"),
    [
        ({"fuse_chains": False}, 0),
        ({"enabled": False}, 0),
        ({"keep_outputs": False}, 0),
        (dagrt.LocalityOptions(max_chain_length=4), 8 * 12),  # 4 groups of 4 links a chain
    ],
)
async def test_the_runs_locality_options_decide_what_is_fused(
    twin: tuple[dagrt.Client, Worker], locality: Any, links: int
) -> None:
    client, worker = twin
    assert await client.compute([inc(i) for i in range(8)]) == list(range(1, 9))  # measured
    async with TwinClient(client.storage, locality=locality) as other:  # type: ignore[attr-defined]
        before = worker.counts["fused"]
        fut = other.submit([chain(i, 16) for i in range(8)])
        assert await fut == [i + 16 for i in range(8)]
        assert worker.counts["fused"] - before == links
    if locality == {"enabled": False}:  # every output stored (a child that happens to
        # run where its input is still reads it from memory: a read avoided all the same)
        events = await aread_run(client.storage, fut.run_id, wait=10)  # type: ignore[attr-defined]
        assert "stored" not in analyze(events).bytes_avoided


def test_locality_options_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"bad locality options \(fuse: Extra inputs"):
        dagrt.Client(processes=False, locality={"fuse": True})
    with pytest.raises(ValueError, match="keep_children: Input should be a valid boolean"):
        dagrt.LocalityOptions.of({"keep_children": "no"})
    with pytest.raises(ValueError, match="max_chain_length"):
        dagrt.LocalityOptions.of({"max_chain_length": 0})
    with pytest.raises(TypeError, match="locality must be"):
        dagrt.LocalityOptions.of([("keep_children", False)])  # type: ignore[arg-type]
    off = dagrt.LocalityOptions(enabled=False, upload_all=True).effective()
    assert (off.keep_children, off.keep_outputs, off.fuse_chains, off.upload_all) == (
        False,
        False,
        False,
        True,
    )


async def test_the_in_process_runtime_accepts_locality_options() -> None:
    async with dagrt.Client(processes=False, locality={"enabled": False}) as client:
        assert await client.compute(chain(0, 4)) == 4


async def test_a_link_of_a_fused_chain_that_fails_is_retried_once(
    twin: tuple[dagrt.Client, Worker],
) -> None:
    """A link fails in the middle of a fused chain: the links before it are counted,
    it is retried on its own (its input held for it), and the chain goes on; no link
    runs twice but the failed one."""
    client, worker = twin
    tag = f"{id(client)}-"
    assert await client.compute([chain(i, 4, f"warm{tag}") for i in range(4)]) == [4, 5, 6, 7]
    FAILS_LEFT[f"{tag}5"] = 1
    before = worker.counts["fused"]
    assert await client.compute(chain(10, 10, tag)) == 20
    assert worker.counts["fused"] - before >= 6  # the links up to the failed one, fused
    assert CALLS[f"{tag}5"] == 2
    assert all(CALLS[f"{tag}{i}"] == 1 for i in range(9) if i != 5)


async def test_burst_mode_drains_the_stream_and_returns() -> None:
    storage = InMemoryStorage()
    dag = dagrt.DAG(add(inc(1), inc(2)))
    spec = await submission.submit(storage, dag, "burst-run")
    worker = Worker(storage, burst=True)
    with anyio.fail_after(10):
        await worker.async_run()
    assert worker.counts["done"] == 3
    meta = storage.hgetall(spec.keys.meta)
    assert meta[b"status"] == b"finished"
    out = storage.get(spec.keys.output(spec.outputs[0]))
    assert dagrt.serialize.loads(out) == 5
    assert storage.xpending(K.tasks_stream(), K.TASKS_GROUP)["pending"] == 0


async def test_completion_is_idempotent_and_remembered(redis_storage: RedisStorage) -> None:
    """A repeated completion changes nothing and returns the first decision."""
    for storage in (InMemoryStorage(), redis_storage):
        a = inc(1)
        dag = dagrt.DAG(add(a, 1))
        spec = await submission.submit(storage, dag, "idem")
        rk = spec.keys
        await storage.aset(rk.output(0), dagrt.serialize.dumps(2))
        item = scheduler.Completion(0, [1], [], may_keep=True)
        cmd = scheduler.complete_cmd(rk, [item], "w1", stream=K.tasks_stream())
        [first] = (await storage.apipeline([cmd]))[0]
        [again] = (await storage.apipeline([cmd]))[0]
        assert [x.decode() if isinstance(x, bytes) else x for x in first] == ["ok", "1"]
        assert [x.decode() if isinstance(x, bytes) else x for x in again] == ["dup", "1"]
        assert await storage.ahget(rk.deps, "1") == b"0"  # decremented once
        assert int(await storage.ahget(rk.meta, "left")) == 1
        await submission.cleanup(storage, spec, "cancelled")
        await storage.aflushdb()


async def test_a_counter_never_counts_a_missing_output(redis_storage: RedisStorage) -> None:
    for storage in (InMemoryStorage(), redis_storage):
        dag = dagrt.DAG(add(inc(1), 1))
        spec = await submission.submit(storage, dag, "no-output")
        item = scheduler.Completion(0, [1], [], may_keep=False)
        cmd = scheduler.complete_cmd(spec.keys, [item], "w1", stream=K.tasks_stream())
        [reply] = (await storage.apipeline([cmd]))[0]
        assert reply[0] in (b"missing", "missing")
        assert await storage.ahget(spec.keys.deps, "1") == b"1"
        await storage.aflushdb()


# --------------------------------------------------------------------------- inline calls


def test_a_tiny_function_runs_inline_and_survives_one_paused_call() -> None:
    """A function is called on the loop after three fast calls in a row. One slow reading
    (a tiny call the OS paused on a busy machine) sends it back to threads until it is
    fast three times again; it is not banned for good."""
    from dagrt.workers.executor import INLINE_AFTER, _Profile

    tiny = _Profile()
    for _ in range(INLINE_AFTER):
        assert not tiny.inline
        tiny.measured(1e-6)
    assert tiny.inline
    tiny.measured(0.03)  # paused for 30 ms
    assert (tiny.inline, tiny.banned) == (False, False)
    for _ in range(INLINE_AFTER):
        tiny.measured(1e-6)
    assert tiny.inline


def test_a_slow_function_goes_to_threads_for_good() -> None:
    """Two slow calls in a row, or one very slow call, keep a function off the loop."""
    from dagrt.workers.executor import INLINE_AFTER, _Profile

    for readings in ([0.01, 0.01], [0.5]):
        slow = _Profile()
        for _ in range(INLINE_AFTER):
            slow.measured(1e-6)
        for elapsed in readings:
            slow.measured(elapsed)
        assert (slow.inline, slow.banned) == (False, True)
        for _ in range(10 * INLINE_AFTER):
            slow.measured(1e-6)
        assert not slow.inline
    middling = _Profile()  # 1 ms a call: not tiny, not slow
    for _ in range(10 * INLINE_AFTER):
        middling.measured(1e-3)
    assert (middling.inline, middling.banned) == (False, False)
