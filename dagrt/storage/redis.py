"""``RedisStorage``: the ``Storage`` interface on a Redis-compatible server.

redis-py with the hiredis parser. Each form has its own connection pool built
from the URL, opened lazily: one sync pool, and one async pool per event loop
(a pool must never cross loops). redis-py's reply callbacks are switched off,
so replies come back raw and dagrt's own parsers read them for both forms.

Blocking stream reads use connections of their own, without a socket timeout
shorter than the block; a read that is cancelled or fails drops its connection
instead of returning it to the pool still blocked.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import redis as redis_sync
import redis.asyncio as redis_async
import redis.exceptions as rexc
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..exceptions import (
    AuthenticationError,
    DagrtError,
    StorageConnectionError,
    StorageError,
    ValueTooLargeError,
)
from . import _commands as c
from ._commands import Cmd
from ._multiplex import Multiplexer, ReplyError
from ._resp import BIG, READ_SIZE, PiecePacker
from ._tls import split_tls
from ._values import ValueReader
from .base import NoScriptError, Storage, _mget_cmds

__all__ = ["RedactsURLs", "RedisConfig", "RedisStorage", "redact"]

_DEFAULT_MAX_BULK = 512 * 1024 * 1024
_SCHEMES = ("redis", "rediss", "unix")


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***`` (for messages, logs and reprs):
    the one in its user part, and query options that hold one (``password=``,
    ``ssl_password=``, any whose name has "password" in it); never fails."""
    try:
        parts = urlsplit(url)
    except ValueError:  # (unsplittable: show the scheme only)
        return url.partition(":")[0] + ":***"
    if "password" in unquote(parts.query).lower():
        query = "&".join(
            item.partition("=")[0] + "=***"
            if "password" in unquote(item.partition("=")[0]).lower()
            else item
            for item in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    user, at, host = parts.netloc.rpartition("@")
    if at and ":" in user:
        parts = parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}")
    return urlunsplit(parts)


class RedactsURLs:
    """For a pydantic model with URL fields (``_url_fields``): its repr shows their
    passwords as ``***``."""

    _url_fields: ClassVar[tuple[str, ...]] = ("url",)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():  # type: ignore[misc]
            hide = name in self._url_fields and isinstance(value, str)
            yield name, redact(value) if hide else value


class RedisConfig(RedactsURLs, BaseModel):
    """Where the server is and how to talk to it."""

    # (a URL may hold a password: errors never echo what was given)
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str = Field(description="redis://[[user]:password@]host[:port][/db], rediss://, unix://")
    socket_timeout: float | None = Field(30.0, gt=0, description="seconds per reply")
    socket_connect_timeout: float = Field(5.0, gt=0)
    max_connections: int = Field(128, ge=1)
    retries: int = Field(2, ge=0, description="reconnect attempts per command")
    retry_backoff_cap: float = Field(0.5, gt=0)
    health_check_interval: float = Field(15.0, ge=0)
    client_name: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                f"unsupported URL scheme {scheme!r} in {redact(url)!r}: "
                "use redis://, rediss:// or unix://"
            )
        split_tls(url)  # TLS options that do not read fail here, for both forms
        if scheme != "unix":
            try:
                urlsplit(url).port  # noqa: B018  (a port that does not read fails here)
            except ValueError as exc:
                raise ValueError(f"{exc} in {redact(url)!r}") from None
        return url

    def pool_options(self, *, blocking: bool = False) -> dict[str, Any]:
        options: dict[str, Any] = {
            "socket_timeout": None if blocking else self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "max_connections": self.max_connections,
            "health_check_interval": self.health_check_interval,
            "protocol": 2,
        }
        if self.client_name:
            options["client_name"] = self.client_name
        return options


