"""Values kept in the pool between runs: ``client.persist``.

``client.persist(x)`` starts computing ``x`` and returns at once a node standing for its
value; later graphs read the kept value instead of computing ``x`` again, on the
in-process runtime and on worker processes (where the value lives on the server and
never comes back to the client). The value is released when what stands for it is
garbage-collected or the client closes. Each task appends its name to a file when it
runs: the file says what ran.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from conftest import Pool
from helpers import Signals, gate, ran, wait_for_events, what_ran

import dagrt
from dagrt import keys as K
from dagrt.persist import Pin, copied_error
from dagrt.storage import RedisStorage


@dagrt.task
def load(log: str, n: int) -> list[int]:
    ran(log, "load")
    return list(range(n))


@dagrt.task
def total(log: str, xs: list[int]) -> int:
    ran(log, "total")
    return sum(xs)


@dagrt.task
def broken(log: str) -> int:
    ran(log, "broken")
    raise ZeroDivisionError("broken on purpose")


@dagrt.task
def load_slowly(log: str, n: int, seconds: float) -> list[int]:
    ran(log, "load")
    time.sleep(seconds)  # (long enough for the test to act while it runs)
    return list(range(n))


class Box:
    """Opaque to the argument walker: a node in it is not a dependency of the task."""

    def __init__(self, node: dagrt.Node) -> None:
        self.node = node


@dagrt.task
def total_of_boxed(log: str, box: Box) -> dagrt.Node:
    """A task that returns a graph reading the node it was handed in a box."""
    return total(log, box.node)


class Blob:
    def __init__(self, n: int) -> None:
        self.n = n


@dagrt.task
def size(blob: Blob) -> int:
    return blob.n


def pin_of(node: dagrt.Node) -> Pin:
    """The pin a stand-in reads."""
    assert node.name == "persisted"
    pin = node._leaves[0]
    assert isinstance(pin, Pin)
    return pin


async def kept_values(client: dagrt.Client) -> set[str]:
    """The pins whose values the client's runtime holds (on its server, or in process)."""
    if client.address is None:
        return set(client._runtime._pinned)  # type: ignore[union-attr]
    return {key.removeprefix(K.cache_entry("")) for key in await pinned_entries(client)}


async def released(client: dagrt.Client, key: str) -> None:
    """Let the client's loop release ``key`` once the collector dropped its holder."""
    gc.collect()
    assert client._pins is not None
    for _ in range(100):
        if key not in client._pins.live:
            return
        await asyncio.sleep(0.02)


async def pinned_entries(client: dagrt.Client) -> set[str]:
    """The persisted values on the client's server."""
    storage = RedisStorage(client.address or "")
    try:
        return {key async for key in storage.ascan_iter(K.cache_entry("persisted-*"))}
    finally:
        await storage.aclose()


async def settle(client: dagrt.Client) -> None:
    """Let the client's loop delete what the collector released."""
    gc.collect()
    for _ in range(50):
        await asyncio.sleep(0.02)
        if client.address is None or not client._pins or not client._pins._dropped:
            break


