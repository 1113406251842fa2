"""The keyspace: keys, expiry, and the commands on strings, hashes, lists, sets and
sorted sets (and COPY, SCAN, TYPE, PING, FLUSHDB).

Each command is a function of the keyspace and the command's words after its
name, answering with the raw RESP2 reply Redis gives (bytes, integers, ``None``,
lists, :class:`~.values.Status`). Keys are text; the words of a command sent by a
script are bytes, so every command reads its keys through :func:`~.values.key`.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from typing import Any

from ...exceptions import StorageError
from .values import OK, WRONGTYPE, Status, ZSet, integer, key, text, to_bytes

__all__ = ["COMMANDS", "Args", "Command", "Keyspace"]


class Keyspace:
    """Every key's value and deadline. ``wake`` is called when a stream grows."""

    __slots__ = ("data", "expires", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.data: dict[str, Any] = {}
        self.expires: dict[str, float] = {}  # key -> deadline (monotonic seconds)
        self.wake = wake

    def alive(self, name: str) -> Any:
        """The value at ``name``, or ``None`` (dropping it if it expired)."""
        deadline = self.expires.get(name)
        if deadline is not None and deadline <= time.monotonic():
            del self.expires[name]
            self.data.pop(name, None)
        return self.data.get(name)

    def sweep(self) -> int:
        """Drop every key whose deadline passed (Redis does so in the background; here
        a key that expired is dropped when it is next read, or by this); how many."""
        now = time.monotonic()
        gone = [name for name, deadline in self.expires.items() if deadline <= now]
        for name in gone:
            del self.expires[name]
            self.data.pop(name, None)
        return len(gone)

    def typed(self, name: str, kind: type, create: bool = False) -> Any:
        """The value at ``name`` if it is a ``kind`` (made empty if ``create``);
        a WRONGTYPE error if it is something else."""
        value = self.alive(name)
        if value is None:
            if not create:
                return None
            value = self.data[name] = kind()
        elif type(value) is not kind:
            raise StorageError(WRONGTYPE)
        return value

    def drop_if_empty(self, name: str, value: Any) -> None:
        """Redis deletes a hash, set or list when its last element goes."""
        if not value:
            del self.data[name]
            self.expires.pop(name, None)


Args = Sequence[Any]  # a command's words after its name (a list, or a tuple from a script)
Command = Callable[[Keyspace, Args], Any]

# --------------------------------------------------------------------------- strings and expiry


def get(db: Keyspace, a: Args) -> Any:
    return db.typed(key(a[0]), bytes)


def set_(db: Keyspace, a: Args) -> Any:
    name, value = key(a[0]), to_bytes(a[1])
    ttl_ms: int | None = None
    nx = xx = False
    i = 2
    while i < len(a):
        word = text(a[i]).upper()
        if word in ("EX", "PX") and i + 1 < len(a):
            amount = integer(a[i + 1])
            if amount <= 0:
                raise StorageError("ERR invalid expire time in 'set' command")
            ttl_ms = amount * 1000 if word == "EX" else amount
            i += 2
            continue
        if word == "NX":
            nx = True
        elif word == "XX":
            xx = True
        else:
            raise StorageError("ERR syntax error")
        i += 1
    exists = db.alive(name) is not None
    if (nx and exists) or (xx and not exists):
        return None
    db.data[name] = value
    db.expires.pop(name, None)
    if ttl_ms is not None:
        db.expires[name] = time.monotonic() + ttl_ms / 1000
    return OK


def mget(db: Keyspace, a: Args) -> Any:
    return [v if type(v := db.alive(key(k))) is bytes else None for k in a]


def delete(db: Keyspace, a: Args) -> Any:
    n = 0
    for word in a:
        name = key(word)
        if db.alive(name) is not None:
            del db.data[name]
            db.expires.pop(name, None)
            n += 1
    return n


def exists(db: Keyspace, a: Args) -> Any:
    return sum(1 for name in a if db.alive(key(name)) is not None)


def incrby(db: Keyspace, a: Args) -> Any:
    name = key(a[0])
    current = db.typed(name, bytes)
    value = (integer(current) if current is not None else 0) + integer(a[1])
    db.data[name] = str(value).encode()
    return value


def pexpire(db: Keyspace, a: Args) -> Any:
    name = key(a[0])
    if db.alive(name) is None:
        return 0
    db.expires[name] = time.monotonic() + integer(a[1]) / 1000
    return 1


def pttl(db: Keyspace, a: Args) -> Any:
    name = key(a[0])
    if db.alive(name) is None:
        return -2
    deadline = db.expires.get(name)
    return -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))


def strlen(db: Keyspace, a: Args) -> Any:
    value = db.typed(key(a[0]), bytes)
    return 0 if value is None else len(value)


