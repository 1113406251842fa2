"""``InMemoryStorage``: the ``Storage`` interface inside this process.

It answers the same commands as Redis with the same reply shapes (the subset
dagrt uses: strings, hashes, sorted sets, streams with consumer groups, expiry,
SCAN, and scripts through their Python twins), so every ``Storage`` method and
parser is shared with ``RedisStorage`` and one contract test suite runs on both.

One re-entrant lock makes every command atomic and the object thread-safe; a
batch or a script holds it for its whole length, as Redis runs them without
interleaving. Blocking stream reads wait on a condition (sync) or on futures
woken by the writer (async, from any thread or loop), never by polling.
"""

from __future__ import annotations

import asyncio
import bisect
import fnmatch
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from ..exceptions import StorageError, ValueTooLargeError
from ..serialize import Frame
from ._commands import Cmd
from .base import NoScriptError, Storage, registered_script

__all__ = ["InMemoryStorage"]

StreamId = tuple[int, int]
_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def _b(value: Any) -> bytes:
    """Values as Redis stores them: bytes, numbers as their text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int | float):
        return repr(value).encode()
    if isinstance(value, bytearray | memoryview | Frame):
        return bytes(value)
    raise StorageError(f"invalid value type {type(value).__name__}: use bytes, str, int or float")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(_s(value))
    except ValueError:
        raise StorageError("ERR value is not an integer or out of range") from None


def _id_bytes(sid: StreamId) -> bytes:
    return f"{sid[0]}-{sid[1]}".encode()


def _parse_id(text: Any, *, default_seq: int = 0) -> StreamId:
    s = _s(text)
    try:
        if "-" in s:
            ms, seq = s.split("-", 1)
            return int(ms), int(seq)
        return int(s), default_seq
    except ValueError:
        raise StorageError("ERR Invalid stream ID specified as stream command argument") from None


_MAX_SEQ = (1 << 64) - 1


class _Group:
    __slots__ = ("consumers", "last", "pel")

    def __init__(self, last: StreamId) -> None:
        self.last = last
        # id -> [consumer, last delivery (monotonic ms), delivery count]
        self.pel: dict[StreamId, list[Any]] = {}
        self.consumers: set[str] = set()


class _Stream:
    __slots__ = ("fields", "groups", "ids", "last")

    def __init__(self) -> None:
        self.ids: list[StreamId] = []
        self.fields: dict[StreamId, list[bytes]] = {}
        self.last: StreamId = (0, 0)
        self.groups: dict[str, _Group] = {}

    def after(self, sid: StreamId, count: int | None) -> list[Any]:
        start = bisect.bisect_right(self.ids, sid)
        stop = len(self.ids) if count is None else min(len(self.ids), start + count)
        return [self.entry(i) for i in self.ids[start:stop]]

    def entry(self, sid: StreamId) -> list[Any]:
        return [_id_bytes(sid), list(self.fields[sid])]

    def delete(self, sid: StreamId) -> bool:
        if sid not in self.fields:
            return False
        del self.fields[sid]
        del self.ids[bisect.bisect_left(self.ids, sid)]
        return True


class InMemoryStorage(Storage):
    """Storage in this process's memory; thread-safe and usable from any event loop."""

    def __init__(self, *, max_value_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_value_bytes = max_value_bytes
        self._data: dict[str, Any] = {}
        self._expires: dict[str, float] = {}
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<InMemoryStorage {len(self._data)} keys>"

    # -- seams -------------------------------------------------------------------

    def _call(self, cmd: Cmd) -> Any:
        with self._lock:
            reply = self._execute(cmd)
        return cmd.parse(reply) if cmd.parse is not None else reply

    async def _acall(self, cmd: Cmd) -> Any:
        return self._call(cmd)

    def _call_many(self, cmds: Sequence[Cmd]) -> list[Any]:
        with self._lock:
            replies = [self._execute(cmd) for cmd in cmds]
        return [
            cmd.parse(r) if cmd.parse is not None else r
            for cmd, r in zip(cmds, replies, strict=True)
        ]

    async def _acall_many(self, cmds: Sequence[Cmd]) -> list[Any]:
        return self._call_many(cmds)

    def _call_blocking(self, cmd: Cmd, block: float) -> Any:
        deadline = time.monotonic() + block
        with self._cond:
            while True:
                reply = self._execute(cmd)
                left = deadline - time.monotonic()
                if reply or left <= 0:
                    break
                self._cond.wait(left)
        return cmd.parse(reply) if cmd.parse is not None else reply

    async def _acall_blocking(self, cmd: Cmd, block: float) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            with self._lock:
                reply = self._execute(cmd)
                if reply:
                    break
                self._waiters.add((loop, waiter))
            left = deadline - loop.time()
            try:
                if left > 0:
                    with anyio.move_on_after(left):
                        await waiter
            finally:
                with self._lock:
                    self._waiters.discard((loop, waiter))
            if left <= 0:
                break
        return cmd.parse(reply) if cmd.parse is not None else reply

    def close(self) -> None:
        self._closed = True

    async def aclose(self) -> None:
        self._closed = True

    def _wake(self) -> None:
        """A stream grew: wake blocked readers in every thread and loop."""
        self._cond.notify_all()
        for loop, fut in list(self._waiters):
            loop.call_soon_threadsafe(_resolve, fut)
        self._waiters.clear()

    # -- the command interpreter (caller holds the lock) --------------------------

    def _execute(self, cmd: Cmd) -> Any:
        if cmd.size > self.max_value_bytes:
            raise ValueTooLargeError(
                f"value for {cmd.key!r} is {cmd.size} bytes; this storage accepts at most "
                f"{self.max_value_bytes}"
            )
        name = cmd.args[0].upper()
        handler = _HANDLERS.get(name)
        if handler is None:
            raise StorageError(f"ERR unknown command '{name}' for InMemoryStorage")
        return handler(self, list(cmd.args[1:]))

    def call(self, *args: Any) -> Any:
        """Run one command by its words, as Lua's ``redis.call`` (for script twins)."""
        return self._execute(Cmd(tuple(args)))

    def _alive(self, key: str) -> Any:
        deadline = self._expires.get(key)
        if deadline is not None and deadline <= time.monotonic():
            del self._expires[key]
            self._data.pop(key, None)
        return self._data.get(key)

    def _typed(self, key: str, kind: type, create: bool = False) -> Any:
        value = self._alive(key)
        if value is None:
            if not create:
                return None
            value = self._data[key] = kind()
        elif type(value) is not kind:
            raise StorageError(_WRONGTYPE)
        return value

    def _stream(self, key: str, create: bool = False) -> _Stream | None:
        return self._typed(key, _Stream, create)

    # strings

    def _get(self, a: list[Any]) -> Any:
        return self._typed(a[0], bytes)

    def _set(self, a: list[Any]) -> Any:
        key, value, rest = a[0], _b(a[1]), [_s(x).upper() for x in a[2:]]
        px = None
        if "PX" in rest:
            px = _int(a[2 + rest.index("PX") + 1])
        if "NX" in rest and self._alive(key) is not None:
            return None
        self._data[key] = value
        self._expires.pop(key, None)
        if px is not None:
            self._expires[key] = time.monotonic() + px / 1000
        return b"OK"

    def _mget(self, a: list[Any]) -> Any:
        return [v if type(v := self._alive(k)) is bytes else None for k in a]

    def _del(self, a: list[Any]) -> Any:
        n = 0
        for key in a:
            if self._alive(key) is not None:
                del self._data[key]
                self._expires.pop(key, None)
                n += 1
        return n

    def _exists(self, a: list[Any]) -> Any:
        return sum(1 for key in a if self._alive(key) is not None)

    def _incrby(self, a: list[Any]) -> Any:
        current = self._typed(a[0], bytes)
        value = (_int(current) if current is not None else 0) + _int(a[1])
        self._data[a[0]] = str(value).encode()
        return value

    def _pexpire(self, a: list[Any]) -> Any:
        if self._alive(a[0]) is None:
            return 0
        self._expires[a[0]] = time.monotonic() + _int(a[1]) / 1000
        return 1

    def _pttl(self, a: list[Any]) -> Any:
        if self._alive(a[0]) is None:
            return -2
        deadline = self._expires.get(a[0])
        return -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))

    def _strlen(self, a: list[Any]) -> Any:
        value = self._typed(a[0], bytes)
        return 0 if value is None else len(value)

    # hashes

    def _hset(self, a: list[Any]) -> Any:
        h = self._typed(a[0], dict, create=True)
        new = 0
        for i in range(1, len(a), 2):
            f = _b(a[i])
            new += f not in h
            h[f] = _b(a[i + 1])
        return new

    def _hsetnx(self, a: list[Any]) -> Any:
        h = self._typed(a[0], dict, create=True)
        field = _b(a[1])
        if field in h:
            return 0
        h[field] = _b(a[2])
        return 1

    def _hget(self, a: list[Any]) -> Any:
        h = self._typed(a[0], dict)
        return None if h is None else h.get(_b(a[1]))

    def _hmget(self, a: list[Any]) -> Any:
        h = self._typed(a[0], dict) or {}
        return [h.get(_b(f)) for f in a[1:]]

    def _hgetall(self, a: list[Any]) -> Any:
        h = self._typed(a[0], dict) or {}
        return [x for kv in h.items() for x in kv]

    def _hincrby(self, a: list[Any]) -> Any:
        h = self._typed(a[0], dict, create=True)
        f = _b(a[1])
        value = (_int(h[f]) if f in h else 0) + _int(a[2])
        h[f] = str(value).encode()
        return value

    def _hdel(self, a: list[Any]) -> Any:
        h = self._typed(a[0], dict)
        if h is None:
            return 0
        n = sum(1 for f in a[1:] if h.pop(_b(f), None) is not None)
        if not h:
            del self._data[a[0]]
        return n

    def _hlen(self, a: list[Any]) -> Any:
        return len(self._typed(a[0], dict) or {})

    # lists

    def _rpush(self, a: list[Any]) -> Any:
        items = self._typed(a[0], list, create=True)
        items.extend(_b(x) for x in a[1:])
        return len(items)

    def _lrange(self, a: list[Any]) -> Any:
        items = self._typed(a[0], list) or []
        n = len(items)
        start, stop = _int(a[1]), _int(a[2])
        start = max(0, start + n if start < 0 else start)
        stop = stop + n if stop < 0 else min(stop, n - 1)
        return list(items[start : stop + 1])

    def _llen(self, a: list[Any]) -> Any:
        return len(self._typed(a[0], list) or [])

    # sorted sets (a dict member -> score; sorted on read)

    def _zadd(self, a: list[Any]) -> Any:
        z = self._typed(a[0], _ZSet, create=True)
        new = 0
        for i in range(1, len(a), 2):
            member = _b(a[i + 1])
            new += member not in z
            z[member] = float(a[i])
        return new

    def _zrange(self, a: list[Any]) -> Any:
        z = self._typed(a[0], _ZSet) or {}
        flags = {_s(x).upper() for x in a[3:]}
        items = sorted(z.items(), key=lambda kv: (kv[1], kv[0]), reverse="REV" in flags)
        if "BYSCORE" in flags:  # inclusive bounds (Redis 6.2's ZRANGE ... BYSCORE)
            low, high = float(_s(a[1])), float(_s(a[2]))
            return [m for m, score in items if low <= score <= high]
        start, stop = _int(a[1]), _int(a[2])
        n = len(items)
        start = max(0, start + n if start < 0 else start)
        stop = stop + n if stop < 0 else stop
        chosen = items[start : stop + 1]
        if "WITHSCORES" in flags:
            return [x for m, s in chosen for x in (m, repr(s).encode())]
        return [m for m, _ in chosen]

    def _zscore(self, a: list[Any]) -> Any:
        z = self._typed(a[0], _ZSet) or {}
        score = z.get(_b(a[1]))
        return None if score is None else repr(score).encode()

    def _zrem(self, a: list[Any]) -> Any:
        z = self._typed(a[0], _ZSet)
        if z is None:
            return 0
        n = sum(1 for m in a[1:] if z.pop(_b(m), None) is not None)
        if not z:
            del self._data[a[0]]
        return n

    def _zcard(self, a: list[Any]) -> Any:
        return len(self._typed(a[0], _ZSet) or {})

    # streams

    def _xadd(self, a: list[Any]) -> Any:
        key = a[0]
        i = 1
        maxlen = None
        if _s(a[1]).upper() == "MAXLEN":
            maxlen = _int(a[3])
            i = 4
        id_text = _s(a[i])
        fields = [_b(x) for x in a[i + 1 :]]
        if not fields or len(fields) % 2:
            raise StorageError("ERR wrong number of arguments for 'xadd' command")
        s = self._stream(key, create=True)
        assert s is not None
        if id_text == "*":
            now = int(time.time() * 1000)
            sid = (now, 0) if now > s.last[0] else (s.last[0], s.last[1] + 1)
        else:
            sid = _parse_id(id_text)
            if sid <= s.last:
                raise StorageError(
                    "ERR The ID specified in XADD is equal or smaller than the target stream "
                    "top item"
                )
        s.ids.append(sid)
        s.fields[sid] = fields
        s.last = sid
        if maxlen is not None:
            self._trim(s, maxlen)
        self._wake()
        return _id_bytes(sid)

    def _trim(self, s: _Stream, maxlen: int) -> int:
        excess = len(s.ids) - maxlen
        if excess <= 0:
            return 0
        for sid in s.ids[:excess]:
            del s.fields[sid]
        del s.ids[:excess]
        return excess

    def _xlen(self, a: list[Any]) -> Any:
        s = self._stream(a[0])
        return 0 if s is None else len(s.ids)

    def _range_bounds(self, start: Any, end: Any) -> tuple[StreamId, StreamId, bool, bool]:
        st, en = _s(start), _s(end)
        lo_open = st.startswith("(")
        hi_open = en.startswith("(")
        lo = (0, 0) if st == "-" else _parse_id(st.lstrip("("))
        hi = (1 << 64, 0) if en == "+" else _parse_id(en.lstrip("("), default_seq=_MAX_SEQ)
        return lo, hi, lo_open, hi_open

    def _xrange(self, a: list[Any], reverse: bool = False) -> Any:
        s = self._stream(a[0])
        if s is None:
            return []
        if reverse:
            lo, hi, lo_open, hi_open = self._range_bounds(a[2], a[1])
        else:
            lo, hi, lo_open, hi_open = self._range_bounds(a[1], a[2])
        count = _int(a[4]) if len(a) > 4 else None
        i = (bisect.bisect_right if lo_open else bisect.bisect_left)(s.ids, lo)
        j = (bisect.bisect_left if hi_open else bisect.bisect_right)(s.ids, hi)
        ids = s.ids[i:j]
        if reverse:
            ids = ids[::-1]
        if count is not None:
            ids = ids[:count]
        return [s.entry(sid) for sid in ids]

    def _xrevrange(self, a: list[Any]) -> Any:
        return self._xrange(a, reverse=True)

    @staticmethod
    def _read_options(a: list[Any]) -> tuple[int | None, bool, list[Any], list[Any]]:
        count = None
        noack = False
        i = 0
        while True:
            word = _s(a[i]).upper()
            if word == "COUNT":
                count = _int(a[i + 1])
                i += 2
            elif word == "BLOCK":
                i += 2
            elif word == "NOACK":
                noack = True
                i += 1
            elif word == "STREAMS":
                rest = a[i + 1 :]
                if not rest or len(rest) % 2:
                    raise StorageError("ERR Unbalanced 'xread' list of streams")
                half = len(rest) // 2
                return count, noack, rest[:half], rest[half:]
            else:
                raise StorageError(f"ERR syntax error near {word!r}")

    def _xread(self, a: list[Any]) -> Any:
        count, _, keys, ids = self._read_options(a)
        out = []
        for key, id_text in zip(keys, ids, strict=True):
            s = self._stream(key)
            if s is None:
                continue
            after = s.last if _s(id_text) == "$" else _parse_id(id_text)
            entries = s.after(after, count)
            if entries:
                out.append([_b(key), entries])
        return out or None

    def _xgroup(self, a: list[Any]) -> Any:
        sub = _s(a[0]).upper()
        if sub != "CREATE":
            raise StorageError(f"ERR unknown XGROUP subcommand {sub!r}")
        key, group, id_text = a[1], _s(a[2]), _s(a[3])
        mkstream = any(_s(x).upper() == "MKSTREAM" for x in a[4:])
        s = self._stream(key, create=mkstream)
        if s is None:
            raise StorageError(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you "
                "may want to use the MKSTREAM option to create an empty stream automatically."
            )
        if group in s.groups:
            raise StorageError("BUSYGROUP Consumer Group name already exists")
        s.groups[group] = _Group(s.last if id_text == "$" else _parse_id(id_text))
        return b"OK"

    def _group_of(self, key: str, group: str, command: str) -> tuple[_Stream, _Group]:
        s = self._stream(key)
        g = s.groups.get(group) if s is not None else None
        if s is None or g is None:
            raise StorageError(
                f"NOGROUP No such key '{key}' or consumer group '{group}' in {command} with "
                "GROUP option"
            )
        return s, g

    def _xreadgroup(self, a: list[Any]) -> Any:
        if _s(a[0]).upper() != "GROUP":
            raise StorageError("ERR syntax error")
        group, consumer = _s(a[1]), _s(a[2])
        count, noack, keys, ids = self._read_options(a[3:])
        now = time.monotonic() * 1000
        out = []
        for key, id_text in zip(keys, ids, strict=True):
            s, g = self._group_of(key, group, "XREADGROUP")
            g.consumers.add(consumer)
            if _s(id_text) == ">":
                entries = s.after(g.last, count)
                if entries:
                    g.last = _parse_id(entries[-1][0])
                    if not noack:
                        for eid, _ in entries:
                            g.pel[_parse_id(eid)] = [consumer, now, 1]
            else:  # this consumer's pending history
                after = _parse_id(id_text)
                mine = sorted(sid for sid, p in g.pel.items() if p[0] == consumer and sid > after)
                if count is not None:
                    mine = mine[:count]
                entries = [
                    s.entry(sid) if sid in s.fields else [_id_bytes(sid), None] for sid in mine
                ]
            if entries or _s(id_text) != ">":
                out.append([_b(key), entries])
        return out or None

    def _xack(self, a: list[Any]) -> Any:
        s = self._stream(a[0])
        g = s.groups.get(_s(a[1])) if s is not None else None
        if g is None:
            return 0
        return sum(1 for x in a[2:] if g.pel.pop(_parse_id(x), None) is not None)

    def _xautoclaim(self, a: list[Any]) -> Any:
        key, group, consumer = a[0], _s(a[1]), _s(a[2])
        min_idle, start = _int(a[3]), _parse_id(a[4]) if _s(a[4]) != "-" else (0, 0)
        count = _int(a[6]) if len(a) > 6 else 100
        s, g = self._group_of(key, group, "XAUTOCLAIM")
        now = time.monotonic() * 1000
        claimed: list[Any] = []
        deleted: list[bytes] = []
        candidates = sorted(sid for sid in g.pel if sid >= start)
        next_id = b"0-0"
        for n, sid in enumerate(candidates):
            if len(claimed) + len(deleted) >= count:
                next_id = _id_bytes(candidates[n])
                break
            pending = g.pel[sid]
            if now - pending[1] < min_idle:
                continue
            if sid not in s.fields:
                del g.pel[sid]
                deleted.append(_id_bytes(sid))
                continue
            g.pel[sid] = [consumer, now, pending[2] + 1]
            g.consumers.add(consumer)
            claimed.append(s.entry(sid))
        return [next_id, claimed, deleted]

    def _xclaim(self, a: list[Any]) -> Any:
        key, group, consumer, min_idle = a[0], _s(a[1]), _s(a[2]), _int(a[3])
        rest = a[4:]
        justid = any(_s(x).upper() == "JUSTID" for x in rest)
        ids = [x for x in rest if _s(x).upper() != "JUSTID"]
        s, g = self._group_of(key, group, "XCLAIM")
        now = time.monotonic() * 1000
        out: list[Any] = []
        for x in ids:
            sid = _parse_id(x)
            pending = g.pel.get(sid)
            if pending is None or now - pending[1] < min_idle:
                continue
            if sid not in s.fields:
                del g.pel[sid]
                continue
            g.pel[sid] = [consumer, now, pending[2] if justid else pending[2] + 1]
            g.consumers.add(consumer)
            out.append(_id_bytes(sid) if justid else s.entry(sid))
        return out

    def _xpending(self, a: list[Any]) -> Any:
        _, g = self._group_of(a[0], _s(a[1]), "XPENDING")
        if not g.pel:
            return [0, None, None, None]
        ids = sorted(g.pel)
        per: dict[str, int] = {}
        for p in g.pel.values():
            per[p[0]] = per.get(p[0], 0) + 1
        return [
            len(ids),
            _id_bytes(ids[0]),
            _id_bytes(ids[-1]),
            [[c.encode(), str(n).encode()] for c, n in sorted(per.items())],
        ]

    def _xinfo(self, a: list[Any]) -> Any:
        if _s(a[0]).upper() != "GROUPS":
            raise StorageError("ERR only XINFO GROUPS is supported by InMemoryStorage")
        s = self._stream(a[1])
        if s is None:
            raise StorageError("ERR no such key")
        return [
            [
                b"name",
                name.encode(),
                b"consumers",
                len(g.consumers),
                b"pending",
                len(g.pel),
                b"last-delivered-id",
                _id_bytes(g.last),
            ]
            for name, g in s.groups.items()
        ]

    def _xdel(self, a: list[Any]) -> Any:
        s = self._stream(a[0])
        if s is None:
            return 0
        return sum(1 for x in a[1:] if s.delete(_parse_id(x)))

    def _xtrim(self, a: list[Any]) -> Any:
        s = self._stream(a[0])
        if s is None:
            return 0
        if _s(a[1]).upper() == "MINID":
            bound = _parse_id(a[3])
            keep = bisect.bisect_left(s.ids, bound)
            return self._trim(s, len(s.ids) - keep)
        return self._trim(s, _int(a[3]))

    # keys, server, scripts

    def _scan(self, a: list[Any]) -> Any:
        cursor = _int(a[0])
        opts = {_s(a[i]).upper(): a[i + 1] for i in range(1, len(a) - 1, 2)}
        match = _s(opts["MATCH"]) if "MATCH" in opts else None
        count = _int(opts.get("COUNT", 10))
        keys = sorted(k for k in list(self._data) if self._alive(k) is not None)
        chunk = keys[cursor : cursor + count]
        nxt = cursor + count if cursor + count < len(keys) else 0
        if match is not None:
            chunk = [k for k in chunk if fnmatch.fnmatchcase(k, match)]
        return [str(nxt).encode(), [k.encode() for k in chunk]]

    def _ping(self, a: list[Any]) -> Any:
        return b"PONG"

    def _flushdb(self, a: list[Any]) -> Any:
        self._data.clear()
        self._expires.clear()
        return b"OK"

    def _evalsha(self, a: list[Any]) -> Any:
        script = registered_script(_s(a[0]))
        if script is None:
            raise NoScriptError("NOSCRIPT No matching script")
        if script.python is None:
            raise StorageError(f"script {script.name} has no Python twin for InMemoryStorage")
        n = _int(a[1])
        keys = [_s(k) for k in a[2 : 2 + n]]
        return script.python(self, keys, list(a[2 + n :]))

    def _script(self, a: list[Any]) -> Any:
        if _s(a[0]).upper() != "LOAD":
            raise StorageError("ERR only SCRIPT LOAD is supported by InMemoryStorage")
        return hashlib.sha1(_b(a[1])).hexdigest().encode()


