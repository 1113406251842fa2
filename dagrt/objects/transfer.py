"""Direct transfers between hosts: a data endpoint per worker, and the fetch.

:class:`DataServer` serves the objects of its host's store to workers of other
hosts over TCP: one request per connection (``GET <run> <task>\\n``), answered
with the object's size (8 bytes, little-endian; all ones: not here), the length
of its seal (1 byte: 0, or 64 with a secret) and the seal, then its bytes,
sent from the file by ``sendfile`` (the kernel copies the shared-memory pages to
the socket; nothing passes through Python). Any worker of a host can serve any
object of that host's store, so an object outlives the worker that made it.

With a secret, an object that leaves its host is sealed for its place
(:mod:`dagrt.sealing`: the output of that task of that run), the seal made by the
endpoint that sends it (once per object: objects do not change), and checked by
the fetcher over what it received before anything is published or unpickled: a
forged location that names another endpoint, or bytes changed on the way, raise
:class:`~dagrt.exceptions.IntegrityError`.

:func:`fetch` (blocking: it runs in a thread) receives an object straight into
a file of the fetching host's store (``recv_into`` a writable mapping: one copy,
from the socket to shared memory), published there for the host's other
consumers, and returns it mapped; without room in that store, into memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import select
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import cast

import anyio
import anyio.abc
import anyio.to_thread

from ..exceptions import IntegrityError
from ..keyring import Keyring
from ..sealing import check_head, head_of, output_place
from .store import HostStore, ObjectCorrupt, ObjectMissing, StoreError, _Incoming, mapped

__all__ = ["DataServer", "TransferError", "fetch"]

log = logging.getLogger("dagrt.objects")

_SIZE = struct.Struct("<Q")
_ABSENT = (1 << 64) - 1
REQUEST_TIMEOUT = 10.0  # seconds a connection may take to say what it wants
SEND_STALL = 30.0  # seconds a reader may take nothing before its transfer is dropped


class TransferError(StoreError):
    """A direct transfer failed (the endpoint is gone, or the connection broke)."""


class DataServer:
    """Serves ``store``'s objects on ``bind`` (``host:port``, port 0: any free one)."""

    def __init__(
        self,
        store: HostStore,
        bind: str = "127.0.0.1:0",
        *,
        keyring: Keyring | None = None,
        mid_send: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self._tags: OrderedDict[tuple[str, int, int, int, int], bytes] = (
            OrderedDict()
        )  # objects' seals
        # crash tests: called with the task's index halfway through sending its object
        self._mid_send = mid_send
        host, _, port = bind.rpartition(":")
        self._bind = (host or "127.0.0.1", int(port or 0))
        self.served = 0  # objects sent
        self.address = ""

    async def serve(
        self,
        advertise: str | None = None,
        *,
        task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled. Reports (``task_status``) and keeps in :attr:`address`
        what other hosts connect to: ``advertise`` and the port, else the bound
        address (this machine's address when bound to ``0.0.0.0``)."""
        server = await asyncio.start_server(self._handle, *self._bind)
        port = server.sockets[0].getsockname()[1]
        host = advertise or self._bind[0]
        if host in ("0.0.0.0", "::", ""):
            host = await anyio.to_thread.run_sync(_this_machine)
        self.address = f"{host}:{port}"
        async with server:
            task_status.started(self.address)
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            words = line.split()
            if len(words) != 3 or words[0] != b"GET":
                return
            run_id, index = words[1].decode(errors="replace"), int(words[2])
            try:  # (a file on the host's tmpfs: opening it does not wait on a disk)
                fd = os.open(self.store.path(run_id, index), os.O_RDONLY)
            except (OSError, ValueError):
                writer.write(_SIZE.pack(_ABSENT))
                await writer.drain()
                return
            try:
                stat = os.fstat(fd)
                size = stat.st_size
                tag = b""
                if self.keyring is not None:
                    tag = await self._tag(run_id, index, fd, stat)
                writer.write(_SIZE.pack(size) + bytes([len(tag)]) + tag)
                await writer.drain()
                # the bytes go from a thread (a blocking sendfile loop: fewer, larger
                # calls than the event loop makes, and none of its turns); the
                # transport neither reads nor writes meanwhile
                cast(asyncio.Transport, writer.transport).pause_reading()
                sock = writer.get_extra_info("socket").fileno()
                half = size // 2 if self._mid_send is not None else size
                await anyio.to_thread.run_sync(_send_file, sock, fd, 0, half)
                if half < size:
                    assert self._mid_send is not None
                    self._mid_send(index)
                    await anyio.to_thread.run_sync(_send_file, sock, fd, half, size - half)
            finally:
                os.close(fd)
            self.served += 1
        except (TimeoutError, OSError, ValueError, ConnectionError) as exc:
            log.debug("data endpoint: a transfer ended early: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def _tag(self, run_id: str, index: int, fd: int, stat: os.stat_result) -> bytes:
        """The seal of an object of the store (made in a thread, then kept for that file)."""
        assert self.keyring is not None
        size = stat.st_size
        key = (run_id, index, size, stat.st_ino, stat.st_mtime_ns)
        tag = self._tags.get(key)
        if tag is None:
            place = output_place(run_id, index)
            tag = await anyio.to_thread.run_sync(_file_tag, self.keyring, place, fd, size)
            self._tags[key] = tag
            while len(self._tags) > _TAGS_KEPT:
                self._tags.popitem(last=False)
        return tag


_TAGS_KEPT = 4096  # objects' seals a data endpoint remembers


def _file_tag(keyring: Keyring, place: bytes, fd: int, size: int) -> bytes:
    with mapped(fd, size) as view:
        return head_of(keyring, place, view)


def fetch(
    address: str,
    run_id: str,
    index: int,
    size: int,
    store: HostStore | None,
    *,
    timeout: float = 30.0,
    keyring: Keyring | None = None,
) -> memoryview:
    """Object ``run_id/index`` of ``size`` bytes from the endpoint at ``address``,
    kept in ``store`` when it has room (see the module's text). Blocking.

    :class:`ObjectMissing` if the endpoint does not have it, :class:`ObjectCorrupt`
    if its size is not ``size``, :class:`TransferError` if the endpoint cannot be
    reached or the connection breaks (``timeout``: seconds without progress);
    with a ``keyring``, :class:`~dagrt.exceptions.IntegrityError` if the object is
    not sealed, or its seal does not match (nothing is kept then)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise TransferError(f"no data endpoint for object {run_id}/{index} ({address!r})")
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise TransferError(
            f"cannot reach the data endpoint {address} for object {run_id}/{index}: {exc}"
        ) from exc
    with sock:
        what = f"object {run_id}/{index} from {address}"
        try:
            sock.sendall(f"GET {run_id} {int(index)}\n".encode())
            head = bytearray(_SIZE.size)
            _recv_into(sock, memoryview(head))
            (n,) = _SIZE.unpack(head)
            tag = b""
            if n != _ABSENT:
                length = bytearray(1)
                _recv_into(sock, memoryview(length))
                tag_buffer = bytearray(length[0])
                _recv_into(sock, memoryview(tag_buffer))
                tag = bytes(tag_buffer)
        except OSError as exc:
            raise TransferError(f"transfer of {what}: {exc}") from exc
        if n == _ABSENT:
            raise ObjectMissing(f"object {run_id}/{index} is not at {address}")
        if n != size:
            raise ObjectCorrupt(
                f"object {run_id}/{index} at {address} has {n:,} bytes, its location records"
                f" {size:,}"
            )
        place = output_place(run_id, index)
        if keyring is not None and not tag:
            raise IntegrityError(
                f"{what} is not sealed, but this pool has a secret (nothing of it was kept"
                " or unpickled)"
            )

        def check(view: memoryview) -> None:
            if keyring is not None and not check_head(keyring, [place], tag, view):
                raise IntegrityError(
                    f"{what}: its seal does not match (forged, or sealed with another"
                    " secret); nothing of it was kept or unpickled"
                )

        incoming = store.receive(run_id, index, size) if store is not None else None
        try:
            if incoming is None:
                buffer = bytearray(size)
                _recv_into(sock, memoryview(buffer))
                check(memoryview(buffer))
                return memoryview(buffer)
            _recv_to(sock, incoming, size)
            if keyring is not None:
                with incoming.mapped() as view:
                    check(view)
        except OSError as exc:
            if incoming is not None:
                incoming.abort()
            raise TransferError(
                f"transfer of object {run_id}/{index} from {address}: {exc}"
            ) from exc
        except BaseException:
            if incoming is not None:
                incoming.abort()
            raise
        incoming.commit()
    assert store is not None
    return store.map(run_id, index, size)


def _send_file(sock: int, fd: int, offset: int, count: int) -> None:
    """Send ``count`` bytes of file ``fd`` from ``offset`` on the non-blocking socket
    ``sock`` (blocking: a thread's), waiting at most :data:`SEND_STALL` seconds
    for room each time the socket is full."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    end = offset + count
    while offset < end:
        try:
            sent = os.sendfile(sock, fd, offset, end - offset)
            if sent == 0:
                raise ValueError(f"the object ends {end - offset:,} bytes early")
            offset += sent
        except BlockingIOError:
            if not poller.poll(SEND_STALL * 1000):
                raise TimeoutError(f"the reader took nothing for {SEND_STALL:.0f} s") from None


def _this_machine() -> str:
    """This machine's address as others see it (its host name's address)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


_CHUNK = 1 << 22


def _recv_to(sock: socket.socket, incoming: _Incoming, size: int) -> None:
    """Receive ``size`` bytes into a store file: spliced from the socket through a
    pipe into the file where the kernel can (no copy through this process: 22 ms
    for 64 MiB on loopback against 30 ms through a buffer), else a chunk at a time
    through one buffer."""
    if _SPLICE is not None:
        try:
            read_end, write_end = os.pipe()
        except OSError:
            pass
        else:
            try:
                with contextlib.suppress(OSError):  # a larger pipe, where allowed
                    fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_BYTES)
                # splice needs a blocking socket; the kernel keeps the timeout
                timeout = sock.gettimeout() or 0.0
                sock.settimeout(None)
                seconds = int(timeout)
                sock.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_RCVTIMEO,
                    struct.pack("ll", seconds, int((timeout - seconds) * 1e6)),
                )
                _splice_to(sock, read_end, write_end, incoming, size)
                return
            except _SpliceUnsupported:
                pass  # (nothing was received yet)
            finally:
                os.close(read_end)
                os.close(write_end)
    chunk = memoryview(bytearray(min(size, _CHUNK)))
    got = 0
    while got < size:
        n = sock.recv_into(chunk, min(size - got, len(chunk)))
        if n == 0:
            raise ConnectionResetError(f"connection closed after {got:,} of {size:,} bytes")
        incoming.write(chunk[:n])
        got += n


_SPLICE = getattr(os, "splice", None)  # Linux, Python 3.10+
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PIPE_BYTES = 1 << 20


class _SpliceUnsupported(Exception):
    pass


def _splice_to(
    sock: socket.socket, read_end: int, write_end: int, incoming: _Incoming, size: int
) -> None:
    assert _SPLICE is not None
    got = 0
    while got < size:
        try:
            n = _SPLICE(sock.fileno(), write_end, min(size - got, _PIPE_BYTES))
        except OSError as exc:
            if got == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise _SpliceUnsupported from exc
            if exc.errno == errno.EAGAIN:
                raise TimeoutError(f"no data for a while after {got:,} of {size:,} bytes") from exc
            raise
        if n == 0:
            raise ConnectionResetError(f"connection closed after {got:,} of {size:,} bytes")
        incoming.splice_from(read_end, n)
        got += n


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    total = len(view)
    while got < total:
        n = sock.recv_into(view[got:], min(total - got, 1 << 22))
        if n == 0:
            raise ConnectionResetError(f"connection closed after {got:,} of {total:,} bytes")
        got += n
