"""What a worker does when a run ends, with the values it keeps for a child, and with
functions and outputs that storage cannot hold.

Runs are written with :func:`dagrt.submission.submit` and run by a real
:class:`~dagrt.workers.Worker` (in this process, on InMemoryStorage and on a real
server) or by ``dagrt worker`` processes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import pytest
from conftest import Pool
from helpers import Signals, big, collect, gate, grow, inc, mark, shrink, wait_for_events

import dagrt
from dagrt import keys as K
from dagrt import submission
from dagrt.records import LEAVES, sign
from dagrt.serialize import dumps_function, loads, pack
from dagrt.storage import RedisStorage, Storage
from dagrt.workers import Worker
from dagrt.workers.cache import ValueCache


async def ended(storage: Storage, spec: submission.RunSpec) -> dict[bytes, bytes]:
    """The run's last event (finished or failed), blocking on its events stream."""
    last: bytes | str = "0-0"
    with anyio.fail_after(30):
        while True:
            for _, entries in await storage.axread({spec.keys.events: last}, block=5):
                for last, fields in entries:  # noqa: B007
                    if fields[b"e"] in (b"finished", b"failed"):
                        return fields


# --------------------------------------------------------------------------- runs that end


async def test_no_task_of_a_cancelled_run_starts_after_the_cancel(
    pool_factory: Any, signals: Signals
) -> None:
    """One worker, one thread: a gate holds the thread while the run's other tasks wait
    (one for the thread, the rest in the stream). Cancelled, none of them starts, not
    even the one that was already waiting for the thread on the worker."""
    pool: Pool = pool_factory(1, "--threads", "1")
    async with dagrt.Client(pool.url) as client:
        waiting = [mark(signals, f"m{i}") for i in range(6)]
        fut = client.submit(collect(gate(signals, "g"), *waiting))
        await signals.started("g")
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await signals.release("g")
        # The worker takes tasks in the order they were dispatched: by the time it
        # has run this one, it has met every task of the cancelled run.
        assert await client.compute(mark(signals, "after")) == "after"
    assert signals.marks() == ["after"]


async def test_entries_of_a_stopped_run_are_acknowledged_unrun(backend: Storage) -> None:
    """A stopped run whose keys are still there (a client killed between its stop and
    its cleanup): its entries are acknowledged, none of its tasks runs."""
    spec = await submission.submit(backend, dagrt.DAG(collect(inc(1), inc(2))), "stopped")
    await submission.stop(backend, spec.keys)
    follow = await submission.submit(backend, dagrt.DAG(inc(41)), "after-the-stop")
    worker = Worker(backend, burst=True, metrics=False)
    with anyio.fail_after(30):
        await worker.async_run()
    assert worker.counts["done"] == 1  # inc(41) alone
    assert loads(await backend.aget(follow.keys.output(0))) == 42
    assert (await backend.axpending(K.tasks_stream(), K.TASKS_GROUP))["pending"] == 0


async def test_entries_of_done_or_unready_tasks_never_run(
    pool_factory: Any, signals: Signals
) -> None:
    """While a run goes on, an entry for a task it completed (a redelivery, or written
    by hand) is acknowledged and never runs again (``mark`` raises on a second run),
    and an entry for a task whose parents are not done is dead-lettered, never run
    early."""
    pool: Pool = pool_factory(1, "--threads", "2")
    storage = RedisStorage(pool.url)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(collect(mark(signals, "m"), gate(signals, "g")))
        await signals.started("g")
        rk = K.RunKeys(fut.run_id)
        progress: list[Any] = []
        with anyio.fail_after(30):  # the mark's completion, counted
            while not progress:
                [(_, entries)] = await storage.axread({rk.progress: "0-0"}, block=30)
                progress = [f[b"t"] for _, f in entries if f.get(b"t", b"-1") != b"-1"]
        [done] = [int(t) for t in progress if int(t) >= 0]  # (-1: the run was created)
        [sink] = [int(i) for i, left in (await storage.ahgetall(rk.deps)).items() if int(left)]
        for index in (done, sink):
            await storage.axadd(K.tasks_stream(), {"r": fut.run_id, "t": index})
        with anyio.fail_after(30):
            [(_, [(_, letter)])] = await storage.axread({K.dead_letter(): "0-0"}, block=30)
        assert letter[b"field:t"] == str(sink).encode()
        assert b"parents are not all done" in letter[b"reason"]
        await signals.release("g")
        assert await fut == ["m", None]
    assert signals.marks() == ["m"]
    assert (await storage.axpending(K.tasks_stream(), K.TASKS_GROUP))["pending"] == 0
    await storage.aclose()


