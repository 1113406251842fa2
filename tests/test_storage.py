"""The storage contract: each test runs on {InMemory, Redis} x {sync, async}.

``store`` wraps one backend in one form (see conftest); the test bodies do
not know which, so both backends and both forms must behave alike.
"""

from __future__ import annotations

import anyio
import pytest
from helpers import Form

from dagrt import StorageError, ValueTooLargeError
from dagrt.storage import InMemoryStorage, Script
from dagrt.storage import commands as cmd


async def test_strings(store: Form) -> None:
    assert await store.get("missing") is None
    assert await store.set("k", b"v") is True
    assert await store.get("k") == b"v"
    assert await store.set("k", b"other", nx=True) is False
    assert await store.get("k") == b"v"
    assert await store.set("n", 42) is True
    assert await store.get("n") == b"42"
    assert await store.set("s", "text") is True
    assert await store.strlen("s") == 4
    assert await store.incr("n") == 43
    assert await store.incr("n", -3) == 40
    assert await store.incr("fresh") == 1
    assert await store.exists("k", "n", "missing") == 2
    assert await store.delete("k", "missing") == 1
    assert await store.exists("k") == 0


async def test_many_keys_in_chunks(store: Form) -> None:
    mapping = {f"key:{i}": f"value:{i}".encode() for i in range(2_500)}
    await store.mset(mapping)
    keys = [*mapping, "absent"]
    values = await store.mget(keys)
    assert values[:-1] == list(mapping.values())
    assert values[-1] is None
    assert sorted(await store.scan("key:*")) == sorted(mapping)
    assert await store.delete_matching("key:1*") == 1 + 10 + 100 + 1000
    assert await store.delete(*mapping) == 2_500 - 1_111


async def test_expiry(store: Form) -> None:
    await store.set("short", b"x", ex=0.05)
    ttl = await store.ttl("short")
    assert ttl is not None
    assert 0 < ttl <= 0.05
    await store.set("long", b"x")
    assert await store.ttl("long") is None
    assert await store.expire("long", 100) is True
    assert 99 < (await store.ttl("long") or 0) <= 100
    assert await store.expire("missing", 1) is False
    await anyio.sleep(0.1)  # expiry is a matter of time: let it pass
    assert await store.get("short") is None


async def test_hashes(store: Form) -> None:
    assert await store.hset("h", {"a": b"1", "b": 2}) == 2
    assert await store.hset("h", {"a": b"x", "c": "3"}) == 1
    assert await store.hget("h", "a") == b"x"
    assert await store.hget("h", "zz") is None
    assert await store.hmget("h", ["a", "zz", "b"]) == [b"x", None, b"2"]
    assert await store.hgetall("h") == {b"a": b"x", b"b": b"2", b"c": b"3"}
    assert await store.hincrby("h", "b", 5) == 7
    assert await store.hincrby("h", "new", -1) == -1
    assert await store.hlen("h") == 4
    assert await store.hdel("h", "a", "zz") == 1
    assert await store.hgetall("nothing") == {}


async def test_sorted_sets(store: Form) -> None:
    assert await store.zadd("z", {"b": 2, "a": 1, "c": 3}) == 3
    assert await store.zrange("z") == [b"a", b"b", b"c"]
    assert await store.zrange("z", 0, 1, desc=True) == [b"c", b"b"]
    assert await store.zrange("z", withscores=True) == [(b"a", 1.0), (b"b", 2.0), (b"c", 3.0)]
    assert await store.zrem("z", "b", "nope") == 1
    assert await store.zcard("z") == 2


async def test_streams_append_and_range(store: Form) -> None:
    ids = [await store.xadd("s", {"n": i}) for i in range(5)]
    assert ids == sorted(ids)
    assert await store.xlen("s") == 5
    entries = await store.xrange("s")
    assert [f[b"n"] for _, f in entries] == [b"0", b"1", b"2", b"3", b"4"]
    assert [eid for eid, _ in entries] == ids
    assert len(await store.xrange("s", ids[1].decode(), ids[3].decode())) == 3
    assert len(await store.xrange("s", count=2)) == 2
    assert [f[b"n"] for _, f in await store.xrevrange("s", count=2)] == [b"4", b"3"]
    many = await store.xadd_many("s", [{"n": 10 + i} for i in range(1_500)])
    assert len(many) == 1_500
    assert await store.xlen("s") == 1_505
    assert await store.xtrim("s", 10, approximate=False) == 1_495
    assert await store.xdel("s", many[-1]) == 1
    assert await store.xlen("s") == 9