class _ZSet(dict):  # type: ignore[type-arg]
    """A sorted set: member -> score."""


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_HANDLERS: dict[str, Callable[[InMemoryStorage, list[Any]], Any]] = {
    "GET": InMemoryStorage._get,
    "SET": InMemoryStorage._set,
    "MGET": InMemoryStorage._mget,
    "DEL": InMemoryStorage._del,
    "EXISTS": InMemoryStorage._exists,
    "INCRBY": InMemoryStorage._incrby,
    "PEXPIRE": InMemoryStorage._pexpire,
    "PTTL": InMemoryStorage._pttl,
    "STRLEN": InMemoryStorage._strlen,
    "HSET": InMemoryStorage._hset,
    "HSETNX": InMemoryStorage._hsetnx,
    "HGET": InMemoryStorage._hget,
    "HMGET": InMemoryStorage._hmget,
    "HGETALL": InMemoryStorage._hgetall,
    "HINCRBY": InMemoryStorage._hincrby,
    "HDEL": InMemoryStorage._hdel,
    "HLEN": InMemoryStorage._hlen,
    "RPUSH": InMemoryStorage._rpush,
    "LRANGE": InMemoryStorage._lrange,
    "LLEN": InMemoryStorage._llen,
    "ZADD": InMemoryStorage._zadd,
    "ZRANGE": InMemoryStorage._zrange,
    "ZREM": InMemoryStorage._zrem,
    "ZSCORE": InMemoryStorage._zscore,
    "ZCARD": InMemoryStorage._zcard,
    "XADD": InMemoryStorage._xadd,
    "XLEN": InMemoryStorage._xlen,
    "XRANGE": InMemoryStorage._xrange,
    "XREVRANGE": InMemoryStorage._xrevrange,
    "XREAD": InMemoryStorage._xread,
    "XGROUP": InMemoryStorage._xgroup,
    "XREADGROUP": InMemoryStorage._xreadgroup,
    "XACK": InMemoryStorage._xack,
    "XAUTOCLAIM": InMemoryStorage._xautoclaim,
    "XPENDING": InMemoryStorage._xpending,
    "XCLAIM": InMemoryStorage._xclaim,
    "XINFO": InMemoryStorage._xinfo,
    "XDEL": InMemoryStorage._xdel,
    "XTRIM": InMemoryStorage._xtrim,
    "SCAN": InMemoryStorage._scan,
    "PING": InMemoryStorage._ping,
    "FLUSHDB": InMemoryStorage._flushdb,
    "EVALSHA": InMemoryStorage._evalsha,
    "SCRIPT": InMemoryStorage._script,
}