def getrange(db: Keyspace, a: Args) -> Any:
    """``GETRANGE key start end`` (inclusive; negative offsets count from the end)."""
    value = db.typed(key(a[0]), bytes) or b""
    start, end = integer(a[1]), integer(a[2])
    n = len(value)
    start, end = (start + n if start < 0 else start), (end + n if end < 0 else end)
    return value[max(0, start) : max(0, min(end, n - 1) + 1)]


# --------------------------------------------------------------------------- hashes


def hset(db: Keyspace, a: Args) -> Any:
    if len(a) < 3 or len(a) % 2 == 0:
        raise StorageError("ERR wrong number of arguments for 'hset' command")
    h = db.typed(key(a[0]), dict, create=True)
    new = 0
    for i in range(1, len(a), 2):
        f = to_bytes(a[i])
        new += f not in h
        h[f] = to_bytes(a[i + 1])
    return new


def hsetnx(db: Keyspace, a: Args) -> Any:
    h = db.typed(key(a[0]), dict, create=True)
    field = to_bytes(a[1])
    if field in h:
        return 0
    h[field] = to_bytes(a[2])
    return 1


def hexists(db: Keyspace, a: Args) -> Any:
    h = db.typed(key(a[0]), dict)
    return int(h is not None and to_bytes(a[1]) in h)


def hget(db: Keyspace, a: Args) -> Any:
    h = db.typed(key(a[0]), dict)
    return None if h is None else h.get(to_bytes(a[1]))


def hmget(db: Keyspace, a: Args) -> Any:
    h = db.typed(key(a[0]), dict) or {}
    return [h.get(to_bytes(f)) for f in a[1:]]


def hgetall(db: Keyspace, a: Args) -> Any:
    h = db.typed(key(a[0]), dict) or {}
    return [x for kv in h.items() for x in kv]


def hincrby(db: Keyspace, a: Args) -> Any:
    h = db.typed(key(a[0]), dict, create=True)
    f = to_bytes(a[1])
    value = (integer(h[f]) if f in h else 0) + integer(a[2])
    h[f] = str(value).encode()
    return value


def hdel(db: Keyspace, a: Args) -> Any:
    return _remove(db, a, dict)


def _remove(db: Keyspace, a: Args, kind: type) -> int:
    """HDEL and ZREM: drop members of a dict-like value; the key goes once it is empty."""
    name = key(a[0])
    found = db.typed(name, kind)
    if found is None:
        return 0
    n = sum(1 for m in a[1:] if found.pop(to_bytes(m), None) is not None)
    db.drop_if_empty(name, found)
    return n


def hlen(db: Keyspace, a: Args) -> Any:
    return len(db.typed(key(a[0]), dict) or {})


# --------------------------------------------------------------------------- lists


def rpush(db: Keyspace, a: Args) -> Any:
    items = db.typed(key(a[0]), list, create=True)
    items.extend(to_bytes(x) for x in a[1:])
    return len(items)


def lrange(db: Keyspace, a: Args) -> Any:
    items = db.typed(key(a[0]), list) or []
    n = len(items)
    start, stop = integer(a[1]), integer(a[2])
    start = max(0, start + n if start < 0 else start)
    stop = stop + n if stop < 0 else min(stop, n - 1)
    return list(items[start : stop + 1])


def llen(db: Keyspace, a: Args) -> Any:
    return len(db.typed(key(a[0]), list) or [])


# --------------------------------------------------------------------------- sorted sets


def _score_text(score: float) -> bytes:
    return repr(score).encode()


def zadd(db: Keyspace, a: Args) -> Any:
    name = key(a[0])
    flags: set[str] = set()
    i = 1
    while i < len(a) and text(a[i]).upper() in ("NX", "XX", "GT", "LT", "CH"):
        flags.add(text(a[i]).upper())
        i += 1
    pairs = a[i:]
    if not pairs or len(pairs) % 2:
        raise StorageError("ERR syntax error")
    if "NX" in flags and ("XX" in flags or "GT" in flags or "LT" in flags):
        raise StorageError(
            "ERR GT, LT, and/or NX options at the same time are not compatible"
            if "XX" not in flags
            else "ERR XX and NX options at the same time are not compatible"
        )
    try:
        scores = [float(text(pairs[j])) for j in range(0, len(pairs), 2)]
    except ValueError:
        raise StorageError("ERR value is not a valid float") from None
    z = db.typed(name, ZSet, create="XX" not in flags)
    if z is None:
        return 0
    added = changed = 0
    for score, member in zip(scores, (to_bytes(m) for m in pairs[1::2]), strict=True):
        old = z.get(member)
        if old is None:
            if "XX" in flags:
                continue
            z[member] = score
            added += 1
            continue
        if "NX" in flags or ("GT" in flags and score <= old) or ("LT" in flags and score >= old):
            continue
        if score != old:
            z[member] = score
            changed += 1
    db.drop_if_empty(name, z)
    return added + changed if "CH" in flags else added