GARBAGE = {
    # what a third party (or damage) left in place of a run's record or function table
    "a function index out of the table": ("record", ["k", 7, [], [], 0, LEAVES, [1]]),
    "a negative function index": ("record", ["k", -1, [], [], 0, LEAVES, [1]]),
    "a record that is an integer": ("record", 5),
    "a record of the wrong length": ("record", ["k", 0]),
    "children that are not task indexes": ("record", ["k", 0, [], ["x"], 0, LEAVES, [1]]),
    "no function table": ("fns", None),
    "a function table that is an integer": ("fns", 7),
    "a function table of strings": ("fns", ["f"]),
    "a function's locality that is not a map": ("fns", [["d", "inc", 0, 0.0, None, "off"]]),
    "a function's options of another kind": ("fns", [["d", "inc", 0, 0.0, None, {"cluster": 0}]]),
    "a function's locality of numbers": (
        "fns",
        [["d", "inc", 0, 0.0, None, {"locality": {"cluster": 0}}]],
    ),
    "a negative timeout": ("fns", [["d", "inc", 0, 0.0, None, {"timeout": -1}]]),
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
async def test_a_malformed_record_is_dead_lettered_and_fails_its_run(
    backend: Storage, garbage: str
) -> None:
    """Never retried for ever: the entry goes to the dead letters with its reason, the
    run fails with an error that says what was wrong, and other runs go on."""
    spec = await submission.submit(backend, dagrt.DAG(inc(1)), "garbage")
    where, value = GARBAGE[garbage]
    if where == "record":
        await backend.ahset(spec.keys.tasks, {"0": sign(pack(value), None, spec.run_id, "0")})
    elif value is None:
        await backend.ahdel(spec.keys.meta, "fns")
    else:
        await backend.ahset(spec.keys.meta, {"fns": sign(pack(value), None, spec.run_id, "fns")})
    follow = await submission.submit(backend, dagrt.DAG(inc(41)), "after-the-garbage")
    worker = Worker(backend, burst=True, metrics=False)
    with anyio.fail_after(30):
        await worker.async_run()
    assert worker.counts["dead"] == 1
    assert worker.counts["done"] == 1  # inc(41) alone
    assert loads(await backend.aget(follow.keys.output(0))) == 42
    assert await backend.ahget(spec.keys.meta, "status") == b"failed"
    [(_, letter)] = await backend.axrange(K.dead_letter())
    assert b"rejected task record" in letter[b"reason"]
    error = json.loads(await backend.aget(spec.keys.error(0)))
    assert error["exc_type"] == "dagrt.MalformedRecord"
    assert (await backend.axpending(K.tasks_stream(), K.TASKS_GROUP))["pending"] == 0


# ------------------------------------------------------------------------ values kept for a child


async def test_an_output_kept_in_memory_is_held_until_its_child_reads_it(
    backend: Storage,
) -> None:
    """Outputs that are not uploaded (keep mode L) are pinned: a cache budget smaller
    than one of them neither refuses nor evicts them, so nothing is made twice."""
    spec = await submission.submit(backend, dagrt.DAG(shrink(grow(grow(big(3))))), "pinned")
    worker = Worker(backend, burst=True, metrics=False, cache_bytes=1024)
    with anyio.fail_after(30):
        await worker.async_run()
    assert worker.counts["local"] == 3  # big, grow and grow stayed on the worker
    assert "restored" not in worker.counts  # none of them was computed again
    assert worker.values.pinned_bytes == 0  # each was let go once its child read it
    assert loads(await backend.aget(spec.keys.output(spec.outputs[0]))) == 5


def test_a_pinned_value_survives_eviction_and_goes_once_read() -> None:
    cache = ValueCache(max_bytes=300)
    cache.put("r", 0, "kept for its child", 200, pinned=True)
    for i in range(1, 10):  # other outputs fill the budget, oldest out first
        cache.put("r", i, f"cached {i}", 100)
    assert cache.get("r", 0) == (True, "kept for its child", 200)
    assert not cache.get("r", 1)[0]
    assert cache.get("r", 9)[0]
    cache.used("r", 0, uses=1)
    assert cache.get("r", 0) == (False, None, 0)
    assert cache.pinned_bytes == 0
    assert cache.bytes == 300


def test_a_run_that_ends_drops_its_pinned_values() -> None:
    cache = ValueCache(max_bytes=100)
    cache.put("r", 0, "a", 1000, pinned=True)
    cache.put("s", 0, "b", 10, pinned=True)
    cache.drop_run("r")
    assert cache.pinned_bytes == 10
    assert cache.get("s", 0)[0]


# --------------------------------------------------------------------------- functions and outputs


async def test_a_function_gone_from_storage_is_stored_again(backend: Storage) -> None:
    """A client remembers the functions it stored; if the server lost one (expired, or
    flushed), the next submission stores it again, so a new worker can run it."""
    known: set[str] = set()
    first = await submission.submit(backend, dagrt.DAG(inc(1)), "one", known_functions=known)
    digest, _ = dumps_function(inc)
    assert first.functions == 1
    assert digest in known
    again = await submission.submit(backend, dagrt.DAG(inc(2)), "two", known_functions=known)
    assert again.functions == 0  # still there: its TTL renewed, nothing sent
    await backend.adelete(K.function(digest))
    third = await submission.submit(backend, dagrt.DAG(inc(3)), "three", known_functions=known)
    assert third.functions == 1
    assert await backend.aexists(K.function(digest))
    worker = Worker(backend, burst=True, metrics=False)  # a new worker: nothing cached
    with anyio.fail_after(30):
        await worker.async_run()
    for spec, value in ((first, 2), (again, 3), (third, 4)):
        assert loads(await backend.aget(spec.keys.output(0))) == value


BLOB = b"x" * (2 << 20)


@dagrt.task
def blob(n: int) -> bytes:
    return BLOB if n else b""


@pytest.mark.parametrize("lane", ["chain", "fast"])
async def test_an_output_over_the_servers_limit_fails_its_task(
    server_factory: Any, lane: str
) -> None:
    """On both lanes, a result the server cannot take fails its run with
    ValueTooLargeError naming the key (the batch's other tasks complete)."""
    from dagrt.storage import RedisStorage

    server = server_factory(options={"proto-max-bulk-len": "1mb"})
    storage = RedisStorage(server.url)
    serving = Worker(storage, threads=2, metrics=False)
    async with anyio.create_task_group() as tg:
        await tg.start(serving.async_run)
        if lane == "fast":  # measured tiny first: then it runs inline, in batches
            warm = await submission.submit(storage, dagrt.DAG(*[blob(0) for _ in range(4)]), "w")
            assert (await ended(storage, warm))[b"e"] == b"finished"
            fn = serving.functions.cached(dumps_function(blob)[0])
            assert fn is not None
            assert serving.executor.inline(fn)
        spec = await submission.submit(storage, dagrt.DAG(blob(1)), "too-large")
        fields = await ended(storage, spec)
        serving.stop()
    assert fields[b"e"] == b"failed"
    error = json.loads(fields[b"err"])
    assert error["exc_type"] == "dagrt.ValueTooLargeError"
    assert spec.keys.output(0) in error["message"]
    await storage.aclose()


# --------------------------------------------------------------------------- heavy work is shared


@dagrt.task
def heavy(i: int, _: Any) -> int:
    import time

    time.sleep(0.3)  # holds a task thread, as a GEMM would
    return i


async def test_a_worker_that_read_wide_gives_heavy_tasks_back(redis_storage: Any) -> None:
    """Two workers of one thread, both just done with tiny tasks (so they read as many
    entries as they can): the eight heavy children of one root are shared out, not run
    one after another by the worker whose read came first."""
    from helpers import add

    from dagrt.metrics import TaskExecutionMetrics
    from dagrt.workflows import pairwise

    workers = [Worker(redis_storage, threads=1, heartbeat=0.5) for _ in range(2)]
    async with anyio.create_task_group() as tg:
        for w in workers:
            await tg.start(w.async_run)
        for n in range(2):  # tiny tasks: both workers learn to read wide
            tiny = dagrt.DAG(pairwise(add, range(256)))
            spec = await submission.submit(redis_storage, tiny, f"tiny-{n}")
            assert (await ended(redis_storage, spec))[b"e"] == b"finished"
        root = inc(0)
        spec = await submission.submit(
            redis_storage, dagrt.DAG(collect(*[heavy(i, root) for i in range(8)])), "heavy"
        )
        assert (await ended(redis_storage, spec))[b"e"] == b"finished"

        def finished(events: list[Any]) -> list[Any]:
            return [e for e in events if isinstance(e, TaskExecutionMetrics) and "heavy" in e.key]

        events = await wait_for_events(redis_storage, "heavy", lambda es: len(finished(es)) == 8)
        for w in workers:
            w.stop()
    ran = {w.id: 0 for w in workers}
    for event in finished(events):
        ran[event.worker_id] += 1
    assert min(ran.values()) >= 3, ran  # (a worker that kept them all: one against seven)