async def test_stream_read_after_an_id_and_with_maxlen(store: Form) -> None:
    first = await store.xadd("s", {"a": 1})
    await store.xadd("s", {"a": 2})
    [(name, entries)] = await store.xread({"s": first})
    assert name == "s"
    assert [f[b"a"] for _, f in entries] == [b"2"]
    assert await store.xread({"s": "$"}) == []
    for i in range(50):
        await store.xadd("capped", {"i": i}, maxlen=10, approximate=False)
    assert await store.xlen("capped") == 10


async def test_a_blocked_read_wakes_on_a_write(store: Form) -> None:
    last = await store.xadd("s", {"x": 0})
    result: list = []

    async def reader() -> None:
        result.extend(await store.xread({"s": last}, block=10))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.05)  # let the reader block first
            await store.xadd("s", {"x": 1})
    [(_, entries)] = result
    assert entries[0][1] == {b"x": b"1"}


async def test_a_blocked_read_times_out_empty(store: Form) -> None:
    with anyio.fail_after(5):
        assert await store.xread({"s": "$"}, block=0.1) == []


async def test_consumer_groups(store: Form) -> None:
    assert await store.xgroup_create("tasks", "workers", "0") is True
    assert await store.xgroup_create("tasks", "workers", "0") is False
    ids = [await store.xadd("tasks", {"t": i}) for i in range(3)]
    [(_, got)] = await store.xreadgroup("workers", "w1", {"tasks": ">"}, count=2)
    assert [eid for eid, _ in got] == ids[:2]
    [(_, got2)] = await store.xreadgroup("workers", "w2", {"tasks": ">"})
    assert [eid for eid, _ in got2] == ids[2:]
    assert await store.xreadgroup("workers", "w2", {"tasks": ">"}) == []
    # a consumer's own pending history
    [(_, mine)] = await store.xreadgroup("workers", "w1", {"tasks": "0"})
    assert [eid for eid, _ in mine] == ids[:2]
    summary = await store.xpending("tasks", "workers")
    assert summary["pending"] == 3
    assert summary["consumers"] == {"w1": 2, "w2": 1}
    assert await store.xack("tasks", "workers", ids[0]) == 1
    assert await store.xack("tasks", "workers", ids[0]) == 0
    groups = await store.xinfo_groups("tasks")
    assert groups[0]["name"] == b"workers"
    assert int(groups[0]["pending"]) == 2


async def test_autoclaim_takes_over_idle_entries(store: Form) -> None:
    await store.xgroup_create("tasks", "g", "0")
    ids = [await store.xadd("tasks", {"t": i}) for i in range(3)]
    await store.xreadgroup("g", "dead", {"tasks": ">"})
    _, claimed, deleted = await store.xautoclaim("tasks", "g", "alive", 60)
    assert claimed == []  # not idle long enough
    await store.xdel("tasks", ids[2])
    _, claimed, deleted = await store.xautoclaim("tasks", "g", "alive", 0)
    assert [eid for eid, _ in claimed] == ids[:2]
    assert deleted == [ids[2]]
    [(_, mine)] = await store.xreadgroup("g", "alive", {"tasks": "0"})
    assert [eid for eid, _ in mine] == ids[:2]


async def test_a_group_on_a_missing_stream(store: Form) -> None:
    with pytest.raises(StorageError, match="NOGROUP"):
        await store.xreadgroup("nogroup", "c", {"nostream": ">"})
    with pytest.raises(StorageError, match="requires the key to exist"):
        await store.xgroup_create("nostream", "g", "0", mkstream=False)


SWAP = Script(
    "swap",
    """
local a = redis.call('GET', KEYS[1])
local b = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[1], b or ARGV[1])
redis.call('SET', KEYS[2], a or ARGV[1])
return {a, b, redis.call('INCRBY', KEYS[3], 1)}
""",
)


async def test_scripts_run_atomically_with_the_same_result(store: Form) -> None:
    await store.set("x", b"1")
    assert await store.run_script(SWAP, ["x", "y", "calls"], ["empty"]) == [b"1", None, 1]
    assert await store.mget(["x", "y"]) == [b"empty", b"1"]
    assert await store.run_script(SWAP, ["x", "y", "calls"], ["empty"]) == [b"empty", b"1", 2]


