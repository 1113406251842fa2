"""Shared fixtures: a real Redis-compatible server, storages, clients.

One server process serves the whole session (``DAGRT_TEST_REDIS_URL`` points
the suite at an existing one instead); each test that uses it starts from an
empty database. ``server_factory`` makes private servers for tests that stop,
kill or reconfigure theirs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from helpers import Form

import dagrt
from dagrt.storage import InMemoryStorage, RedisServer, RedisStorage, Storage

# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("DAGRT_TEST_REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_storage(redis_url: str) -> Iterator[RedisStorage]:
    storage = RedisStorage(redis_url)
    storage.flushdb()
    yield storage
    storage.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(**options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.cleanup()


# --------------------------------------------------------------------------- storages


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Storage]:
    if request.param == "memory":
        yield InMemoryStorage()
    else:
        yield request.getfixturevalue("redis_storage")


@pytest.fixture(params=["sync", "async"])
async def store(request: pytest.FixtureRequest, backend: Storage) -> AsyncIterator[Form]:
    yield Form(backend, request.param)
    if request.param == "async":
        await backend.aclose()


# --------------------------------------------------------------------------- clients


@pytest.fixture
async def client() -> AsyncIterator[dagrt.Client]:
    async with dagrt.Client(processes=False) as c:
        yield c


@pytest.fixture(params=["in-process"])
async def any_client(request: pytest.FixtureRequest) -> AsyncIterator[dagrt.Client]:
    async with dagrt.Client(processes=False) as c:
        yield c
