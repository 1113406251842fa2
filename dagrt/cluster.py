"""``LocalCluster``: a private server and worker processes on this machine.

It starts a Redis-compatible server (:class:`~dagrt.storage.RedisServer`, on a
free loopback port with a random password) and ``n_workers`` processes running
``python -m dagrt worker``: the same entry point the docker-compose pool uses.
Workers inherit this process's ``sys.path`` (so they import what the client
imports) and stop when their stdin closes, so they end with this process even
if it is killed; the server gets SIGTERM from Linux when this process dies.
Leaving the ``async with`` stops everything, Ctrl-C included: every worker gets
SIGTERM at once and one grace period to finish, then SIGKILL. What workers print
is passed on by relay tasks of the cluster's task group, so the cluster is closed
by the task that entered it.
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
import anyio.abc
import anyio.to_thread

from . import native_threads
from .keyring import Keyring, new_secret
from .storage import RedisServer
from .storage.redis import redact
from .workers.lifecycle import READY_LINE

__all__ = ["LocalCluster"]

log = logging.getLogger("dagrt.cluster")

RESTART_QUICK = 10.0  # seconds: a replacement that dies sooner is replaced more slowly
RESTART_MAX_DELAY = 10.0  # seconds between replacements, at most


class LocalCluster:
    """A server plus worker processes, started and stopped together.

    ``n_workers`` defaults to one per core; ``threads`` (threads per worker for
    sync task functions) to cores / workers, at least 1; the workers' native
    libraries (BLAS, OpenMP) get the cores they leave: cores // (workers * threads)
    threads per task thread, at least 1 (:mod:`dagrt.native_threads`, where a
    user's own ``OMP_NUM_THREADS`` and the like win); ``worker_options`` are
    more ``dagrt worker`` flags, e.g. ``{"claim-timeout": 5}``, and ``worker_env``
    more environment variables for them (``DAGRT_METRICS_URL``). ``retain_memory``
    (default) has the server and the workers keep the memory they free for their
    next large values (:mod:`dagrt.malloc`: faster where fresh pages are slow to
    fault in; each process keeps its peak memory until the cluster stops). ``store``
    (default) gives the workers this host's object store (:mod:`dagrt.objects`, in
    ``/dev/shm``): large outputs stay there and workers map them instead of moving
    them through the server; ``worker_options={"store-bytes": N}`` bounds it.
    ``restart`` (default): a worker that exits while the cluster runs (a task called
    ``os._exit``, the kernel killed it) is replaced, as a pool under compose or
    Kubernetes would be; its task is taken over by another worker after the claim
    timeout, and a task that kills every worker that runs it fails with
    :class:`~dagrt.WorkerLostError`. Replacements that die at once are started
    further and further apart (up to :data:`RESTART_MAX_DELAY` seconds).
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
        store: bool = True,
        restart: bool = True,
    ) -> None:
        cores = native_threads.cores()
        self.n_workers = n_workers if n_workers is not None else cores
        if (
            isinstance(self.n_workers, bool)
            or not isinstance(self.n_workers, int)
            or self.n_workers < 0
        ):
            raise ValueError(f"n_workers must be an int >= 0, got {n_workers!r}")
        self.threads = threads or max(1, cores // max(1, self.n_workers))
        self.native_threads = native_threads.budget(self.threads, self.n_workers, cores)
        self.concurrency = concurrency
        self.password = password if password is not None else secrets.token_hex(12)
        # the pool's secret (several: one a line), its own if not given: records,
        # outcomes and errors are signed and checked; clients need it (``cluster.secret``)
        self.secret = secret if secret is not None else new_secret().encode()
        Keyring.of(self.secret)
        self.worker_options = dict(worker_options or {})
        self.worker_env = dict(worker_env or {})
        self.start_timeout = start_timeout
        self.retain_memory = retain_memory
        self.store = store
        self.restart = restart
        self.restarts = 0  # workers replaced so far
        self._quick_deaths = 0  # replacements in a row that died soon after starting
        self.server: RedisServer | None = None
        self.processes: list[asyncio.subprocess.Process] = []
        self.worker_ids: list[str] = []
        self._relays: anyio.abc.TaskGroup | None = None  # what the workers print goes on
        self._closing = False

    def __repr__(self) -> str:
        return (
            f"<dagrt.LocalCluster {len(self.processes)} workers"
            f" {redact(self.url) if self.server else ''}>"
        )

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the cluster is not started")
        return self.server.url

    async def __aenter__(self) -> LocalCluster:
        self._relays = anyio.create_task_group()
        await self._relays.__aenter__()
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
            "--native-threads",
            str(self.native_threads),
            "--watch-stdin",
        ]
        if self.concurrency is not None:
            argv += ["--concurrency", str(self.concurrency)]
        if not self.retain_memory:
            argv.append("--release-memory")
        if self.store and "store" not in self.worker_options:
            argv += ["--store", "auto"]
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
        env["DAGRT_SECRET"] = self.secret.decode()
        env.pop("DAGRT_SECRET_FILE", None)
        env["DAGRT_REDIS_URL"] = self.url
        env.update(self.worker_env)
        return env

    async def scale(self, n_workers: int) -> None:
        """Start workers until ``n_workers`` run (this cluster only grows)."""
        if self._relays is None:
            raise RuntimeError("the cluster is not started (use `async with`)")
        starting = [await self._spawn() for _ in range(n_workers - len(self.processes))]
        with anyio.fail_after(self.start_timeout):
            for process in starting:  # they start side by side; their ids in order
                self.worker_ids.append(await self._relays.start(self._relay, process))

    async def _spawn(
        self, replacing: asyncio.subprocess.Process | None = None
    ) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *self._worker_argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._worker_env(),
        )
        if replacing is not None and replacing in self.processes:
            self.processes[self.processes.index(replacing)] = process
        else:
            self.processes.append(process)
        return process

    async def _relay(
        self,
        process: asyncio.subprocess.Process,
        *,
        task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Say the worker's id once it is ready, then pass on what it prints (a full pipe
        would stop it) until it exits."""
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                code = await process.wait()
                if self._closing:  # stopped while it started (start_timeout, Ctrl-C)
                    return
                raise RuntimeError(f"a dagrt worker exited with code {code} before it was ready")
            text = line.decode(errors="replace").rstrip()
            if text.startswith(READY_LINE):
                task_status.started(text.split()[-1])
                break
            _say(text)
        started = anyio.current_time()
        while line := await process.stdout.readline():
            _say(line.decode(errors="replace").rstrip())
        code = await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if self._closing or not self.restart:
            return
        # It died while the cluster runs: replace it (slower each time it dies at once).
        quick = anyio.current_time() - started < RESTART_QUICK
        self._quick_deaths = self._quick_deaths + 1 if quick else 0
        delay = min(RESTART_MAX_DELAY, 0.5 * 2 ** (self._quick_deaths - 1)) if quick else 0.0
        log.warning(
            "a dagrt worker (pid %d) exited with code %s; starting another%s",
            process.pid,
            code,
            f" in {delay:.1f} s" if delay else "",
        )
        await anyio.sleep(delay)
        if self._closing or self._relays is None:
            return
        replacement = await self._spawn(replacing=process)
        if self._closing:  # (closed while it started: close() kills it)
            return
        with anyio.fail_after(self.start_timeout):
            worker_id = await self._relays.start(self._relay, replacement)
        self.restarts += 1
        if replacement in self.processes:
            self.worker_ids[self.processes.index(replacement)] = worker_id

    def kill_worker(self, index: int = 0) -> int:
        """SIGKILL one worker, as a crash would (tests). Its pid."""
        process = self.processes[index]
        process.kill()
        return process.pid

    async def close(self, grace: float = 10.0) -> None:
        """Stop the workers and the server. Every worker gets SIGTERM at once and
        ``grace`` seconds, all together, to finish its tasks; those still running
        then get SIGKILL. Call it from the task that entered the cluster."""
        self._closing = True
        try:
            with anyio.CancelScope(shield=True):
                await self._stop_workers(grace)
        finally:
            try:
                if self._relays is not None:
                    relays, self._relays = self._relays, None
                    # Relays end as their worker's output does; one whose pipe a child
                    # of the worker still holds open is cancelled a moment later.
                    relays.cancel_scope.deadline = anyio.current_time() + 1.0
                    await relays.__aexit__(None, None, None)
            finally:
                self.processes.clear()
                if self.server is not None:
                    server, self.server = self.server, None
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(server.cleanup)

    async def _stop_workers(self, grace: float) -> None:
        running = [p for p in self.processes if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(grace):
            for process in running:
                await process.wait()
        left = list(self.processes)  # (a replacement started meanwhile too)
        for process in left:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for process in left:
            await process.wait()
            if process.stdin is not None:
                process.stdin.close()


def _say(text: str) -> None:
    """Pass on a line a worker printed (an error writing it must not stop the relay:
    the worker would block on a full pipe)."""
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):  # stderr closed or gone
        pass