async def test_a_script_is_reloaded_after_the_server_forgets_it(redis_storage) -> None:
    assert redis_storage.run_script(SWAP, ["x", "y", "c"], ["v"])[2] == 1
    redis_storage._call(cmd.Cmd(("SCRIPT", "FLUSH")))
    assert redis_storage.run_script(SWAP, ["x", "y", "c"], ["v"])[2] == 2
    redis_storage._call(cmd.Cmd(("SCRIPT", "FLUSH")))
    assert (await redis_storage.arun_script(SWAP, ["x", "y", "c"], ["v"]))[2] == 3
    await redis_storage.aclose()


async def test_pipelines_of_built_commands(store: Form) -> None:
    replies = await store.pipeline(
        [cmd.set_("a", b"1"), cmd.incr("b", 5), cmd.hset("h", {"f": 1}), cmd.get("a")]
    )
    assert replies == [True, 5, 1, b"1"]


async def test_sets_and_copy_through_built_commands(store: Form) -> None:
    """What a run's list of sub-runs (a set) and the cache (COPY) need, alike on both."""
    replies = await store.pipeline(
        [
            cmd.Cmd(("SADD", "s", "a", "b", "a")),
            cmd.Cmd(("SREM", "s", "b", "zz")),
            cmd.Cmd(("SMEMBERS", "s")),
            cmd.Cmd(("SMEMBERS", "nothing")),
            cmd.Cmd(("HEXISTS", "h", "f")),
            cmd.set_("src", b"value", ex=100),
            cmd.Cmd(("COPY", "src", "dst")),
            cmd.Cmd(("COPY", "src", "dst")),
            cmd.Cmd(("COPY", "missing", "dst2")),
            cmd.get("dst"),
            cmd.Cmd(("PTTL", "dst")),
        ]
    )
    added, removed, members, none, exists, _, copied, again, missing, value, ttl = replies
    assert (added, removed, sorted(members), list(none), exists) == (2, 1, [b"a"], [], 0)
    assert (copied, again, missing, value) == (1, 0, 0, b"value")
    assert 0 < ttl <= 100_000  # the expiry is copied too


async def test_large_values_of_every_buffer_type_arrive_whole_and_in_order(
    store: Form,
) -> None:
    """Large arguments are sent as they are (not packed into one buffer): bytes,
    bytearray, memoryviews (also of a numpy array, also not contiguous) come back
    byte for byte, and small commands on either side keep their order."""
    import numpy as np

    big = bytes(range(256)) * 12_289  # ~3 MB, not a multiple of any slice size
    array = np.arange(600_000, dtype=np.float64)
    strided = memoryview(array)[::2]  # not contiguous: sent as a copy
    values = {
        "b": big,
        "ba": bytearray(big),
        "mv": memoryview(big)[5:],
        "np": memoryview(array),
        "st": strided,
    }
    replies = await store.pipeline(
        [cmd.set_("before", b"1")]
        + [cmd.set_(key, value) for key, value in values.items()]
        + [cmd.incr("after", 2)]
        + [cmd.get(key) for key in values]
    )
    assert replies[0] is True
    assert replies[-len(values) - 1] == 2
    expected = [bytes(v) if not isinstance(v, memoryview) else v.tobytes() for v in values.values()]
    assert replies[-len(values) :] == expected
    for key, value in zip(values, expected, strict=True):
        assert await store.get(key) == value


async def test_a_frame_in_pieces_is_stored_as_its_joined_bytes(store: Form) -> None:
    """A task result's frame goes to storage as pieces (nothing joined on the way);
    what is stored, and read back, is the frame ``dumps`` would have made."""
    import numpy as np

    from dagrt.serialize import Frame, dumps, dumps_frame, loads

    value = {"x": np.arange(300_000, dtype=np.float64), "y": np.arange(77, dtype=np.int8)}
    frame = dumps_frame(value)
    assert isinstance(frame, Frame)
    replies = await store.pipeline([cmd.set_("f", frame, ex=60), cmd.incr("after"), cmd.get("f")])
    assert replies[:2] == [True, 1]
    assert replies[2] == dumps(value)
    assert await store.strlen("f") == len(frame)
    assert await store.set("g", frame) is True
    back = loads(await store.get("g"))
    assert np.array_equal(back["x"], value["x"])
    assert np.array_equal(back["y"], value["y"])


