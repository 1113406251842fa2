"""``InMemoryStorage``: the ``Storage`` seams over an in-process keyspace.

One re-entrant lock makes every command atomic and the object thread-safe; a
batch or a script holds it for its whole length, as Redis runs them without
interleaving. Blocking stream reads wait on a condition (sync) or on futures
woken by the writer (async, from any thread or loop), never by polling.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import anyio

from ...exceptions import StorageError, ValueTooLargeError
from .._commands import Cmd
from ..base import Storage
from . import keyspace, streams
from .keyspace import Command, Keyspace
from .lua import scripts
from .values import integer, text, to_bytes

__all__ = ["InMemoryStorage"]


class InMemoryStorage(Storage):
    """Storage in this process's memory; thread-safe and usable from any event loop."""

    def __init__(self, *, max_value_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_value_bytes = max_value_bytes
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._db = Keyspace(self._wake)
        self._closed = False

    def __repr__(self) -> str:
        return f"<InMemoryStorage {len(self._db.data)} keys>"

    def sweep(self) -> int:
        """Drop the keys that expired (a long-lived store of cache entries calls this:
        an expired key is otherwise dropped only when read); how many."""
        with self._lock:
            return self._db.sweep()

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
        return self._dispatch(cmd.args)

    def _dispatch(self, args: Sequence[Any]) -> Any:
        name = text(args[0]).upper()
        command = _COMMANDS.get(name)
        if command is not None:
            return command(self._db, args[1:])
        if name in ("EVALSHA", "EVALSHA_RO"):
            return self._evalsha(list(args[1:]))
        if name == "SCRIPT":
            return self._script(list(args[1:]))
        raise StorageError(f"ERR unknown command '{name}' for InMemoryStorage")

    # -- scripts (the real Lua source, run by :mod:`.lua`) ---------------------------

    def _evalsha(self, a: list[Any]) -> Any:
        n = integer(a[1])
        keys = [to_bytes(k) for k in a[2 : 2 + n]]
        argv = [to_bytes(v) for v in a[2 + n :]]
        return scripts().run(text(a[0]).lower(), keys, argv, self._db)

    def _script(self, a: list[Any]) -> Any:
        if text(a[0]).upper() != "LOAD":
            raise StorageError("ERR only SCRIPT LOAD is supported by InMemoryStorage")
        return scripts().load(to_bytes(a[1])).encode()


_COMMANDS: dict[str, Command] = {**keyspace.COMMANDS, **streams.COMMANDS}


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
