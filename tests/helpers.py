"""Helpers shared by test modules (``import helpers``: the tests directory is on sys.path)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import psutil

import dagrt
from dagrt import keys as K
from dagrt.metrics import read_run
from dagrt.storage import Storage


class Form:
    """One view of a storage for a test body: every call is awaited.

    ``sync`` runs the plain method in a worker thread; ``async`` awaits the
    ``a``-prefixed twin. The same test thus checks both forms.
    """

    def __init__(self, storage: Storage, form: str) -> None:
        self.storage = storage
        self.form = form

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.form == "async":
            return getattr(self.storage, "a" + name)  # type: ignore[no-any-return]
        method = getattr(self.storage, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

        return call

    async def scan(self, match: str | None = None) -> list[str]:
        if self.form == "async":
            return [k async for k in self.storage.ascan_iter(match)]
        return await anyio.to_thread.run_sync(lambda: list(self.storage.scan_iter(match)))


# --------------------------------------------------------------------------- tasks shared by tests


@dagrt.task
def add(x: int, y: int) -> int:
    return x + y


@dagrt.task
def inc(x: int) -> int:
    return x + 1


@dagrt.task
def total(parts: Any, *, scale: int = 1) -> int:
    return scale * (parts["left"][0] + parts["left"][1] + parts["right"][0][0])


@dagrt.task
def collect(*xs: Any) -> list[Any]:
    return list(xs)


# --------------------------------------------------------------------------- cross-process signals


class Signals:
    """Gates and marks that work across processes (through the test server).

    A task marks that it ran (``mark``), tells that it started and waits to be
    released (``gate``); the test waits for ``started`` and calls ``release``.
    Everything blocks on Redis lists: no polling.
    """

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=None)

    async def started(self, name: str, within: float = 30) -> None:
        def wait() -> None:
            with self._redis() as r:
                if r.blpop(f"{self.prefix}:started:{name}", within) is None:
                    raise TimeoutError(f"task {name} did not start")

        await anyio.to_thread.run_sync(wait)

    async def release(self, name: str) -> None:
        """Open the gate for good: every run of the task passes, also a re-run."""

        def go() -> None:
            with self._redis() as r:
                r.xadd(f"{self.prefix}:go:{name}", {"go": 1})

        await anyio.to_thread.run_sync(go)

    def marks(self) -> list[str]:
        with self._redis() as r:
            return [m.decode() for m in r.lrange(f"{self.prefix}:marks", 0, -1)]


def note_call(log: str, key: str, die: bool) -> None:
    """Append ``key`` to the file ``log`` (a few µs: a task that does only this is
    tiny); with ``die``, kill this process (a worker) the first time."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)
    if die and not os.path.exists(log + ".died"):
        open(log + ".died", "w").close()
        os._exit(1)


# Chains of tasks for crash tests (failpoints name them: before_run:first, ...).


@dagrt.task
def first(x: int) -> int:
    return x * 10


@dagrt.task
def second(x: int) -> int:
    return x + 7


@dagrt.task
def big(i: int) -> Any:
    import numpy as np

    return np.full(16_384, i, dtype=np.int64)  # 128 kB: worth keeping off the network


@dagrt.task
def grow(a: Any) -> Any:
    return a + 1


@dagrt.task
def shrink(a: Any) -> int:
    return int(a[0])


@dagrt.task
def gate(signals: Signals, name: str, value: Any = None, *_: Any) -> Any:
    """Say "started", then block until the test releases ``name``; return ``value``."""
    with signals._redis() as r:
        r.rpush(f"{signals.prefix}:started:{name}", 1)
        r.xread({f"{signals.prefix}:go:{name}": "0-0"}, block=60_000)  # an open gate stays open
    return value


@dagrt.task
def mark(signals: Signals, name: str, *_: Any) -> str:
    """Record that this task ran; a second run of the same name raises."""
    with signals._redis() as r:
        if not r.sadd(f"{signals.prefix}:seen", name):
            raise RuntimeError(f"{name} ran twice")
        r.rpush(f"{signals.prefix}:marks", name)
    return name


# --------------------------------------------------------------------------- the event log


async def wait_for_events(storage: Any, run_id: str, done: Any) -> list[Any]:
    """The run's events once ``done(events)`` holds; waits on the log itself (workers
    write their events on their own schedule)."""
    last = "$"
    with anyio.fail_after(30):
        while True:
            try:
                events = read_run(storage, run_id)
            except dagrt.RunNotFoundError:
                events = []
            if done(events):
                return events
            reply = await storage.axread({K.events(): last}, block=5)
            if reply:
                last = reply[0][1][-1][0]


def interrupt_and_reap(process: subprocess.Popen[str]) -> None:
    """Ctrl-C ``process``: it exits with 0 and leaves no child process behind."""
    kids = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    _, alive = psutil.wait_procs(kids, timeout=15)
    assert alive == []
    if process.stdout is not None:
        process.stdout.close()


def ran(log: str, name: str) -> None:
    """Note in the file ``log`` that ``name`` ran (tasks call it: the file says what ran)."""
    with open(log, "a") as f:
        f.write(name + "\n")


def what_ran(log: Path) -> list[str]:
    """The names noted in ``log`` since it was last read, in order (and start afresh)."""
    runs = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return runs