async def test_wrong_types_are_clear_errors(store: Form) -> None:
    await store.hset("h", {"f": 1})
    with pytest.raises(StorageError, match="WRONGTYPE"):
        await store.get("h")
    await store.set("n", b"abc")
    with pytest.raises(StorageError, match="not an integer"):
        await store.incr("n")


async def test_ping_and_flush(store: Form) -> None:
    assert await store.ping() is True
    await store.set("a", b"1")
    await store.flushdb()
    assert await store.exists("a") == 0


async def test_a_value_over_the_limit_names_its_key() -> None:
    small = InMemoryStorage(max_value_bytes=1024)
    with pytest.raises(ValueTooLargeError, match="'big'"):
        small.set("big", b"x" * 2048)
    with pytest.raises(ValueTooLargeError, match="'big'"):
        await small.aset("big", b"x" * 2048)
    assert small.get("big") is None


async def test_values_of_every_size_read_back_exactly(store: Form) -> None:
    """Sizes around the point where values are received in place (64 KiB) and
    around the read buffer (1 MiB), alone, in one mget, and missing ones."""
    sizes = [0, 1, 65_535, 65_536, 65_537, 1_048_574, 1_048_576, 3_000_001]
    values = {f"v{n}": bytes([n % 251]) * n for n in sizes}
    await store.mset(values)
    keys = [k for k in values for _ in (0, 1)]  # each twice, in one reply
    got = await store.mget([*keys, "missing"])
    assert [bytes(v) for v in got[:-1]] == [values[k] for k in keys]
    assert got[-1] is None
    for key, value in values.items():
        assert bytes(await store.get(key)) == value
    assert await store.get("missing") is None


async def test_concurrent_value_reads_each_get_their_own(redis_storage) -> None:
    """Reads from many tasks share one pipelined connection: large and small
    replies interleave on it and still reach the right callers."""
    values = {f"k{i}": bytes([i]) * (i * 40_000 + 7) for i in range(40)}
    await redis_storage.amset(values)
    got: dict[str, bytes] = {}

    async def read(key: str) -> None:
        got[key] = bytes(await redis_storage.aget(key))

    async def read_many(keys: list[str]) -> None:
        for key, value in zip(keys, await redis_storage.amget(keys), strict=True):
            assert bytes(value) == values[key]

    async with anyio.create_task_group() as tg:
        for key in values:
            tg.start_soon(read, key)
            tg.start_soon(read_many, list(values)[::3])
    assert got == values


async def test_a_large_value_is_received_in_place_and_loads_without_a_copy(
    redis_storage,
) -> None:
    import numpy as np

    from dagrt.serialize import dumps, loads

    array = np.arange(2_000_000, dtype=np.float64)
    await redis_storage.aset("a", dumps(array))
    await redis_storage.aset("small", b"s")
    first = await redis_storage.aget("a")  # small reads go the pipelined way, as bytes
    assert isinstance(first, bytes)
    frame = await redis_storage.aget("a")  # once a large value came, large ones come in place
    assert isinstance(frame, bytearray)  # writable: no copy needed to rebuild arrays
    value = loads(frame)
    assert np.array_equal(value, array)
    assert value.flags.writeable
    assert np.shares_memory(value, np.frombuffer(frame, dtype=np.uint8))
    for _ in range(16):  # a streak of small reads: back to the pipelined connection
        assert await redis_storage.aget("small") == b"s"
    assert isinstance(await redis_storage.aget("a"), bytes)


async def test_a_cancelled_read_leaves_the_connection_in_step(redis_storage) -> None:
    """A caller that gives up in the middle of a large reply: the reply is still
    read (and dropped), and the next read gets its own value."""
    await redis_storage.aset("big", b"x" * 20_000_000)
    await redis_storage.aset("small", b"y")
    for delay in (0, 0.001, 0.005, 0, 0.001, 0.005):  # on either connection
        with anyio.move_on_after(delay):
            await redis_storage.aget("big")
        assert await redis_storage.aget("small") == b"y"
        assert await redis_storage.amget(["small", "missing"]) == [b"y", None]