class RedisStorage(Storage):
    """Storage on a Redis-compatible server, configured by URL.

    ``RedisStorage("redis://:secret@localhost:6379/0", socket_timeout=5)``;
    options are the fields of :class:`RedisConfig`.
    """

    def __init__(self, url: str | RedisConfig, **options: Any) -> None:
        if isinstance(url, RedisConfig):
            self.config = url.model_copy(update=options) if options else url
        elif isinstance(url, str):
            self.config = RedisConfig(url=url, **options)
        else:
            raise TypeError(f"RedisStorage needs a redis:// URL or RedisConfig, got {url!r}")
        self.url = redact(self.config.url)
        # The URL without its ssl_* options, and those options read once: redis-py's
        # pools take them as keyword arguments, the asyncio links as an SSLContext.
        self._plain_url, self._tls = split_tls(self.config.url)
        self._tls_options = self._tls.pool_options() if self._tls is not None else {}
        self._client: redis_sync.Redis | None = None
        self._block_pool: redis_sync.ConnectionPool | None = None
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop,
            tuple[Multiplexer, redis_async.ConnectionPool, ValueReader],
        ] = weakref.WeakKeyDictionary()
        self._max_bulk: int | None = None
        self._large_reads = False  # value reads go to the value connection (see _avalues)
        self._small_streak = 0

    def __repr__(self) -> str:
        return f"<RedisStorage {self.url}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RedisStorage, (self.config,))

    # -- pools -----------------------------------------------------------------------

    def _retry(self) -> Retry:
        return Retry(ExponentialBackoff(cap=self.config.retry_backoff_cap), self.config.retries)

    def _sync(self) -> redis_sync.Redis:
        if self._client is None:
            pool = redis_sync.ConnectionPool.from_url(
                self._plain_url,
                retry=self._retry(),
                command_packer=PiecePacker(),  # large values are sent, not copied first
                socket_read_size=READ_SIZE,
                **self.config.pool_options(),
                **self._tls_options,
            )
            client = redis_sync.Redis(connection_pool=pool)
            client.response_callbacks.clear()  # raw replies: dagrt parses them
            self._client = client
        return self._client

    def _async(self) -> tuple[Multiplexer, redis_async.ConnectionPool, ValueReader]:
        """This loop's auto-pipelined connection, its pool for blocking reads and its
        connection for reading values."""
        loop = asyncio.get_running_loop()
        found = self._aclients.get(loop)
        if found is None:
            retry = AsyncRetry(
                ExponentialBackoff(cap=self.config.retry_backoff_cap), self.config.retries
            )
            link = {
                "display_url": self.url,
                "connect_timeout": self.config.socket_connect_timeout,
                "reply_timeout": self.config.socket_timeout,
                "client_name": self.config.client_name,
                "tls": self._tls,
            }
            block_pool = redis_async.ConnectionPool.from_url(
                self._plain_url,
                retry=retry,
                **self.config.pool_options(blocking=True),
                **self._tls_options,
            )
            found = self._aclients[loop] = (
                Multiplexer(self._plain_url, **link),
                block_pool,
                ValueReader(self._plain_url, **link),
            )
        return found

    # -- errors ----------------------------------------------------------------------

    def _translate(self, exc: BaseException, cmd: Cmd | None) -> BaseException:
        if isinstance(exc, DagrtError):
            return exc
        text = str(exc)
        if isinstance(exc, ReplyError):
            exc = rexc.ResponseError(text)
        what = f"{cmd.args[0]} " if cmd is not None else ""
        if isinstance(exc, rexc.NoScriptError) or text.startswith("NOSCRIPT"):
            return NoScriptError(text)
        if isinstance(
            exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError
        ) or (text.startswith(("WRONGPASS", "NOAUTH", "invalid username-password"))):
            return AuthenticationError(f"authentication failed at {self.url}: {text}")
        if isinstance(exc, rexc.BusyLoadingError) or text.startswith("LOADING"):
            # A server that restarted and loads its data (AOF): up in a moment; callers
            # that retry an unreachable server retry this too.
            return StorageConnectionError(f"the storage server at {self.url} is starting: {text}")
        if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError | EOFError):
            return StorageConnectionError(
                f"cannot reach the storage server at {self.url}: {text or type(exc).__name__}"
            )
        if "invalid bulk length" in text and cmd is not None and cmd.key is not None:
            return ValueTooLargeError(f"value for {cmd.key!r} is too large for {self.url}: {text}")
        if isinstance(exc, rexc.RedisError):
            return StorageError(f"{what}failed at {self.url}: {text}")
        return exc

    def max_value_size(self) -> int:
        """The server's ``proto-max-bulk-len`` (asked once)."""
        return self._limit()

    async def amax_value_size(self) -> int:
        return await self._alimit()

    def _check_size(self, cmd: Cmd, limit: int) -> None:
        if cmd.size > limit:
            raise ValueTooLargeError(
                f"value for {cmd.key!r} is {cmd.size:,} bytes; the server at {self.url} "
                f"accepts at most {limit:,} (proto-max-bulk-len)"
            )

    @staticmethod
    def _parse_limit(reply: Any) -> int:
        try:
            return int(reply[1])
        except (IndexError, TypeError, ValueError):
            return _DEFAULT_MAX_BULK

    def _limit(self) -> int:
        if self._max_bulk is None:
            try:
                reply = self._sync().execute_command("CONFIG", "GET", "proto-max-bulk-len")
                self._max_bulk = self._parse_limit(reply)
            except rexc.ResponseError:  # CONFIG not allowed for this user
                self._max_bulk = _DEFAULT_MAX_BULK
            except Exception as exc:
                raise self._translate(exc, None) from exc
        return self._max_bulk

    async def _alimit(self) -> int:
        if self._max_bulk is None:
            mux, _, _ = self._async()
            [reply] = await mux.execute([("CONFIG", "GET", "proto-max-bulk-len")])
            self._max_bulk = (
                _DEFAULT_MAX_BULK if isinstance(reply, ReplyError) else self._parse_limit(reply)
            )
        return self._max_bulk

    # -- seams -----------------------------------------------------------------------

    def _call(self, cmd: Cmd) -> Any:
        if cmd.size:
            self._check_size(cmd, self._limit())
        try:
            reply = self._sync().execute_command(*cmd.args)
        except Exception as exc:
            raise self._translate(exc, cmd) from exc
        return cmd.parse(reply) if cmd.parse is not None else reply

    async def _acall(self, cmd: Cmd) -> Any:
        return (await self._acall_many([cmd]))[0]

    def _replies(self, cmds: Sequence[Cmd], replies: list[Any]) -> list[Any]:
        out = []
        for cmd, reply in zip(cmds, replies, strict=True):
            if isinstance(reply, BaseException):
                raise self._translate(reply, cmd) from reply
            out.append(cmd.parse(reply) if cmd.parse is not None else reply)
        return out

    def _call_many(self, cmds: Sequence[Cmd]) -> list[Any]:
        if any(cmd.size for cmd in cmds):
            limit = self._limit()
            for cmd in cmds:
                self._check_size(cmd, limit)
        pipe = self._sync().pipeline(transaction=False)
        for cmd in cmds:
            pipe.execute_command(*cmd.args)
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:
            raise self._translate(exc, cmds[0] if len(cmds) == 1 else None) from exc
        return self._replies(cmds, replies)

    async def _acall_many(self, cmds: Sequence[Cmd]) -> list[Any]:
        if any(cmd.size for cmd in cmds):
            limit = await self._alimit()
            for cmd in cmds:
                self._check_size(cmd, limit)
        mux, _, _ = self._async()
        replies = await mux.execute([cmd.args for cmd in cmds])
        return self._replies(cmds, replies)

    async def _avalues(self, cmds: Sequence[Cmd]) -> list[Any]:
        """Value reads (GET, MGET), on the connection that suits their recent sizes.

        Large values are received in place on the value connection; small ones go
        faster through the auto-pipelined one (hiredis, and one write with whatever
        else this loop sends: 81 against 108 µs per task on the tree reduction). A
        read that brings a value of ``_LARGE_READ`` bytes or more sends the next reads
        to the value connection; ``_SMALL_STREAK`` reads in a row with nothing of 64 KiB
        or more send them back.
        """
        mux, _, values = self._async()
        link = values if self._large_reads else mux
        replies = await link.execute([cmd.args for cmd in cmds])
        largest = max(map(_largest, replies), default=0)
        if largest >= _LARGE_READ:
            self._large_reads, self._small_streak = True, 0
        elif self._large_reads and largest < BIG:
            self._small_streak += 1
            if self._small_streak >= _SMALL_STREAK:
                self._large_reads = False
        return self._replies(cmds, replies)

    async def aget(self, key: str) -> bytes | None:
        """The value at ``key``; once values of a MiB or more come back, large ones are
        ``bytearray``s (see ``_values.py``: received in place, no copy)."""
        return (await self._avalues([c.get(key)]))[0]  # type: ignore[no-any-return]

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for reply in await self._avalues(_mget_cmds(keys, self.chunk_size)):
            out += reply
        return out

    def _call_blocking(self, cmd: Cmd, block: float) -> Any:
        if self._block_pool is None:
            self._block_pool = redis_sync.ConnectionPool.from_url(
                self._plain_url,
                retry=self._retry(),
                **self.config.pool_options(blocking=True),
                **self._tls_options,
            )
        pool = self._block_pool
        conn = pool.get_connection()
        try:
            conn.send_command(*cmd.args)
            reply = conn.read_response(timeout=block + self._grace())
        except BaseException as exc:
            conn.disconnect()
            raise self._translate(exc, cmd) from exc
        finally:
            pool.release(conn)
        return cmd.parse(reply) if cmd.parse is not None else reply

    async def _acall_blocking(self, cmd: Cmd, block: float) -> Any:
        _, pool, _ = self._async()
        try:
            conn = await pool.get_connection()
        except Exception as exc:
            raise self._translate(exc, cmd) from exc
        try:
            await conn.send_command(*cmd.args)
            reply = await conn.read_response(timeout=block + self._grace())
        except BaseException as exc:
            # Never hand a connection that may still be blocked back to the pool.
            with anyio.CancelScope(shield=True):
                await conn.disconnect()
            if isinstance(exc, Exception):
                raise self._translate(exc, cmd) from exc
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await pool.release(conn)
        return cmd.parse(reply) if cmd.parse is not None else reply

    def _grace(self) -> float:
        """How much longer than the block a blocking read may take before it is a timeout."""
        return self.config.socket_timeout or 30.0

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.connection_pool.disconnect()
            client.close()
        pool, self._block_pool = self._block_pool, None
        if pool is not None:
            pool.disconnect()

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover
            return
        found = self._aclients.pop(loop, None)
        if found is not None:
            mux, block_pool, values = found
            with anyio.CancelScope(shield=True):
                await mux.aclose()
                await values.aclose()
                await block_pool.disconnect()
        self.close()


_LARGE_READ = 1 << 20  # a value read this large sends value reads to the value connection
_SMALL_STREAK = 16  # reads with nothing of BIG bytes that send them back


def _largest(reply: Any) -> int:
    """The size of the largest value in a GET or MGET reply."""
    if isinstance(reply, bytes | bytearray):
        return len(reply)
    if isinstance(reply, list):
        return max((len(v) for v in reply if isinstance(v, bytes | bytearray)), default=0)
    return 0
