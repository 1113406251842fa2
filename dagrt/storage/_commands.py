"""Commands as data: what to send, and how to read the reply.

Each builder returns a :class:`Cmd`: the command's words and a parser for its
raw RESP2 reply. Both backends answer with raw replies (``RedisStorage``
switches redis-py's own reply callbacks off; ``InMemoryStorage`` emulates the
same shapes), so one parser serves both, and the sync and async forms of
every method are the same builder sent through a different seam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..serialize import Frame

__all__ = ["Cmd", "Entry", "Fields"]

Value = bytes | str | int | float | Frame
Fields = Mapping[Any, Value]  # keys: str or bytes
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry: (id, fields)


class Cmd(NamedTuple):
    args: tuple[Any, ...]
    parse: Callable[[Any], Any] | None = None
    key: str | None = None  # the key whose value is written (for size errors)
    size: int = 0  # bytes of value payload sent (checked against the size limit)


# --------------------------------------------------------------------------- parsers


def _ok(reply: Any) -> bool:
    return reply is not None and reply not in (0, b"0")


def _int(reply: Any) -> int:
    return int(reply)


def _bool(reply: Any) -> bool:
    return bool(int(reply))


def _pairs(reply: Sequence[Any]) -> dict[bytes, bytes]:
    it = iter(reply)
    return dict(zip(it, it, strict=True))


def _entries(reply: Sequence[Any] | None) -> list[Entry]:
    if not reply:
        return []
    # Entries deleted while pending come back as (id, nil) from XAUTOCLAIM/XCLAIM.
    return [(eid, _pairs(fields)) for eid, fields in reply if fields is not None]


def _streams(reply: Sequence[Any] | None) -> list[tuple[str, list[Entry]]]:
    if not reply:
        return []
    out = []
    for name, entries in reply:
        out.append((name.decode() if isinstance(name, bytes) else name, _entries(entries)))
    return out


def _autoclaim(reply: Sequence[Any]) -> tuple[bytes, list[Entry], list[bytes]]:
    next_id = reply[0]
    deleted = list(reply[2]) if len(reply) > 2 else []
    deleted += [eid for eid, fields in reply[1] if fields is None]
    return next_id, _entries(reply[1]), deleted


def _ttl(reply: Any) -> float | None:
    ms = int(reply)
    return None if ms < 0 else ms / 1000.0


def _zrange_scores(reply: Sequence[Any]) -> list[tuple[bytes, float]]:
    it = iter(reply)
    return [(member, float(score)) for member, score in zip(it, it, strict=True)]


def _pending_summary(reply: Sequence[Any]) -> dict[str, Any]:
    count, low, high, consumers = reply
    return {
        "pending": int(count),
        "min": low,
        "max": high,
        "consumers": {name.decode(): int(n) for name, n in (consumers or [])},
    }


def _groups(reply: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for flat in reply:
        info = _pairs(flat)
        out.append({k.decode(): v for k, v in info.items()})
    return out


def _scan(reply: Sequence[Any]) -> tuple[int, list[str]]:
    cursor, keys = reply
    return int(cursor), [k.decode() for k in keys]


# --------------------------------------------------------------------------- helpers


def _size(value: Value) -> int:
    return len(value) if isinstance(value, bytes | bytearray | memoryview | str | Frame) else 0


def _flat_fields(fields: Fields) -> tuple[list[Any], int]:
    if not fields:
        raise ValueError("a stream entry or hash needs at least one field")
    flat: list[Any] = []
    size = 0
    for k, v in fields.items():
        flat.append(k)
        flat.append(v)
        size += _size(v)
    return flat, size


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# --------------------------------------------------------------------------- strings


def get(key: str) -> Cmd:
    return Cmd(("GET", key))


def set_(key: str, value: Value, ex: float | None = None, nx: bool = False) -> Cmd:
    args: list[Any] = ["SET", key, value]
    if ex is not None:
        args += ["PX", _ms(ex)]
    if nx:
        args.append("NX")
    return Cmd(tuple(args), _ok, key, _size(value))


def mget(keys: Sequence[str]) -> Cmd:
    return Cmd(("MGET", *keys), list)


def delete(keys: Sequence[str]) -> Cmd:
    return Cmd(("DEL", *keys), _int)


def exists(keys: Sequence[str]) -> Cmd:
    return Cmd(("EXISTS", *keys), _int)


def incr(key: str, amount: int = 1) -> Cmd:
    return Cmd(("INCRBY", key, amount), _int)


def expire(key: str, seconds: float) -> Cmd:
    return Cmd(("PEXPIRE", key, _ms(seconds)), _bool)


def ttl(key: str) -> Cmd:
    return Cmd(("PTTL", key), _ttl)


def strlen(key: str) -> Cmd:
    return Cmd(("STRLEN", key), _int)


# --------------------------------------------------------------------------- hashes


def hset(key: str, mapping: Fields) -> Cmd:
    flat, size = _flat_fields(mapping)
    return Cmd(("HSET", key, *flat), _int, key, size)


def hsetnx(key: str, field: str | bytes, value: Value) -> Cmd:
    return Cmd(("HSETNX", key, field, value), _bool, key, _size(value))


def hget(key: str, field: str | bytes) -> Cmd:
    return Cmd(("HGET", key, field))


def hmget(key: str, fields: Sequence[str | bytes]) -> Cmd:
    return Cmd(("HMGET", key, *fields), list)


def hgetall(key: str) -> Cmd:
    return Cmd(("HGETALL", key), _pairs)


def hincrby(key: str, field: str | bytes, amount: int = 1) -> Cmd:
    return Cmd(("HINCRBY", key, field, amount), _int)


def hdel(key: str, fields: Sequence[str | bytes]) -> Cmd:
    return Cmd(("HDEL", key, *fields), _int)


def hlen(key: str) -> Cmd:
    return Cmd(("HLEN", key), _int)


# --------------------------------------------------------------------------- lists


def rpush(key: str, values: Sequence[Value]) -> Cmd:
    return Cmd(("RPUSH", key, *values), _int)


def lrange(key: str, start: int = 0, stop: int = -1) -> Cmd:
    return Cmd(("LRANGE", key, start, stop), list)


def llen(key: str) -> Cmd:
    return Cmd(("LLEN", key), _int)


# --------------------------------------------------------------------------- sorted sets


def zadd(key: str, mapping: Mapping[str | bytes, float]) -> Cmd:
    flat: list[Any] = []
    for member, score in mapping.items():
        flat += [score, member]
    return Cmd(("ZADD", key, *flat), _int)


def zrange(
    key: str, start: int = 0, stop: int = -1, *, desc: bool = False, withscores: bool = False
) -> Cmd:
    args: list[Any] = ["ZRANGE", key, start, stop]
    if desc:
        args.append("REV")
    if withscores:
        args.append("WITHSCORES")
        return Cmd(tuple(args), _zrange_scores)
    return Cmd(tuple(args), list)


def zrange_by_score(key: str, low: float, high: float) -> Cmd:
    """Members with ``low <= score <= high``, lowest first."""
    return Cmd(("ZRANGE", key, _score(low), _score(high), "BYSCORE"), list)


def _score(x: float) -> str:
    return "+inf" if x == float("inf") else "-inf" if x == float("-inf") else repr(float(x))


def zrem(key: str, members: Sequence[str | bytes]) -> Cmd:
    return Cmd(("ZREM", key, *members), _int)


def zcard(key: str) -> Cmd:
    return Cmd(("ZCARD", key), _int)


# --------------------------------------------------------------------------- streams


def xadd(
    stream: str,
    fields: Fields,
    *,
    id: str = "*",
    maxlen: int | None = None,
    approximate: bool = True,
) -> Cmd:
    flat, size = _flat_fields(fields)
    args: list[Any] = ["XADD", stream]
    if maxlen is not None:
        args += ["MAXLEN", "~" if approximate else "=", maxlen]
    args.append(id)
    return Cmd((*args, *flat), None, stream, size)


def xlen(stream: str) -> Cmd:
    return Cmd(("XLEN", stream), _int)


def xrange(stream: str, start: str = "-", end: str = "+", count: int | None = None) -> Cmd:
    args: list[Any] = ["XRANGE", stream, start, end]
    if count is not None:
        args += ["COUNT", count]
    return Cmd(tuple(args), _entries)


def xrevrange(stream: str, end: str = "+", start: str = "-", count: int | None = None) -> Cmd:
    args: list[Any] = ["XREVRANGE", stream, end, start]
    if count is not None:
        args += ["COUNT", count]
    return Cmd(tuple(args), _entries)


def _stream_args(streams: Mapping[str, str | bytes]) -> list[Any]:
    if not streams:
        raise ValueError("name at least one stream to read")
    return ["STREAMS", *streams.keys(), *streams.values()]


def xread(
    streams: Mapping[str, str | bytes], count: int | None = None, block: float | None = None
) -> Cmd:
    args: list[Any] = ["XREAD"]
    if count is not None:
        args += ["COUNT", count]
    if block is not None:
        args += ["BLOCK", _ms(block)]
    return Cmd((*args, *_stream_args(streams)), _streams)


def xgroup_create(stream: str, group: str, id: str = "$", mkstream: bool = True) -> Cmd:
    args: list[Any] = ["XGROUP", "CREATE", stream, group, id]
    if mkstream:
        args.append("MKSTREAM")
    return Cmd(tuple(args), _ok)


def xreadgroup(
    group: str,
    consumer: str,
    streams: Mapping[str, str | bytes],
    count: int | None = None,
    block: float | None = None,
    noack: bool = False,
) -> Cmd:
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer]
    if count is not None:
        args += ["COUNT", count]
    if block is not None:
        args += ["BLOCK", _ms(block)]
    if noack:
        args.append("NOACK")
    return Cmd((*args, *_stream_args(streams)), _streams)


def xack(stream: str, group: str, ids: Sequence[str | bytes]) -> Cmd:
    return Cmd(("XACK", stream, group, *ids), _int)


def xautoclaim(
    stream: str,
    group: str,
    consumer: str,
    min_idle: float,
    start: str | bytes = "0-0",
    count: int = 100,
) -> Cmd:
    return Cmd(
        (
            "XAUTOCLAIM",
            stream,
            group,
            consumer,
            max(0, int(min_idle * 1000)),
            start,
            "COUNT",
            count,
        ),
        _autoclaim,
    )


def xpending(stream: str, group: str) -> Cmd:
    return Cmd(("XPENDING", stream, group), _pending_summary)


def xinfo_groups(stream: str) -> Cmd:
    return Cmd(("XINFO", "GROUPS", stream), _groups)


def xdel(stream: str, ids: Sequence[str | bytes]) -> Cmd:
    return Cmd(("XDEL", stream, *ids), _int)


def xtrim(
    stream: str, maxlen: int | None = None, minid: str | None = None, approximate: bool = True
) -> Cmd:
    if (maxlen is None) == (minid is None):
        raise ValueError("xtrim takes either maxlen or minid")
    strategy, bound = ("MAXLEN", maxlen) if maxlen is not None else ("MINID", minid)
    return Cmd(("XTRIM", stream, strategy, "~" if approximate else "=", bound), _int)


# --------------------------------------------------------------------------- keys and server


def scan(cursor: int, match: str | None = None, count: int = 1000) -> Cmd:
    args: list[Any] = ["SCAN", cursor]
    if match is not None:
        args += ["MATCH", match]
    args += ["COUNT", count]
    return Cmd(tuple(args), _scan)


def ping() -> Cmd:
    return Cmd(("PING",), _ok)


def flushdb() -> Cmd:
    return Cmd(("FLUSHDB",), _ok)


def chunks(items: Sequence[Any] | Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Split ``items`` into lists of at most ``size``."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def batches(cmds: Iterable[Cmd], max_count: int, max_bytes: int) -> Iterable[list[Cmd]]:
    """Split commands into round trips of at most ``max_count`` commands and about
    ``max_bytes`` of values (a single larger command goes alone)."""
    batch: list[Cmd] = []
    size = 0
    for cmd in cmds:
        if batch and (len(batch) >= max_count or size + cmd.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(cmd)
        size += cmd.size
    if batch:
        yield batch
