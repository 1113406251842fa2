"""A pipelined connection for reading values (``GET``, ``MGET``) into place.

Replies on the auto-pipelined connection (``_multiplex.py``) pass through the
stream reader's buffer, then hiredis's (grown by doubling), then a new bytes
object: a 160 MB value took 0.5 s to read, three times what writing it takes.
Here a bulk reply of ``BIG`` bytes or more is received by the socket straight
into a ``bytearray`` of its exact size (``asyncio.BufferedProtocol``), the
only copy after the kernel's; smaller ones are sliced from one reusable
buffer. A large value thus comes back as a ``bytearray``, which is also
writable, so ``loads`` rebuilds arrays on it without copying it again.

The parser is small Python code for the few reply shapes of value reads:
bulk, nil, arrays of those, integers, status and error lines. Replies are
matched to callers in order; a caller that is cancelled leaves its replies to
be read and dropped. A lost connection fails every waiting caller with
:class:`~dagrt.StorageConnectionError`; the next read connects again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis

from ..exceptions import StorageConnectionError, StorageError
from ._multiplex import Link, Pending, ReplyError
from ._resp import BIG, READ_SIZE

__all__ = ["ValueReader"]

_NIL = object()  # "$-1" / "*-1" while parsing


class _Protocol(asyncio.BufferedProtocol):
    """Parses replies as they arrive and hands each complete one to ``on_reply``."""

    def __init__(self, on_reply: Any, on_lost: Any) -> None:
        self.on_reply = on_reply
        self.on_lost = on_lost
        self.buf = bytearray(READ_SIZE)
        self.start = 0  # first unparsed byte of buf
        self.end = 0  # one past the last received byte
        self.big: bytearray | None = None  # a large bulk being received into place
        self.big_at = 0
        self.crlf = False  # the CRLF after a large bulk is still to be consumed
        self.stack: list[list[Any]] = []  # open arrays: [items, expected count]
        self.transport: asyncio.BaseTransport | None = None

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.big is not None:
            return memoryview(self.big)[self.big_at :]
        buf = self.buf
        if len(buf) - self.end < BIG:  # little room: move the unparsed tail to the front
            tail = self.end - self.start
            if self.start:
                buf[:tail] = buf[self.start : self.end]
                self.start, self.end = 0, tail
            if len(buf) - self.end < BIG:  # a header or a line longer than the buffer
                buf.extend(bytes(len(buf)))
        return memoryview(buf)[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self.big is not None:
                self.big_at += nbytes
                if self.big_at == len(self.big):
                    value, self.big = self.big, None
                    self._element(value)  # the transport's view of it goes with this call
                    self._parse()
                return
            self.end += nbytes
            self._parse()
        except Exception as exc:  # a protocol error: the stream is out of step
            self.on_lost(self, exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost(self, exc or ConnectionResetError("the server closed the connection"))

    # -- parsing ---------------------------------------------------------------------

    def _element(self, value: Any) -> None:
        """A complete element: into the open array, or a whole reply."""
        stack = self.stack
        while True:
            if not stack:
                self.on_reply(self, None if value is _NIL else value)
                return
            top = stack[-1]
            top[0].append(None if value is _NIL else value)
            if len(top[0]) < top[1]:
                return
            stack.pop()
            value = top[0]

    def _parse(self) -> None:
        buf = self.buf
        while self.big is None:
            start, end = self.start, self.end
            if self.crlf:
                if end - start < 2:
                    return
                if buf[start : start + 2] != b"\r\n":
                    raise StorageError("malformed bulk reply (no CRLF after the value)")
                self.start = start = start + 2
                self.crlf = False
            if start == end:
                self.start = self.end = 0
                return
            eol = buf.find(b"\r\n", start, end)
            if eol < 0:
                return
            kind = buf[start]
            if kind == 36:  # '$' bulk
                size = int(buf[start + 1 : eol])
                body = eol + 2
                if size < 0:
                    self.start = body
                    self._element(_NIL)
                    continue
                have = end - body
                if size >= BIG:  # into a buffer of its own, received in place
                    target = bytearray(size)
                    got = min(have, size)
                    target[:got] = memoryview(buf)[body : body + got]
                    self.start = body + got
                    self.crlf = True
                    if got < size:
                        self.start = self.end = 0  # everything buffered was taken
                        self.big, self.big_at = target, got
                        return
                    self._element(target)
                    continue
                if have < size + 2:
                    return
                self.start = body + size + 2
                self._element(bytes(memoryview(buf)[body : body + size]))
            elif kind == 42:  # '*' array
                count = int(buf[start + 1 : eol])
                self.start = eol + 2
                if count < 0:
                    self._element(_NIL)
                elif count == 0:
                    self._element([])
                else:
                    self.stack.append([[], count])
            elif kind == 58:  # ':' integer
                self.start = eol + 2
                self._element(int(buf[start + 1 : eol]))
            elif kind == 43:  # '+' status
                self.start = eol + 2
                self._element(bytes(buf[start + 1 : eol]))
            elif kind == 45:  # '-' error
                self.start = eol + 2
                self._element(ReplyError(buf[start + 1 : eol].decode(errors="replace")))
            else:
                raise StorageError(f"unexpected reply type {chr(kind)!r} on the value connection")


class ValueReader(Link):
    """Reads values over one pipelined connection per event loop (see the module)."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)  # display_url, timeouts, client_name: see Link
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None

    def _connected(self) -> bool:
        return self._transport is not None

    async def _connect(self) -> None:
        opts = self.options
        loop = asyncio.get_running_loop()
        protocol = _Protocol(self._on_reply, self._on_lost)
        try:
            async with asyncio.timeout(self.connect_timeout):
                if opts.get("path"):
                    transport, _ = await loop.create_unix_connection(lambda: protocol, opts["path"])
                else:
                    transport, _ = await loop.create_connection(
                        lambda: protocol,
                        opts.get("host", "localhost"),
                        int(opts.get("port", 6379)),
                        ssl=self.ssl_context(),
                    )
        except (OSError, TimeoutError) as exc:
            raise self.unreachable(exc) from exc
        self._transport = transport  # type: ignore[assignment]
        self._protocol = protocol
        handshake = self.handshake(":values")
        if not handshake:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                replies = await self._send(handshake)
        except TimeoutError as exc:
            self._drop(exc)
            raise self.unreachable(exc) from exc
        for command, reply in zip(handshake, replies, strict=True):
            if isinstance(reply, ReplyError):
                self._drop(reply)
                self.check_reply(command, reply)

    def _send(self, commands: Sequence[Sequence[Any]]) -> asyncio.Future[list[Any]]:
        assert self._transport is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.pending.append(Pending(len(commands), future))
        self._transport.write(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
        return future

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send read commands (words each); their replies (errors as ``ReplyError``)."""
        await self.ready()
        future = self._send(commands)
        try:
            async with asyncio.timeout(self.reply_timeout):
                return await future  # cancelled: its replies are read and dropped
        except TimeoutError as exc:
            self._drop(exc)  # the stream is out of step with its callers now
            raise self.unreachable(exc) from exc

    def _on_reply(self, protocol: _Protocol, reply: Any) -> None:
        if protocol is not self._protocol:
            return  # a connection dropped earlier still delivering
        if self.pending[0].add(reply):
            self.pending.popleft()

    def _on_lost(self, protocol: _Protocol | None, exc: BaseException) -> None:
        if protocol is not self._protocol:
            return  # an earlier connection, already accounted for
        self._transport, self._protocol = None, None
        self.fail_pending(self.unreachable(exc))

    def _drop(self, exc: BaseException) -> None:
        transport = self._transport
        self._on_lost(self._protocol, exc)
        if transport is not None:
            transport.close()

    async def aclose(self) -> None:
        self._closed = True
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.close()
        self.fail_pending(
            StorageConnectionError(f"the connection to {self.display_url} was closed")
        )
