"""One auto-pipelined connection shared by every coroutine of an event loop.

Commands sent by concurrent callers in the same loop iteration leave in one
write; one reader task parses replies with hiredis and hands them back in
order. A worker with many tasks in flight thus makes one round trip for all of
their uploads and completions instead of one each (group commit), and a
command costs a C-level pack and parse instead of redis-py's per-command
machinery.

A caller that is cancelled leaves its replies to be read and dropped, so the
connection stays in step. If the connection breaks, every caller waiting on it
gets :class:`~dagrt.StorageConnectionError` (their commands may or may not have
run); the next command connects again.

The reader and the writer of a connection run in one task group, which one task
per connection holds for the connection's life (the connection opens lazily, from
whichever coroutine sends first, so no caller's scope can hold it): when either
loop ends, the other is cancelled, and the socket is closed and the callers still
waiting are failed in a shielded scope. ``aclose`` cancels that task and waits for
it, shielded; the hot path (``execute`` and the two loops) is unchanged.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import hiredis
from anyio.abc import TaskGroup
from redis.connection import parse_url

from ..exceptions import AuthenticationError, StorageConnectionError, StorageError
from ._resp import BIG, READ_SIZE, pack_pieces
from ._tls import TLS

SLICE = 1 << 20  # bytes of a large value handed to the transport at a time

__all__ = ["Link", "Multiplexer", "Pending", "ReplyError"]


class ReplyError(Exception):
    """An error reply from the server (translated by the storage)."""


class Pending:
    """The replies still owed to one caller, collected in order."""

    __slots__ = ("future", "left", "replies")

    def __init__(self, n: int, future: asyncio.Future[list[Any]]) -> None:
        self.left = n
        self.replies: list[Any] = []
        self.future = future

    def add(self, reply: Any) -> bool:
        """Take the next reply; True once the last one came (the caller is answered,
        unless it gave up)."""
        self.replies.append(reply)
        self.left -= 1
        if self.left:
            return False
        if not self.future.done():
            self.future.set_result(self.replies)
        return True


class Link:
    """Where a connection goes and how it is opened: the URL's options, TLS (read
    from the URL by :func:`~._tls.split_tls`, as for redis-py's pools), timeouts,
    the handshake (AUTH, SELECT, CLIENT SETNAME) and its errors."""

    def __init__(
        self,
        url: str,
        *,
        display_url: str,
        connect_timeout: float,
        reply_timeout: float | None,
        client_name: str | None = None,
        tls: TLS | None = None,
    ) -> None:
        self.options = parse_url(url)
        self.url = url
        self.tls = tls
        self._ssl: ssl.SSLContext | None = None
        self.display_url = display_url
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.client_name = client_name
        self.pending: deque[Pending] = deque()  # callers waiting for replies, in order
        self._connecting = asyncio.Lock()
        self._closed = False

    def _connected(self) -> bool:
        raise NotImplementedError

    async def _connect(self) -> None:
        raise NotImplementedError

    async def ready(self) -> None:
        """Connect if not connected (once, whoever asks first); an error once closed."""
        if self._closed:
            raise StorageConnectionError(f"the connection to {self.display_url} is closed")
        if not self._connected():
            async with self._connecting:
                if not self._connected():
                    await self._connect()

    def fail_pending(self, error: BaseException) -> None:
        """Every caller still waiting gets ``error`` (their commands may have run)."""
        while self.pending:
            head = self.pending.popleft()
            if not head.future.done():
                head.future.set_exception(error)

    def unreachable(self, exc: BaseException) -> StorageConnectionError:
        reason = str(exc) or type(exc).__name__
        return StorageConnectionError(
            f"cannot reach the storage server at {self.display_url}: {reason}"
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a ``rediss://`` URL (made once; it reads certificate files,
        so an error here is a connection error)."""
        if self.tls is not None and self._ssl is None:
            self._ssl = self.tls.context()
        return self._ssl

    def handshake(self, name_suffix: str = "") -> list[tuple[Any, ...]]:
        opts = self.options
        commands: list[tuple[Any, ...]] = []
        if opts.get("password") is not None:
            if opts.get("username"):
                commands.append(("AUTH", opts["username"], opts["password"]))
            else:
                commands.append(("AUTH", opts["password"]))
        if int(opts.get("db") or 0):
            commands.append(("SELECT", int(opts["db"])))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name + name_suffix))
        return commands

    def check_reply(self, command: tuple[Any, ...], reply: Any) -> None:
        """Raise for an error reply to a handshake command."""
        if isinstance(reply, ReplyError):
            text = str(reply)
            if command[0] == "AUTH" or text.startswith(("WRONGPASS", "NOAUTH")):
                raise AuthenticationError(f"authentication failed at {self.display_url}: {text}")
            raise StorageError(f"{command[0]} failed at {self.display_url}: {text}")