async def test_a_persisted_value_is_computed_once_and_read_by_later_runs(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    log = str(tmp_path / "ran")
    data = any_client.persist(load(log, 100))
    assert isinstance(data, dagrt.Node)
    assert data.name == "persisted"
    assert await any_client.compute(total(log, data)) == 4950
    assert await any_client.compute([total(log, data), data]) == [4950, list(range(100))]
    assert what_ran(tmp_path / "ran") == ["load", "total", "total"]


async def test_persist_keeps_the_shape_it_is_given(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    log = str(tmp_path / "ran")
    a = load(log, 3)
    tree = any_client.persist({"a": a, "again": [a, 7]}, ttl=60)
    assert tree["a"] is tree["again"][0]
    assert tree["again"][1] == 7
    first, second = any_client.persist(load(log, 1), load(log, 2))
    assert await any_client.compute([tree, first, second]) == [
        {"a": [0, 1, 2], "again": [[0, 1, 2], 7]},
        [0],
        [0, 1],
    ]
    assert any_client.persist(first) is first  # (persisted already)
    assert any_client.persist(5) == 5  # (nothing to compute)


async def test_a_persisted_value_stays_on_the_server_until_released(
    pool: Pool, tmp_path: Path
) -> None:
    """On workers the value is an entry on the server (never read back by the client),
    with its time to live; deleted once what stands for it is collected, and every one
    left when the client closes."""
    log = str(tmp_path / "ran")
    async with dagrt.Client(pool.url) as client:
        kept = client.persist(load(log, 10), ttl=3600)
        other = client.persist(load(log, 20))
        assert await client.compute(total(log, kept)) == 45
        entries = await pinned_entries(client)
        assert len(entries) == 2
        storage = RedisStorage(pool.url)
        ttls = sorted([await storage.attl(e) or 0 for e in entries])
        await storage.aclose()
        assert 3500 < ttls[0] <= 3600
        assert 86000 < ttls[1] <= 86400
        del kept
        await settle(client)
        assert len(await pinned_entries(client)) == 1
        assert await client.compute(total(log, other)) == 190
    async with dagrt.Client(pool.url) as observer:
        assert await pinned_entries(observer) == set()


async def test_a_run_that_reads_a_failed_persisted_value_fails_with_its_error(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    log = str(tmp_path / "ran")
    bad = any_client.persist(broken(log))
    with pytest.raises(dagrt.TaskError, match="broken on purpose") as raised:
        await any_client.compute(total(log, [bad]))
    assert isinstance(raised.value.exception, ZeroDivisionError)
    assert what_ran(tmp_path / "ran") == ["broken"]  # (total never ran)


async def test_each_reader_of_a_failed_value_gets_an_error_of_its_own(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    log = str(tmp_path / "ran")
    bad = any_client.persist(broken(log))
    errors = []
    for _ in range(2):
        with pytest.raises(dagrt.TaskError) as raised:
            await any_client.compute(total(log, [bad]))
        errors.append(raised.value)
    made = pin_of(bad).made
    assert made is not None
    original = made.exception()
    assert isinstance(original, dagrt.TaskError)
    # (tracebacks and causes do not pile up on one object: neither on the TaskError
    # nor on the exception it carries, which is what Dask raises)
    assert len({id(original), *map(id, errors)}) == 3
    assert len({id(original.exception), *(id(e.exception) for e in errors)}) == 3
    assert str(errors[0]) == str(errors[1]) == str(original)
    assert all(isinstance(e.exception, ZeroDivisionError) for e in errors)
    assert original.exception is not None
    assert original.exception.__cause__ is None


class Picky(Exception):
    """An exception whose ``__init__`` formats its message and wants more than it."""

    def __init__(self, n: int, *, code: int) -> None:
        super().__init__(f"bad {n}")
        self.code = code


@dagrt.task
def picky(n: int) -> int:
    raise Picky(n, code=7)


async def test_readers_of_a_failed_value_get_the_exception_as_it_was_raised() -> None:
    """Each reader's copy is made without running the class's ``__init__`` again: the
    same message and attributes (in process, where the object itself is kept)."""
    async with dagrt.Client(processes=False) as client:
        bad = client.persist(picky(3))
        seen = []
        for _ in range(2):
            with pytest.raises(dagrt.TaskError) as raised:
                await client.compute(total("unused", [bad]))
            exc = raised.value.exception
            assert isinstance(exc, Picky)
            assert (str(exc), exc.code) == ("bad 3", 7)
            seen.append(exc)
        assert seen[0] is not seen[1]


def test_a_copied_error_keeps_what_built_in_exceptions_hold() -> None:
    missing = copied_error(FileNotFoundError(2, "No such file", "data.csv"))
    assert isinstance(missing, FileNotFoundError)
    assert (missing.errno, missing.filename) == (2, "data.csv")
    stop = copied_error(StopIteration(5))
    assert isinstance(stop, StopIteration)
    assert stop.value == 5
    noted = ValueError("v")
    noted.add_note("first")
    again = copied_error(noted)
    again.add_note("a reader's")
    assert noted.__notes__ == ["first"]


async def test_a_value_dropped_while_it_is_computed_is_released_when_its_run_ends(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    """Its run would write it after a release: the release waits for the run's end."""
    log = str(tmp_path / "ran")
    kept = any_client.persist(load_slowly(log, 10, 0.5))
    made, key = pin_of(kept).made, pin_of(kept).key
    assert made is not None
    del kept
    gc.collect()
    await asyncio.sleep(0.1)  # (the loop turns: the release is asked for now)
    assert not made.done()
    assert any_client._pins is not None
    assert key in any_client._pins.live
    await made
    await released(any_client, key)
    assert key not in any_client._pins.live
    assert key not in await kept_values(any_client)


async def test_a_persisted_value_does_not_keep_the_graph_that_made_it(
    any_client: dagrt.Client,
) -> None:
    blob = Blob(3)
    collected = weakref.ref(blob)
    kept = any_client.persist(size(blob))
    made = pin_of(kept).made
    assert made is not None
    assert made.dag is None
    await made
    if any_client.metrics is not None:  # (the log holds a run's recorder until it flushes)
        await any_client.metrics.flush()
    del blob
    gc.collect()
    assert collected() is None
    assert await any_client.compute(kept) == 3


async def test_a_returned_graph_waits_for_the_value_it_reads(
    any_client: dagrt.Client, tmp_path: Path
) -> None:
    """A stand-in that reaches a task inside a value (not as an argument the run waits
    for) is read by the graph the task returns: in process that run waits for the
    value's run; on workers the value is read as the server has it then, so the test
    waits for it first there."""
    log = str(tmp_path / "ran")
    data = any_client.persist(load_slowly(log, 10, 0.3))
    if any_client.processes:
        await pin_of(data).made  # type: ignore[misc]
    assert await any_client.compute(total_of_boxed(log, Box(data))) == 45
    assert what_ran(tmp_path / "ran") == ["load", "total"]


@pytest.fixture
def client_in_a_thread(pool: Pool) -> Iterator[dagrt.Client]:
    """A client of the pool whose loop runs in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = dagrt.Client(pool.url)
    asyncio.run_coroutine_threadsafe(client.__aenter__(), loop).result(60)
    try:
        yield client
    finally:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def test_a_client_on_another_loop_waits_for_a_value_being_persisted(
    pool: Pool, client_in_a_thread: dagrt.Client, tmp_path: Path
) -> None:
    """Two clients of one pool on two event loops: one reads what the other persists,
    waiting for its run from its own loop."""
    log = str(tmp_path / "ran")
    kept = client_in_a_thread.persist(load_slowly(log, 10, 1.0))
    made = pin_of(kept).made
    assert made is not None
    async with dagrt.Client(pool.url) as here:
        assert not made.done()  # (what is tested: a wait, from this loop, on that one's)
        assert await here.compute(total(log, kept)) == 45
    assert what_ran(tmp_path / "ran") == ["load", "total"]


async def test_a_graph_that_reads_what_its_own_run_persists_fails_at_once(
    tmp_path: Path,
) -> None:
    """A task of the persisting run returns a graph that reads the value that run
    persists: it would wait for its own run's end. It fails at once instead."""
    log = str(tmp_path / "ran")
    async with dagrt.Client(processes=False) as client:
        box = Box(load(log, 1))
        kept = client.persist(total_of_boxed(log, box))
        box.node = kept  # (before the run starts: it starts when this test awaits)
        made = pin_of(kept).made
        assert made is not None
        with anyio.fail_after(30), pytest.raises(dagrt.TaskError) as raised:
            await made
        assert isinstance(raised.value.exception, dagrt.PersistedLostError)
        assert "part of that run" in str(raised.value)


async def test_a_stand_in_of_another_client_persisted_again_is_copied(
    pool: Pool, tmp_path: Path
) -> None:
    """A client persisting what another client persisted (or a stand-in that came back
    pickled) keeps a copy under a pin of its own: it outlives the other's."""
    log = str(tmp_path / "ran")
    async with dagrt.Client(pool.url) as client:
        async with dagrt.Client(pool.url) as owner:
            theirs = owner.persist(load(log, 10))
            mine = client.persist(theirs)
            assert pin_of(mine).key != pin_of(theirs).key
            assert await client.compute(total(log, mine)) == 45
        travelled = pickle.loads(pickle.dumps(mine))
        assert pin_of(travelled).made is None
        again = client.persist(travelled)
        assert pin_of(again).key not in {pin_of(mine).key, pin_of(theirs).key}
        del mine, travelled
        assert await client.compute(total(log, again)) == 45
        assert await client.compute(again) == list(range(10))
    assert what_ran(tmp_path / "ran") == ["load", "total", "total"]


async def test_a_task_that_ends_after_its_persisting_run_was_cancelled_leaves_nothing(
    pool: Pool, signals: Signals
) -> None:
    """Cancelled while its task runs, the run's value is released at once; the task's
    late completion deletes what it wrote (not left to its day-long time to live)."""
    async with dagrt.Client(pool.url) as client:
        kept = client.persist(gate(signals, "held", [1, 2, 3]))
        made, key = pin_of(kept).made, pin_of(kept).key
        assert made is not None
        await signals.started("held")
        made.cancel()
        with pytest.raises(asyncio.CancelledError):
            await made
        del kept
        await released(client, key)
        assert client._pins is not None
        assert key not in client._pins.live
        await signals.release("held")
        storage = RedisStorage(pool.url)
        try:
            await wait_for_events(
                storage, made.run_id, lambda es: any(e.kind == "task-finished" for e in es)
            )
            assert await pinned_entries(client) == set()
        finally:
            await storage.aclose()


async def test_a_value_that_is_gone_says_so(pool: Pool, tmp_path: Path) -> None:
    """Deleted from the server, or read by another client: PersistedLostError, not a hang
    and not a wrong value."""
    log = str(tmp_path / "ran")
    async with dagrt.Client(pool.url) as client:
        kept = client.persist(load(log, 10))
        assert await client.compute(total(log, kept)) == 45
        for entry in await pinned_entries(client):
            storage = RedisStorage(pool.url)
            await storage.adelete(entry)
            await storage.aclose()
        with pytest.raises(dagrt.TaskError) as raised:
            await client.compute(total(log, kept))
        assert isinstance(raised.value.exception, dagrt.PersistedLostError)
        assert "persisted" in str(raised.value)
    async with dagrt.Client(processes=False) as here:
        elsewhere = here.persist(load(log, 3))
        assert await here.compute(elsewhere) == [0, 1, 2]
    async with dagrt.Client(processes=False) as another:  # (the first one closed: released)
        with pytest.raises(dagrt.TaskError) as raised:
            await another.compute(total(log, elsewhere))
        assert isinstance(raised.value.exception, dagrt.PersistedLostError)


async def test_persist_from_another_thread(any_client: dagrt.Client, tmp_path: Path) -> None:
    """Dask calls persist from its own thread: it hops to the client's loop."""
    log = str(tmp_path / "ran")
    kept = await asyncio.to_thread(any_client.persist, load(log, 5))
    assert await any_client.compute(total(log, kept)) == 10


@pytest.fixture
async def started() -> AsyncIterator[dagrt.Client]:
    async with dagrt.Client(processes=False) as c:
        yield c


async def test_bad_arguments_are_refused_before_anything_runs(
    started: dagrt.Client, tmp_path: Path
) -> None:
    log = str(tmp_path / "ran")
    with pytest.raises(ValueError, match="ttl"):
        started.persist(load(log, 1), ttl=-1)
    with pytest.raises(TypeError, match="DAG"):
        started.persist(dagrt.DAG(load(log, 1)))
    with pytest.raises(TypeError, match="unexpected keyword"):
        started.persist(load(log, 1), retries=3)
    await started.close()
    with pytest.raises(dagrt.ClientClosedError):
        started.persist(load(log, 1))
    assert what_ran(tmp_path / "ran") == []
