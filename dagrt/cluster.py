"""``LocalCluster``: a private server and worker processes on this machine.

It starts a Redis-compatible server (:class:`~dagrt.storage.RedisServer`, on a
free loopback port with a random password) and ``n_workers`` processes running
``python -m dagrt worker``: the same entry point the docker-compose pool uses.
Workers inherit this process's ``sys.path`` (so they import what the client
imports) and stop when their stdin closes, so they end with this process even
if it is killed; the server gets SIGTERM from Linux when this process dies.
Leaving the ``async with`` stops everything, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from typing import Any

import anyio
import anyio.to_thread

from .storage import RedisServer
from .workers.lifecycle import READY_LINE

__all__ = ["LocalCluster"]

log = logging.getLogger("dagrt.cluster")


class LocalCluster:
    """A server plus worker processes, started and stopped together.

    ``n_workers`` defaults to one per core; ``threads`` (threads per worker for
    sync task functions) to cores / workers, at least 1; ``worker_options`` are
    more ``dagrt worker`` flags, e.g. ``{"claim-timeout": 5}``, and ``worker_env``
    more environment variables for them (``DAGRT_METRICS_URL``). ``retain_memory``
    (default) has the server and the workers keep the memory they free for their
    next large values (:mod:`dagrt.malloc`: faster where fresh pages are slow to
    fault in; each process keeps its peak memory until the cluster stops).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        threads: int | None = None,
        concurrency: int | None = None,
        password: str | None = None,
        secret: bytes | None = None,
        worker_options: dict[str, Any] | None = None,
        worker_env: dict[str, str] | None = None,
        start_timeout: float = 60.0,
        retain_memory: bool = True,
    ) -> None:
        cores = os.cpu_count() or 1
        self.n_workers = n_workers if n_workers is not None else cores
        if (
            isinstance(self.n_workers, bool)
            or not isinstance(self.n_workers, int)
            or self.n_workers < 0
        ):
            raise ValueError(f"n_workers must be an int >= 0, got {n_workers!r}")
        self.threads = threads or max(1, cores // max(1, self.n_workers))
        self.concurrency = concurrency
        self.password = password if password is not None else secrets.token_hex(12)
        self.secret = secret
        self.worker_options = dict(worker_options or {})
        self.worker_env = dict(worker_env or {})
        self.start_timeout = start_timeout
        self.retain_memory = retain_memory
        self.server: RedisServer | None = None
        self.processes: list[asyncio.subprocess.Process] = []
        self.worker_ids: list[str] = []
        self._relays: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return (
            f"<dagrt.LocalCluster {len(self.processes)} workers {self.url if self.server else ''}>"
        )

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the cluster is not started")
        return self.server.url

    async def __aenter__(self) -> LocalCluster:
        try:
            self.server = RedisServer(
                password=self.password, die_with_parent=True, retain_memory=self.retain_memory
            )
            self.server.spawn()
            await anyio.to_thread.run_sync(self.server.wait_ready, self.start_timeout)
            await self.scale(self.n_workers)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _worker_argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "dagrt",
            "worker",  # the server's URL (its password) goes by environment, not argv
            "--threads",
            str(self.threads),
            "--watch-stdin",
        ]
        if self.concurrency is not None:
            argv += ["--concurrency", str(self.concurrency)]
        if not self.retain_memory:
            argv.append("--release-memory")
        for name, value in self.worker_options.items():
            argv.append(f"--{name}")
            if value != "":  # "" marks a flag without a value
                argv.append(str(value))
        return argv

    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [p for p in sys.path if p]
        if os.getcwd() not in paths:
            paths.insert(0, os.getcwd())
        env["PYTHONPATH"] = os.pathsep.join(paths)
        if self.secret is not None:
            env["DAGRT_SECRET"] = self.secret.decode()
        env["DAGRT_REDIS_URL"] = self.url
        env.update(self.worker_env)
        return env

    async def scale(self, n_workers: int) -> None:
        """Start workers until ``n_workers`` run (this cluster only grows)."""
        starting = [await self._spawn() for _ in range(n_workers - len(self.processes))]
        with anyio.fail_after(self.start_timeout):
            for process in starting:
                self.worker_ids.append(await self._wait_ready(process))

    async def _spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *self._worker_argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._worker_env(),
        )
        self.processes.append(process)
        return process

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> str:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                code = await process.wait()
                raise RuntimeError(f"a dagrt worker exited with code {code} before it was ready")
            text = line.decode(errors="replace").rstrip()
            if text.startswith(READY_LINE):
                self._relays.append(asyncio.create_task(self._relay(process)))
                return text.split()[-1]
            print(text, file=sys.stderr)

    async def _relay(self, process: asyncio.subprocess.Process) -> None:
        """Pass on what a worker prints (a full pipe would stop it)."""
        assert process.stdout is not None
        while line := await process.stdout.readline():
            print(line.decode(errors="replace").rstrip(), file=sys.stderr)

    def kill_worker(self, index: int = 0) -> int:
        """SIGKILL one worker, as a crash would (tests). Its pid."""
        process = self.processes[index]
        process.kill()
        return process.pid

    async def close(self, grace: float = 10.0) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after ``grace`` seconds) and the server."""
        with anyio.CancelScope(shield=True):
            for process in self.processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGTERM)
            for process in self.processes:
                try:
                    with anyio.fail_after(grace):
                        await process.wait()
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
                if process.stdin is not None:
                    process.stdin.close()
            for relay in self._relays:
                relay.cancel()
            for relay in self._relays:
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
            self._relays.clear()
            self.processes.clear()
            if self.server is not None:
                server, self.server = self.server, None
                await anyio.to_thread.run_sync(server.cleanup)