def zrange(db: Keyspace, a: Args) -> Any:
    z = db.typed(key(a[0]), ZSet) or {}
    flags = {text(x).upper() for x in a[3:]}
    items = sorted(z.items(), key=lambda kv: (kv[1], kv[0]), reverse="REV" in flags)
    if "BYSCORE" in flags:  # inclusive bounds (Redis 6.2's ZRANGE ... BYSCORE)
        low, high = float(text(a[1])), float(text(a[2]))
        return [m for m, score in items if low <= score <= high]
    start, stop = integer(a[1]), integer(a[2])
    n = len(items)
    start = max(0, start + n if start < 0 else start)
    stop = stop + n if stop < 0 else stop
    chosen = items[start : stop + 1]
    if "WITHSCORES" in flags:
        return [x for m, s in chosen for x in (m, _score_text(s))]
    return [m for m, _ in chosen]


def zscore(db: Keyspace, a: Args) -> Any:
    z = db.typed(key(a[0]), ZSet) or {}
    score = z.get(to_bytes(a[1]))
    return None if score is None else _score_text(score)


def zrem(db: Keyspace, a: Args) -> Any:
    return _remove(db, a, ZSet)


def zcard(db: Keyspace, a: Args) -> Any:
    return len(db.typed(key(a[0]), ZSet) or {})


# --------------------------------------------------------------------------- keys and server


def scan(db: Keyspace, a: Args) -> Any:
    cursor = integer(a[0])
    opts = {text(a[i]).upper(): a[i + 1] for i in range(1, len(a) - 1, 2)}
    match = text(opts["MATCH"]) if "MATCH" in opts else None
    count = integer(opts.get("COUNT", 10))
    names = sorted(k for k in list(db.data) if db.alive(k) is not None)
    chunk = names[cursor : cursor + count]
    nxt = cursor + count if cursor + count < len(names) else 0
    if match is not None:
        chunk = [k for k in chunk if fnmatch.fnmatchcase(k, match)]
    return [str(nxt).encode(), [k.encode() for k in chunk]]


# --------------------------------------------------------------------------- sets


def sadd(db: Keyspace, a: Args) -> Any:
    members = db.typed(key(a[0]), set, create=True)
    before = len(members)
    members.update(to_bytes(m) for m in a[1:])
    return len(members) - before


def srem(db: Keyspace, a: Args) -> Any:
    name = key(a[0])
    members = db.typed(name, set)
    if members is None:
        return 0
    before = len(members)
    members.difference_update(to_bytes(m) for m in a[1:])
    db.drop_if_empty(name, members)
    return before - len(members)


def smembers(db: Keyspace, a: Args) -> Any:
    return sorted(db.typed(key(a[0]), set) or ())


def copy(db: Keyspace, a: Args) -> Any:
    """``COPY source destination [REPLACE]``: the value and its expiry."""
    source, destination = key(a[0]), key(a[1])
    replace = any(text(w).upper() == "REPLACE" for w in a[2:])
    value = db.alive(source)
    if value is None or (db.alive(destination) is not None and not replace):
        return 0
    if not isinstance(value, bytes | dict | set | list):
        raise StorageError("ERR COPY of this type is not supported by InMemoryStorage")
    db.data[destination] = value if isinstance(value, bytes) else type(value)(value)
    db.expires.pop(destination, None)
    if source in db.expires:
        db.expires[destination] = db.expires[source]
    return 1


_TYPES = {
    "bytes": "string",
    "dict": "hash",
    "list": "list",
    "set": "set",
    "ZSet": "zset",
    "Stream": "stream",
}


def type_(db: Keyspace, a: Args) -> Any:
    value = db.alive(key(a[0]))
    return Status(b"none" if value is None else _TYPES[type(value).__name__].encode())


def ping(db: Keyspace, a: Args) -> Any:
    return Status(b"PONG")


def flushdb(db: Keyspace, a: Args) -> Any:
    db.data.clear()
    db.expires.clear()
    return OK


COMMANDS: dict[str, Command] = {
    "GET": get,
    "SET": set_,
    "MGET": mget,
    "DEL": delete,
    "EXISTS": exists,
    "INCRBY": incrby,
    "PEXPIRE": pexpire,
    "PTTL": pttl,
    "STRLEN": strlen,
    "GETRANGE": getrange,
    "HSET": hset,
    "HSETNX": hsetnx,
    "HEXISTS": hexists,
    "HGET": hget,
    "HMGET": hmget,
    "HGETALL": hgetall,
    "HINCRBY": hincrby,
    "HDEL": hdel,
    "HLEN": hlen,
    "RPUSH": rpush,
    "LRANGE": lrange,
    "LLEN": llen,
    "SADD": sadd,
    "SREM": srem,
    "SMEMBERS": smembers,
    "COPY": copy,
    "ZADD": zadd,
    "ZRANGE": zrange,
    "ZSCORE": zscore,
    "ZREM": zrem,
    "ZCARD": zcard,
    "SCAN": scan,
    "TYPE": type_,
    "PING": ping,
    "FLUSHDB": flushdb,
}
