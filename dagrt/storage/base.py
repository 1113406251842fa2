"""The ``Storage`` interface: every operation in a sync and an async form.

``Storage`` defines each public method once per form (``get``/``aget``,
``xadd``/``axadd``, ...). A method only builds its command (shared builders in
:mod:`dagrt.storage._commands`) and hands it to one of a few seams that a
backend implements: ``_call``/``_acall`` for one command, ``_call_many``/
``_acall_many`` for a pipelined batch, ``_call_blocking``/``_acall_blocking``
for reads that wait on a stream, and ``_drive``/``_adrive`` for multi-step
exchanges written once as generators (running a Lua script with its
``NOSCRIPT`` fallback). Values are bytes (``str``, ``int`` and ``float`` are
stored as their text, as Redis does); serialization is :mod:`dagrt.serialize`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

from ..exceptions import StorageError
from . import _commands as c
from ._commands import Cmd, Entry, Fields, Value

__all__ = ["DEFAULT_CHUNK", "DEFAULT_CHUNK_BYTES", "Script", "Storage"]

DEFAULT_CHUNK = 5000  # commands (or keys of one MGET/DEL) per pipelined round trip
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024  # and about this many bytes of values

Flow = Generator[Any, Any, Any]  # yields a Cmd, or a list of them (one pipeline)


class NoScriptError(Exception):
    """The server does not have the script cached (internal: triggers a load)."""


class Script:
    """A Lua script for atomic multi-key updates.

    ``RedisStorage`` runs ``source`` by SHA, loading it on ``NOSCRIPT``;
    ``InMemoryStorage`` runs the same source in its own Lua (lupa), so a script
    has one implementation. Every script made in this process is known by its SHA
    (:func:`registered_script`), so ``InMemoryStorage`` runs it without a load.
    """

    def __init__(self, name: str, source: str, *, read_only: bool = False) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        # run with EVALSHA_RO: a user that may only read (the dashboard's) may run it
        self.read_only = read_only
        _REGISTRY[self.sha] = self

    @classmethod
    def from_package(
        cls, filename: str, package: str = "dagrt.lua", *, read_only: bool = False
    ) -> Script:
        """Load ``filename`` from a package directory of ``.lua`` files (read once)."""
        source = resources.files(package).joinpath(filename).read_text()
        return cls(filename.removesuffix(".lua"), source, read_only=read_only)

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


_REGISTRY: dict[str, Script] = {}


def registered_script(sha: str) -> Script | None:
    """The script with that SHA, if one was made in this process."""
    return _REGISTRY.get(sha)


def script_flow(script: Script, keys: Sequence[str], args: Sequence[Any]) -> Flow:
    """EVALSHA (EVALSHA_RO for a script that only reads), and on NOSCRIPT load the
    script and try once more."""
    call = Cmd(
        ("EVALSHA_RO" if script.read_only else "EVALSHA", script.sha, len(keys), *keys, *args)
    )
    try:
        try:
            return (yield call)
        except StorageError as exc:  # a server before 7.0 has no EVALSHA_RO
            if not script.read_only or "unknown command" not in str(exc).lower():
                raise
            call = Cmd(("EVALSHA", *call.args[1:]))
            return (yield call)
    except NoScriptError:
        yield Cmd(("SCRIPT", "LOAD", script.source))
        return (yield call)


class Storage(ABC):
    """Key-value, hash, sorted-set and stream storage, in sync and async forms."""

    #: Bytes the server accepts in one value; larger writes raise ValueTooLargeError.
    max_value_bytes: int = 512 * 1024 * 1024
    chunk_size: int = DEFAULT_CHUNK
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    # -- seams a backend implements ---------------------------------------------

    @abstractmethod
    def _call(self, cmd: Cmd) -> Any: ...

    @abstractmethod
    async def _acall(self, cmd: Cmd) -> Any: ...

    @abstractmethod
    def _call_many(self, cmds: Sequence[Cmd]) -> list[Any]: ...

    @abstractmethod
    async def _acall_many(self, cmds: Sequence[Cmd]) -> list[Any]: ...

    @abstractmethod
    def _call_blocking(self, cmd: Cmd, block: float) -> Any: ...

    @abstractmethod
    async def _acall_blocking(self, cmd: Cmd, block: float) -> Any: ...

    def _drive(self, flow: Flow) -> Any:
        """Run a generator of commands: send each, feed back its reply (or NOSCRIPT).
        A list of commands it yields goes as one pipeline (its replies fed back)."""
        reply: Any = None
        error: NoScriptError | None = None
        while True:
            try:
                cmd = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                reply = self.pipeline(cmd) if isinstance(cmd, list) else self._call(cmd)
            except NoScriptError as exc:
                error = exc

    async def _adrive(self, flow: Flow) -> Any:
        reply: Any = None
        error: NoScriptError | None = None
        while True:
            try:
                cmd = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                reply = await (self.apipeline(cmd) if isinstance(cmd, list) else self._acall(cmd))
            except NoScriptError as exc:
                error = exc

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    def max_value_size(self) -> int:
        """The largest value, in bytes, this storage accepts."""
        return self.max_value_bytes

    async def amax_value_size(self) -> int:
        return self.max_value_bytes

    # -- context managers ----------------------------------------------------------

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- batches -------------------------------------------------------------------

    def pipeline(self, cmds: Sequence[Cmd]) -> list[Any]:
        """Send built commands (:mod:`dagrt.storage.commands`) in chunked round trips."""
        out: list[Any] = []
        for batch in c.batches(cmds, self.chunk_size, self.chunk_bytes):
            out += self._call_many(batch)
        return out

    async def apipeline(self, cmds: Sequence[Cmd]) -> list[Any]:
        out: list[Any] = []
        for batch in c.batches(cmds, self.chunk_size, self.chunk_bytes):
            out += await self._acall_many(batch)
        return out

    # -- strings -------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._call(c.get(key))

    async def aget(self, key: str) -> bytes | None:
        return await self._acall(c.get(key))

    def set(self, key: str, value: Value, *, ex: float | None = None, nx: bool = False) -> bool:
        """Store ``value``; ``ex`` seconds to live; ``nx`` only if absent. True if written."""
        return self._call(c.set_(key, value, ex, nx))

    async def aset(
        self, key: str, value: Value, *, ex: float | None = None, nx: bool = False
    ) -> bool:
        return await self._acall(c.set_(key, value, ex, nx))

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in order (``None`` where missing), in chunked round trips."""
        out: list[bytes | None] = []
        for reply in self.pipeline(_mget_cmds(keys, self.chunk_size)):
            out += reply
        return out

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for reply in await self.apipeline(_mget_cmds(keys, self.chunk_size)):
            out += reply
        return out

    def mset(self, mapping: Mapping[str, Value], *, ex: float | None = None) -> None:
        """Store many values in pipelined chunks; ``ex`` sets a time to live on each."""
        self.pipeline([c.set_(k, v, ex) for k, v in mapping.items()])

    async def amset(self, mapping: Mapping[str, Value], *, ex: float | None = None) -> None:
        await self.apipeline([c.set_(k, v, ex) for k, v in mapping.items()])

    def delete(self, *keys: str) -> int:
        """Delete keys; the number that existed."""
        if not keys:
            return 0
        return sum(self.pipeline([c.delete(ch) for ch in c.chunks(keys, self.chunk_size)]))

    async def adelete(self, *keys: str) -> int:
        if not keys:
            return 0
        cmds = [c.delete(ch) for ch in c.chunks(keys, self.chunk_size)]
        return sum(await self.apipeline(cmds))

    def exists(self, *keys: str) -> int:
        """How many of ``keys`` exist."""
        return self._call(c.exists(keys)) if keys else 0

    async def aexists(self, *keys: str) -> int:
        return await self._acall(c.exists(keys)) if keys else 0

    def incr(self, key: str, amount: int = 1) -> int:
        return self._call(c.incr(key, amount))

    async def aincr(self, key: str, amount: int = 1) -> int:
        return await self._acall(c.incr(key, amount))

    def expire(self, key: str, seconds: float) -> bool:
        """Give ``key`` a time to live; False if it does not exist."""
        return self._call(c.expire(key, seconds))

    async def aexpire(self, key: str, seconds: float) -> bool:
        return await self._acall(c.expire(key, seconds))

    def ttl(self, key: str) -> float | None:
        """Seconds left to live, or ``None`` (no expiry, or no such key)."""
        return self._call(c.ttl(key))

    async def attl(self, key: str) -> float | None:
        return await self._acall(c.ttl(key))

    def strlen(self, key: str) -> int:
        return self._call(c.strlen(key))

    async def astrlen(self, key: str) -> int:
        return await self._acall(c.strlen(key))

    # -- hashes ----------------------------------------------------------------------

    def hset(self, key: str, mapping: Fields) -> int:
        """Set fields of a hash; the number of new fields."""
        return self._call(c.hset(key, mapping))

    async def ahset(self, key: str, mapping: Fields) -> int:
        return await self._acall(c.hset(key, mapping))

    def hget(self, key: str, field: str | bytes) -> bytes | None:
        return self._call(c.hget(key, field))

    async def ahget(self, key: str, field: str | bytes) -> bytes | None:
        return await self._acall(c.hget(key, field))

    def hmget(self, key: str, fields: Sequence[str | bytes]) -> list[bytes | None]:
        return self._call(c.hmget(key, fields))

    async def ahmget(self, key: str, fields: Sequence[str | bytes]) -> list[bytes | None]:
        return await self._acall(c.hmget(key, fields))

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return self._call(c.hgetall(key))

    async def ahgetall(self, key: str) -> dict[bytes, bytes]:
        return await self._acall(c.hgetall(key))

    def hincrby(self, key: str, field: str | bytes, amount: int = 1) -> int:
        return self._call(c.hincrby(key, field, amount))

    async def ahincrby(self, key: str, field: str | bytes, amount: int = 1) -> int:
        return await self._acall(c.hincrby(key, field, amount))

    def hdel(self, key: str, *fields: str | bytes) -> int:
        return self._call(c.hdel(key, fields)) if fields else 0

    async def ahdel(self, key: str, *fields: str | bytes) -> int:
        return await self._acall(c.hdel(key, fields)) if fields else 0

    def hlen(self, key: str) -> int:
        return self._call(c.hlen(key))

    async def ahlen(self, key: str) -> int:
        return await self._acall(c.hlen(key))

    # -- sorted sets -----------------------------------------------------------------

    def zadd(self, key: str, mapping: Mapping[str | bytes, float]) -> int:
        return self._call(c.zadd(key, mapping))

    async def azadd(self, key: str, mapping: Mapping[str | bytes, float]) -> int:
        return await self._acall(c.zadd(key, mapping))

    def zrange(
        self,
        key: str,
        start: int = 0,
        stop: int = -1,
        *,
        desc: bool = False,
        withscores: bool = False,
    ) -> list[Any]:
        return self._call(c.zrange(key, start, stop, desc=desc, withscores=withscores))

    async def azrange(
        self,
        key: str,
        start: int = 0,
        stop: int = -1,
        *,
        desc: bool = False,
        withscores: bool = False,
    ) -> list[Any]:
        return await self._acall(c.zrange(key, start, stop, desc=desc, withscores=withscores))

    def zrem(self, key: str, *members: str | bytes) -> int:
        return self._call(c.zrem(key, members)) if members else 0

    async def azrem(self, key: str, *members: str | bytes) -> int:
        return await self._acall(c.zrem(key, members)) if members else 0

    def zcard(self, key: str) -> int:
        return self._call(c.zcard(key))

    async def azcard(self, key: str) -> int:
        return await self._acall(c.zcard(key))

    # -- streams ---------------------------------------------------------------------

    def xadd(
        self,
        stream: str,
        fields: Fields,
        *,
        id: str = "*",
        maxlen: int | None = None,
        approximate: bool = True,
    ) -> bytes:
        """Append an entry; its id."""
        return self._call(c.xadd(stream, fields, id=id, maxlen=maxlen, approximate=approximate))

    async def axadd(
        self,
        stream: str,
        fields: Fields,
        *,
        id: str = "*",
        maxlen: int | None = None,
        approximate: bool = True,
    ) -> bytes:
        return await self._acall(
            c.xadd(stream, fields, id=id, maxlen=maxlen, approximate=approximate)
        )

    def xadd_many(self, stream: str, entries: Sequence[Fields]) -> list[bytes]:
        """Append many entries in pipelined chunks; their ids."""
        return self.pipeline([c.xadd(stream, f) for f in entries])

    async def axadd_many(self, stream: str, entries: Sequence[Fields]) -> list[bytes]:
        return await self.apipeline([c.xadd(stream, f) for f in entries])

    def xlen(self, stream: str) -> int:
        return self._call(c.xlen(stream))

    async def axlen(self, stream: str) -> int:
        return await self._acall(c.xlen(stream))

    def xrange(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[Entry]:
        return self._call(c.xrange(stream, start, end, count))

    async def axrange(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[Entry]:
        return await self._acall(c.xrange(stream, start, end, count))

    def xrevrange(
        self, stream: str, end: str = "+", start: str = "-", count: int | None = None
    ) -> list[Entry]:
        return self._call(c.xrevrange(stream, end, start, count))

    async def axrevrange(
        self, stream: str, end: str = "+", start: str = "-", count: int | None = None
    ) -> list[Entry]:
        return await self._acall(c.xrevrange(stream, end, start, count))

    def xread(
        self,
        streams: Mapping[str, str | bytes],
        *,
        count: int | None = None,
        block: float | None = None,
    ) -> list[tuple[str, list[Entry]]]:
        """Entries after the given ids; ``block`` seconds waits for new ones."""
        cmd = c.xread(streams, count, block)
        return self._call(cmd) if block is None else self._call_blocking(cmd, block)

    async def axread(
        self,
        streams: Mapping[str, str | bytes],
        *,
        count: int | None = None,
        block: float | None = None,
    ) -> list[tuple[str, list[Entry]]]:
        cmd = c.xread(streams, count, block)
        return await (self._acall(cmd) if block is None else self._acall_blocking(cmd, block))

    def xgroup_create(
        self, stream: str, group: str, id: str = "$", *, mkstream: bool = True
    ) -> bool:
        """Create a consumer group; False if it already exists."""
        try:
            return self._call(c.xgroup_create(stream, group, id, mkstream))
        except Exception as exc:
            return _busy_group(exc)

    async def axgroup_create(
        self, stream: str, group: str, id: str = "$", *, mkstream: bool = True
    ) -> bool:
        try:
            return await self._acall(c.xgroup_create(stream, group, id, mkstream))
        except Exception as exc:
            return _busy_group(exc)

    def xreadgroup(
        self,
        group: str,
        consumer: str,
        streams: Mapping[str, str | bytes],
        *,
        count: int | None = None,
        block: float | None = None,
        noack: bool = False,
    ) -> list[tuple[str, list[Entry]]]:
        cmd = c.xreadgroup(group, consumer, streams, count, block, noack)
        return self._call(cmd) if block is None else self._call_blocking(cmd, block)

    async def axreadgroup(
        self,
        group: str,
        consumer: str,
        streams: Mapping[str, str | bytes],
        *,
        count: int | None = None,
        block: float | None = None,
        noack: bool = False,
    ) -> list[tuple[str, list[Entry]]]:
        cmd = c.xreadgroup(group, consumer, streams, count, block, noack)
        return await (self._acall(cmd) if block is None else self._acall_blocking(cmd, block))

    def xack(self, stream: str, group: str, *ids: str | bytes) -> int:
        return self._call(c.xack(stream, group, ids)) if ids else 0

    async def axack(self, stream: str, group: str, *ids: str | bytes) -> int:
        return await self._acall(c.xack(stream, group, ids)) if ids else 0

    def xautoclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        min_idle: float,
        *,
        start: str | bytes = "0-0",
        count: int = 100,
    ) -> tuple[bytes, list[Entry], list[bytes]]:
        """Take over entries pending longer than ``min_idle`` seconds.

        Returns ``(next_start, claimed_entries, ids_of_deleted_entries)``.
        """
        return self._call(c.xautoclaim(stream, group, consumer, min_idle, start, count))

    async def axautoclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        min_idle: float,
        *,
        start: str | bytes = "0-0",
        count: int = 100,
    ) -> tuple[bytes, list[Entry], list[bytes]]:
        return await self._acall(c.xautoclaim(stream, group, consumer, min_idle, start, count))

    def xpending(self, stream: str, group: str) -> dict[str, Any]:
        return self._call(c.xpending(stream, group))

    async def axpending(self, stream: str, group: str) -> dict[str, Any]:
        return await self._acall(c.xpending(stream, group))

    def xinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        return self._call(c.xinfo_groups(stream))

    async def axinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        return await self._acall(c.xinfo_groups(stream))

    def xdel(self, stream: str, *ids: str | bytes) -> int:
        return self._call(c.xdel(stream, ids)) if ids else 0

    async def axdel(self, stream: str, *ids: str | bytes) -> int:
        return await self._acall(c.xdel(stream, ids)) if ids else 0

    def xtrim(
        self,
        stream: str,
        maxlen: int | None = None,
        *,
        minid: str | None = None,
        approximate: bool = True,
    ) -> int:
        """Drop the oldest entries: keep ``maxlen``, or those with ids >= ``minid``."""
        return self._call(c.xtrim(stream, maxlen, minid, approximate))

    async def axtrim(
        self,
        stream: str,
        maxlen: int | None = None,
        *,
        minid: str | None = None,
        approximate: bool = True,
    ) -> int:
        return await self._acall(c.xtrim(stream, maxlen, minid, approximate))

    # -- scripts -----------------------------------------------------------------------

    def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a :class:`Script` atomically; its raw reply."""
        return self._drive(script_flow(script, keys, args))

    async def arun_script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._adrive(script_flow(script, keys, args))

    # -- keys and server -----------------------------------------------------------------

    def scan_iter(self, match: str | None = None, count: int = 1000) -> Iterator[str]:
        """Every key (matching the glob ``match``), without blocking the server."""
        cursor = None
        while cursor != 0:
            cursor, keys = self._call(c.scan(cursor or 0, match, count))
            yield from keys

    async def ascan_iter(self, match: str | None = None, count: int = 1000) -> AsyncIterator[str]:
        cursor = None
        while cursor != 0:
            cursor, keys = await self._acall(c.scan(cursor or 0, match, count))
            for key in keys:
                yield key

    def delete_matching(self, match: str) -> int:
        """Delete every key matching the glob ``match``; how many."""
        return self.delete(*list(self.scan_iter(match)))

    async def adelete_matching(self, match: str) -> int:
        return await self.adelete(*[k async for k in self.ascan_iter(match)])

    def ping(self) -> bool:
        return self._call(c.ping())

    async def aping(self) -> bool:
        return await self._acall(c.ping())

    def flushdb(self) -> None:
        """Delete every key of the database (tests)."""
        self._call(c.flushdb())

    async def aflushdb(self) -> None:
        await self._acall(c.flushdb())


def _mget_cmds(keys: Sequence[str], size: int) -> list[Cmd]:
    return [c.mget(chunk) for chunk in c.chunks(keys, size)]


def _busy_group(exc: Exception) -> bool:
    if "BUSYGROUP" in str(exc):
        return False
    raise exc