class Multiplexer(Link):
    """An auto-pipelining connection for one event loop."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)  # display_url, timeouts, client_name: see Link
        self._writer: asyncio.StreamWriter | None = None
        self._out: list[bytes | memoryview] = []
        self._wake: asyncio.Event = asyncio.Event()
        self._life: asyncio.Task[None] | None = None  # holds the connection's task group
        self._group: TaskGroup | None = None  # the reader and the writer, while they run
        self._reader: asyncio.Task[None] | None = None  # the reader task, while it runs
        self._watchdog: asyncio.TimerHandle | None = None
        self._heard = 0.0  # when the reader last got bytes (loop clock)
        self._silent = False  # the watchdog found the server silent

    def _connected(self) -> bool:
        return self._writer is not None

    # -- connecting ------------------------------------------------------------------

    async def _connect(self) -> None:
        opts = self.options
        try:
            async with asyncio.timeout(self.connect_timeout):
                if opts.get("path"):
                    reader, writer = await asyncio.open_unix_connection(
                        opts["path"], limit=4 * READ_SIZE
                    )
                else:
                    reader, writer = await asyncio.open_connection(
                        opts.get("host", "localhost"),
                        int(opts.get("port", 6379)),
                        ssl=self.ssl_context(),
                        limit=4 * READ_SIZE,
                    )
        except (OSError, TimeoutError) as exc:
            raise self.unreachable(exc) from exc
        parser = hiredis.Reader(replyError=ReplyError)
        handshake = self.handshake()
        if handshake:
            writer.write(b"".join(hiredis.pack_command(c) for c in handshake))
            try:
                async with asyncio.timeout(self.connect_timeout):
                    for command in handshake:
                        reply = parser.gets()
                        while reply is False:
                            data = await reader.read(65536)
                            if not data:
                                raise ConnectionResetError("connection closed during handshake")
                            parser.feed(data)
                            reply = parser.gets()
                        if isinstance(reply, ReplyError):
                            writer.close()
                            self.check_reply(command, reply)
            except (OSError, TimeoutError) as exc:
                writer.close()
                raise self.unreachable(exc) from exc
        self._writer = writer
        self._wake = asyncio.Event()
        self._silent = False
        self._life = asyncio.get_running_loop().create_task(
            self._run(reader, writer, parser), name="dagrt redis connection"
        )

    async def _run(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: hiredis.Reader
    ) -> None:
        """The connection's life: its reader and writer in one task group. Whichever
        ends first (the connection broke, or it is closed) cancels the other; then the
        socket is closed and, if this is still the current connection, every caller
        waiting on it fails (shielded: this runs whatever cancelled it)."""
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                group.start_soon(self._read_loop, reader, parser, writer, name="dagrt redis reader")
                group.start_soon(self._write_loop, writer, name="dagrt redis writer")
        except Exception as exc:  # a fault in a loop: the connection is dropped
            self._broken(exc, writer)
        finally:
            with anyio.CancelScope(shield=True):
                self._broken(ConnectionResetError("the connection was dropped"), writer)
                writer.close()
                with anyio.move_on_after(1):
                    try:
                        await writer.wait_closed()
                    except (OSError, ConnectionError):
                        pass

    # -- sending ---------------------------------------------------------------------

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (words each) and return their raw replies (errors as ReplyError)."""
        if not commands:  # (no reply would ever come to wake the caller)
            return []
        await self.ready()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        try:
            packed = [piece for c in commands for piece in pack_pieces(c)]
        except Exception as exc:
            raise StorageError(f"cannot encode a command for {self.display_url}: {exc}") from exc
        self.pending.append(Pending(len(commands), future))
        self._out.extend(packed)
        self._wake.set()
        self._arm()
        return await future

    async def _write_loop(self, writer: asyncio.StreamWriter) -> None:
        """Send what callers queued, in one write per wake-up (large values in slices)."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                out, self._out = self._out, []
                if not out:
                    continue
                # Small pieces go together; a large value goes in slices with a drain
                # between them, so it is neither joined with the rest (a copy) nor
                # copied whole into the transport's buffer when the socket is full.
                small: list[bytes | memoryview] = []
                for piece in out:
                    if len(piece) < BIG:
                        small.append(piece)
                        continue
                    if small:
                        writer.writelines(small)
                        small = []
                    view = memoryview(piece).cast("B")
                    for at in range(0, len(view), SLICE):
                        writer.write(view[at : at + SLICE])
                        await writer.drain()
                if small:
                    writer.writelines(small)
                await writer.drain()
        except (OSError, ConnectionError) as exc:
            self._broken(exc, writer)

    async def _read_loop(
        self, reader: asyncio.StreamReader, parser: hiredis.Reader, writer: asyncio.StreamWriter
    ) -> None:
        expect = self.pending
        loop = asyncio.get_running_loop()
        self._reader = asyncio.current_task()
        try:
            while True:
                data = await reader.read(READ_SIZE)
                self._heard = loop.time()
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if expect[0].add(reply):
                        expect.popleft()
        except asyncio.CancelledError:
            if not self._silent:
                raise
            self._broken(TimeoutError(f"no reply within {self.reply_timeout:g} s"), writer)
        except (OSError, ConnectionError, IndexError, hiredis.ProtocolError) as exc:
            self._broken(exc, writer)
        finally:
            self._reader = None

    # The reply deadline: a watchdog armed when a command is sent (whatever the reader
    # is doing: waiting idle, with no deadline, included), which fires at most once per
    # timeout while replies are owed; the reader only notes when it last heard from the
    # server (a clock read per read, no timer to move), so a server that stops
    # answering is noticed whenever it stops, without a timer per read.

    def _arm(self) -> None:
        """Replies are owed: start the watchdog if it is not running."""
        if self._watchdog is None and self.reply_timeout is not None:
            loop = asyncio.get_running_loop()
            self._heard = max(self._heard, loop.time())  # silence counts from now
            self._watchdog = loop.call_at(self._heard + self.reply_timeout, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if not self.pending or self._reader is None or self.reply_timeout is None:
            return  # nothing owed (the next command arms it again), or no reader
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._heard
        if silent < self.reply_timeout:  # heard since: look again a timeout after that
            self._watchdog = loop.call_at(self._heard + self.reply_timeout, self._watch)
            return
        self._silent = True
        self._reader.cancel()

    def _broken(self, exc: BaseException, writer: asyncio.StreamWriter | None = None) -> None:
        """Fail every waiting caller and stop the loops; the next command reconnects.
        With ``writer``: only if that is still the current connection."""
        if writer is not None and writer is not self._writer:
            return  # an earlier connection, already accounted for
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        current, self._writer = self._writer, None
        if current is not None:
            current.close()
        self.fail_pending(self.unreachable(exc))
        self._out.clear()
        group, self._group = self._group, None
        if group is not None:
            group.cancel_scope.cancel()

    async def aclose(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        writer, self._writer = self._writer, None  # the loops' cleanup leaves callers to us
        if writer is not None:
            writer.close()
        self.fail_pending(
            StorageConnectionError(f"the connection to {self.display_url} was closed")
        )
        group, self._group = self._group, None
        if group is not None:
            group.cancel_scope.cancel()
        life, self._life = self._life, None
        if life is not None:
            life.cancel()
            with anyio.CancelScope(shield=True):
                try:
                    await life
                except (asyncio.CancelledError, Exception):
                    pass
