"""Shared fixtures: a real Redis-compatible server, worker processes, clients.

One server process serves the whole session (``DAGRT_TEST_REDIS_URL`` points
the suite at an existing one instead); each test that uses it starts from an
empty database. ``server_factory`` makes private servers for tests that stop,
kill or reconfigure theirs. ``pool`` is a second server with two ``dagrt
worker`` processes started exactly as docker-compose starts them; runtime
tests run on it and in-process alike (``any_client``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import Form, Signals

import dagrt
from dagrt.storage import InMemoryStorage, RedisServer, RedisStorage, Storage

# A shell runs a background job (`./test.sh &`) with SIGINT ignored, and an ignored
# signal stays ignored in every process spawned from it: the tests that Ctrl-C a
# `dagrt cluster` or a client process would wait in vain. Children of this process
# get the default disposition back (handlers, unlike SIG_IGN, do not survive exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("DAGRT_TEST_REDIS_URL")
    if url:
        yield url
        return
    with RedisServer(die_with_parent=True) as server:
        yield server.url


@pytest.fixture
async def redis_storage(redis_url: str) -> AsyncIterator[RedisStorage]:
    storage = RedisStorage(redis_url)
    storage.flushdb()
    yield storage
    await storage.aclose()  # this loop's connections, and the sync pool


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(die_with_parent=True, **options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.cleanup()


# --------------------------------------------------------------------------- storages


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Storage]:
    if request.param == "memory":
        yield InMemoryStorage()
        return
    storage = RedisStorage(redis_url)
    storage.flushdb()
    yield storage
    await storage.aclose()


@pytest.fixture(params=["sync", "async"])
async def store(request: pytest.FixtureRequest, backend: Storage) -> AsyncIterator[Form]:
    yield Form(backend, request.param)
    if request.param == "async":
        await backend.aclose()


@pytest.fixture
def signals(redis_url: str, request: pytest.FixtureRequest) -> Signals:
    """Cross-process gates and marks, private to this test."""
    return Signals(redis_url, f"test:{request.node.nodeid}:{os.urandom(4).hex()}")


# --------------------------------------------------------------------------- worker pools


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of worker processes: they import what the tests import."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p])
    env.update(extra)
    return env


@dataclass
class Pool:
    """A server and worker processes, started like the docker-compose services."""

    server: RedisServer
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def spawn(self, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start one ``dagrt worker`` and return once it says it is ready (the server's
        URL, its password, by environment: the documented way, off the command line)."""
        argv = [sys.executable, "-m", "dagrt", "worker", *flags]
        env = {**(env or worker_env()), "DAGRT_REDIS_URL": self.url}
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("dagrt-worker ready"):
            process.kill()
            process.stdout.close()
            raise RuntimeError(f"worker did not start: {line!r} (exit {process.wait()})")
        self.workers.append(process)
        return process

    def stop(self) -> None:
        self.stop_workers()
        self.server.cleanup()

    def stop_workers(self) -> None:
        """SIGTERM every worker, and wait for each to exit (SIGKILL after 15 s)."""
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for process in self.workers:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self.workers.clear()


FAST = ("--claim-timeout", "2", "--heartbeat", "0.5", "--graceful-timeout", "3")


REDIS_CONF = Path(__file__).parent.parent / "storage" / "redis.conf"


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """The docker-compose topology with processes: the server on storage/redis.conf
    with a password, and two workers started by the same command."""
    server = RedisServer(
        password="pool-secret",
        config_file=REDIS_CONF,
        directory=tmp_path_factory.mktemp("aof"),
        die_with_parent=True,
    )
    pool = Pool(server.start())
    try:
        pool.spawn(*FAST)
        pool.spawn(*FAST)
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def pool_factory(tmp_path: Path) -> Iterator[Callable[..., Pool]]:
    """Private pools, for tests that kill workers or the server."""
    pools: list[Pool] = []

    def make(n_workers: int = 2, *flags: str, env: dict[str, str] | None = None) -> Pool:
        made = Pool(RedisServer(password="private", die_with_parent=True).start())
        pools.append(made)
        for _ in range(n_workers):
            made.spawn(*FAST, *flags, env=env)
        return made

    yield make
    for made in pools:
        made.stop()


# --------------------------------------------------------------------------- clients


@pytest.fixture
async def client() -> AsyncIterator[dagrt.Client]:
    async with dagrt.Client(processes=False) as c:
        yield c


@pytest.fixture(params=["in-process", "cluster"])
async def any_client(request: pytest.FixtureRequest) -> AsyncIterator[dagrt.Client]:
    if request.param == "in-process":
        async with dagrt.Client(processes=False) as c:
            yield c
    else:
        url = request.getfixturevalue("pool").url
        async with dagrt.Client(url) as c:
            yield c
