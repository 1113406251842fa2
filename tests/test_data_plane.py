"""The data plane: large outputs stay in their host's object store; consumers on that
host map them, consumers on other hosts fetch them from a data endpoint, and what
cannot be had any more is computed again.

The store is tested on its own (files in a temporary directory, two "processes"
being two opens of it), then with real worker processes: one host, and three hosts
simulated on this machine (``--host-id`` and ``--store`` each their own), killed
producers, a store that fills up, a corrupted object, and no files left behind.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from conftest import FAST, Pool, worker_env
from helpers import wait_for_events

import dagrt
from dagrt.keyring import Keyring
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run, read_run
from dagrt.objects import (
    DataServer,
    HostStore,
    Location,
    ObjectCorrupt,
    ObjectMissing,
    TransferError,
    default_root,
    fetch,
    is_location,
    namespace_of,
)
from dagrt.serialize import dumps_frame, loads
from dagrt.storage import RedisStorage

RUN = "run-1"
MB = 1 << 20


# --------------------------------------------------------------------------- the store


def test_an_array_put_in_the_store_maps_back_without_a_copy(tmp_path: Path) -> None:
    with HostStore(tmp_path / "s", 64 * MB) as store:
        array = np.arange(MB // 8, dtype=np.float64)
        frame = dumps_frame(array)
        assert store.put(RUN, 3, frame)
        view = store.map(RUN, 3, len(frame))
        back = loads(view)
        np.testing.assert_array_equal(back, array)
        # the array's memory is the mapping: nothing was copied out of it
        assert np.shares_memory(back, np.frombuffer(view, dtype=np.uint8))
        assert store.used == len(frame)


def test_a_mapped_array_is_writable_and_writing_it_changes_only_the_reader(
    tmp_path: Path,
) -> None:
    with HostStore(tmp_path / "s", 64 * MB) as store:
        frame = dumps_frame(np.zeros(MB // 8))
        store.put(RUN, 0, frame)
        first = loads(store.map(RUN, 0, len(frame)))
        first += 1  # a task that writes into its input
        second = loads(store.map(RUN, 0, len(frame)))
        assert first[0] == 1
        assert second[0] == 0


def test_a_full_store_refuses_and_counts_nothing(tmp_path: Path) -> None:
    with HostStore(tmp_path / "s", 3 * MB) as store:
        frame = dumps_frame(np.zeros(MB // 8))  # just over 1 MB with its header
        assert store.put(RUN, 0, frame)
        assert store.put(RUN, 1, frame)
        assert not store.put(RUN, 2, frame)
        assert not store.exists(RUN, 2)
        assert store.used == 2 * len(frame)
        assert store.drop_run(RUN) == 2 * len(frame)
        assert store.used == 0
        assert store.put(RUN, 2, frame)  # room again


def test_the_budget_is_shared_by_the_processes_of_a_host(tmp_path: Path) -> None:
    """Two opens of one directory stand for two worker processes of one host."""
    with HostStore(tmp_path / "s", 2 * MB) as a, HostStore(tmp_path / "s", 2 * MB) as b:
        frame = dumps_frame(np.zeros(MB // 8))
        assert a.put(RUN, 0, frame)
        assert not b.put(RUN, 1, frame)  # a's object counts for b too
        assert b.map(RUN, 0, len(frame)) is not None  # and b maps it


def test_a_removed_object_stays_readable_by_who_mapped_it(tmp_path: Path) -> None:
    with HostStore(tmp_path / "s", 64 * MB) as store:
        frame = dumps_frame(np.arange(1000.0))
        store.put(RUN, 0, frame)
        held = loads(store.map(RUN, 0, len(frame)))
        store.drop_run(RUN)
        with pytest.raises(ObjectMissing):
            store.map(RUN, 0, len(frame))
        assert held[999] == 999.0


def test_the_next_object_is_written_into_the_pages_of_a_run_that_ended(
    tmp_path: Path,
) -> None:
    """A run's files are kept as spares when it ends (still counted in the budget);
    the next object of a similar size reuses one: same file, no fresh pages."""
    with HostStore(tmp_path / "s", 64 * MB) as store:
        store.put("a", 0, b"x" * (2 * MB))
        inode = os.stat(store.path("a", 0)).st_ino
        assert store.drop_run("a") == 0  # nothing freed: kept as a spare
        assert store.used == 2 * MB
        frame = dumps_frame(np.arange(MB // 8, dtype=np.float64))  # a bit over 1 MB
        assert store.put("b", 0, frame)
        assert os.stat(store.path("b", 0)).st_ino == inode
        assert store.used == len(frame)  # the spare shrank to the object
        np.testing.assert_array_equal(
            loads(store.map("b", 0, len(frame))), np.arange(MB // 8, dtype=np.float64)
        )


def test_a_spare_that_somebody_still_maps_is_never_written(tmp_path: Path) -> None:
    """A consumer still holds an array mapped from a run that ended (in this process
    or another): its file is not reused, and the consumer's array does not change."""
    with HostStore(tmp_path / "s", 64 * MB) as store:
        frame = dumps_frame(np.full(MB // 4, 7.0))
        store.put("a", 0, frame)
        held = loads(store.map("a", 0, len(frame)))
        inode = os.stat(store.path("a", 0)).st_ino
        store.drop_run("a")
        assert store.put("b", 0, dumps_frame(np.full(MB // 4, 9.0)))
        assert os.stat(store.path("b", 0)).st_ino != inode
        assert store.used == len(frame)  # the held spare was let go, not counted
        assert float(held.min()) == float(held.max()) == 7.0


def test_a_full_store_takes_room_from_its_spares_and_a_sweep_lets_idle_ones_go(
    tmp_path: Path,
) -> None:
    with HostStore(tmp_path / "s", 16 * MB) as store:
        for i in range(4):  # a quarter of the budget may be spares: all four stay
            store.put("a", i, b"x" * MB)
        store.drop_run("a")
        assert store.used == 4 * MB
        big, small = 12 * MB + MB // 2, 3 * MB // 4
        assert store.put("b", 0, b"y" * big)  # one spare grows: 15.5 MB in use
        assert store.used == big + 3 * MB
        assert store.put("b", 1, b"z" * small)  # too small to reuse one: a spare goes
        assert store.used == big + small + 2 * MB
        for spare in (tmp_path / "s" / ".spare").iterdir():
            os.utime(spare, (0, 0))  # unused for long
        store.sweep([])
        assert store.used == big + small
        assert list((tmp_path / "s" / ".spare").iterdir()) == []


def test_a_truncated_object_is_reported_as_corrupt(tmp_path: Path) -> None:
    with HostStore(tmp_path / "s", 64 * MB) as store:
        frame = dumps_frame(np.arange(1000.0))
        store.put(RUN, 0, frame)
        with open(store.path(RUN, 0), "r+b") as f:
            f.truncate(100)
        with pytest.raises(ObjectCorrupt, match=r"run-1/0 .* 100 bytes"):
            store.map(RUN, 0, len(frame))


def test_the_last_process_to_leave_empties_the_store(tmp_path: Path) -> None:
    root = tmp_path / "s"
    a = HostStore(root, MB).open()
    b = HostStore(root, MB).open()
    a.put(RUN, 0, b"x" * 1000)
    a.close()
    assert b.exists(RUN, 0)  # b still uses it
    b.close()
    assert list(root.iterdir()) == [root / ".lock"]


def test_what_a_crashed_host_left_is_emptied_by_the_first_to_arrive(tmp_path: Path) -> None:
    root = tmp_path / "s"
    (root / "old-run").mkdir(parents=True)
    (root / "old-run" / "7").write_bytes(b"left over")
    with HostStore(root, MB) as store:
        assert store.runs() == []
        assert store.used == 0


def test_run_ids_cannot_leave_the_store(tmp_path: Path) -> None:
    with HostStore(tmp_path / "s", MB) as store:
        for bad in ["..", ".", "../x", "a/b", ""]:
            with pytest.raises(ValueError, match="not a run id"):
                store.path(bad, 0)


def test_a_sweep_removes_runs_that_ended_and_recounts(tmp_path: Path) -> None:
    with HostStore(tmp_path / "s", 64 * MB) as store:
        store.put("gone", 0, b"x" * 5000)
        store.put("alive", 0, b"y" * 3000)
        assert store.sweep(["gone"]) == 5000
        assert store.runs() == ["alive"]
        assert store.used == 3000


def test_a_location_is_never_taken_for_a_value() -> None:
    where = Location("host-a", 123, "10.0.0.1:5000")
    assert Location.decode(where.encode()) == where
    assert is_location(where.encode())
    assert not is_location(dumps_frame(np.zeros(10)))
    assert not is_location(bytes(dumps_frame(np.zeros(MB))))


# --------------------------------------------------------------------------- transfers


async def test_an_object_fetched_from_another_host_is_kept_in_this_hosts_store(
    tmp_path: Path,
) -> None:
    with HostStore(tmp_path / "a", 64 * MB) as there, HostStore(tmp_path / "b", 64 * MB) as here:
        frame = dumps_frame(np.arange(MB / 4))
        there.put(RUN, 5, frame)
        server = DataServer(there)
        async with anyio.create_task_group() as tg:
            address = await tg.start(server.serve)
            view = await anyio.to_thread.run_sync(lambda: fetch(address, RUN, 5, len(frame), here))
            np.testing.assert_array_equal(loads(view), np.arange(MB / 4))
            assert here.exists(RUN, 5)  # for the other consumers of this host
            with pytest.raises(ObjectMissing):
                await anyio.to_thread.run_sync(lambda: fetch(address, RUN, 6, 10, here))
            with pytest.raises(ObjectCorrupt):
                await anyio.to_thread.run_sync(lambda: fetch(address, RUN, 5, 10, here))
            tg.cancel_scope.cancel()


async def test_an_endpoint_that_is_gone_is_a_transfer_error(tmp_path: Path) -> None:
    with HostStore(tmp_path / "b", MB) as here:
        server = DataServer(here)
        async with anyio.create_task_group() as tg:
            address = await tg.start(server.serve)
            tg.cancel_scope.cancel()
        with pytest.raises(TransferError, match="cannot reach"):
            await anyio.to_thread.run_sync(lambda: fetch(address, RUN, 0, 10, here))


async def test_a_transfer_cut_in_the_middle_leaves_nothing_behind(tmp_path: Path) -> None:
    """An endpoint that dies after sending part of an object (a worker SIGKILLed in
    the middle of a transfer): the fetch fails, and no partial file stays."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def half_a_transfer() -> None:
        conn, _ = listener.accept()
        conn.recv(100)
        conn.sendall((10 * MB).to_bytes(8, "little") + b"\0" + b"z" * MB)  # (no seal)
        conn.close()

    thread = threading.Thread(target=half_a_transfer)
    thread.start()
    with HostStore(tmp_path / "b", 64 * MB) as here:
        with pytest.raises(TransferError, match="closed after"):
            await anyio.to_thread.run_sync(
                lambda: fetch(f"127.0.0.1:{port}", RUN, 0, 10 * MB, here)
            )
        assert not here.exists(RUN, 0)
        assert here.used == 0
        assert list((tmp_path / "b" / RUN).iterdir()) == []
    thread.join()
    listener.close()


SECRET = Keyring.of("the-secret-of-these-hosts")


async def test_with_a_secret_what_leaves_a_host_is_sealed_and_checked(tmp_path: Path) -> None:
    """The endpoint seals what it sends; the fetcher checks it before the object is
    kept or unpickled: through a proxy that changes one byte on the way, from an
    endpoint with another secret or none, the fetch raises IntegrityError and keeps
    nothing."""
    import socket

    async def proxy(target: str, *, flip: bool) -> tuple[str, Any]:
        """A TCP proxy to ``target`` that flips the last byte it forwards."""
        host, port = target.rsplit(":", 1)
        listener = socket.create_server(("127.0.0.1", 0))

        def run() -> None:
            conn, _ = listener.accept()
            with conn, socket.create_connection((host, int(port))) as up:
                up.sendall(conn.recv(1000))
                data = bytearray()
                while chunk := up.recv(1 << 20):
                    data += chunk
                if flip:
                    data[-1] ^= 1
                conn.sendall(data)

        thread = threading.Thread(target=run)
        thread.start()
        return f"127.0.0.1:{listener.getsockname()[1]}", (thread, listener)

    value = np.arange(MB / 8)
    with HostStore(tmp_path / "a", 64 * MB) as there, HostStore(tmp_path / "b", 64 * MB) as here:
        frame = dumps_frame(value)
        there.put(RUN, 5, frame)
        sealed = DataServer(there, keyring=SECRET)
        unsealed = DataServer(there)
        async with anyio.create_task_group() as tg:
            sealed_at = await tg.start(sealed.serve)
            unsealed_at = await tg.start(unsealed.serve)

            def get(address: str, keyring: Any = SECRET) -> Any:
                return fetch(address, RUN, 5, len(frame), here, keyring=keyring)

            for address, keyring, error in [
                (unsealed_at, SECRET, "is not sealed"),
                (sealed_at, Keyring.of("another-secret-entirely"), "does not match"),
            ]:
                with pytest.raises(dagrt.IntegrityError, match=error):
                    await anyio.to_thread.run_sync(get, address, keyring)
                assert not here.exists(RUN, 5)
            address, (thread, listener) = await proxy(sealed_at, flip=True)
            with pytest.raises(dagrt.IntegrityError, match=f"object {RUN}/5 from"):
                await anyio.to_thread.run_sync(get, address)
            thread.join()
            listener.close()
            assert not here.exists(RUN, 5)
            assert here.used == 0
            # the same through a proxy that changes nothing: kept, and the value
            address, (thread, listener) = await proxy(sealed_at, flip=False)
            view = await anyio.to_thread.run_sync(get, address)
            thread.join()
            listener.close()
            np.testing.assert_array_equal(loads(view), value)
            assert here.exists(RUN, 5)
            tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- workers


@dagrt.task
def node(seed: int, size: int, *parents: Any) -> Any:
    """An array of ``size`` float64s whose value depends on every parent's."""
    value = (seed + sum(float(np.asarray(p).sum()) % 1000 for p in parents)) % 1000
    return np.full(size, value)


@dagrt.task
def sums(*arrays: Any) -> list[float]:
    return [float(np.asarray(a).sum()) for a in arrays]


def random_dag(seed: int, n: int = 40) -> Any:
    """Random parents (0-3 earlier tasks), sizes on both sides of the threshold (4 kB)."""
    rng = random.Random(seed)
    nodes: list[Any] = []
    for i in range(n):
        parents = rng.sample(nodes, min(len(nodes), rng.randint(0, 3)))
        size = rng.choice([1, 100, 600, 5_000, 50_000, 300_000])  # 8 B to 2.4 MB
        nodes.append(node(i, size, *parents))
    return sums(*nodes[-8:])


def hosts_pool(pool_factory: Any, tmp_path: Path, hosts: list[str], **env: str) -> Pool:
    """Workers of simulated hosts: one per name in ``hosts`` (a name twice: two workers
    of that host), each host with a store of its own."""
    pool: Pool = pool_factory(0)
    for host in hosts:
        pool.spawn(
            *FAST,
            "--host-id",
            host,
            "--store",
            str(tmp_path / "stores" / host),
            "--store-min-bytes",
            "4096",
            env=worker_env(**env),
        )
    return pool


def transfer_paths(url: str, run_id: str) -> Counter[str]:
    events = read_run(url, run_id, wait=30)  # the whole log
    return Counter(e.direction for e in events if e.kind == "transfer")


def store_files(path: Path) -> list[Path]:
    """The objects under ``path`` (``tmp_path``: every host's; a host's store), not
    the spare files kept for their pages (``.spare``) nor the store's own."""
    root = path / "stores" if (path / "stores").is_dir() else path
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part[0] == "." for part in p.relative_to(root).parts)
    ]


async def test_a_signed_pool_of_two_hosts_moves_sealed_objects_between_them(
    pool_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a secret, outputs cross from one host's store to the other's (direct
    transfers, checked) and the results are the in-process runtime's."""
    secret = "the-secret-of-these-hosts"
    pool = hosts_pool(pool_factory, tmp_path, ["h1", "h2"], DAGRT_SECRET=secret)
    dags = [random_dag(seed) for seed in (3, 4)]
    async with dagrt.Client(processes=False) as local:
        expected = [await local.compute(d) for d in dags]
    async with dagrt.Client(pool.url, secret=secret) as client:
        futures = [client.submit(d) for d in dags]
        with anyio.fail_after(90):
            assert [await f for f in futures] == expected
        paths: Counter[str] = Counter()
        for f in futures:
            paths += transfer_paths(pool.url, f.run_id)
    assert paths["direct"] > 0


@pytest.mark.parametrize("hosts", [["h1", "h1"], ["h1", "h2", "h3"]], ids=["one", "three"])
async def test_random_dags_give_what_the_in_process_runtime_gives(
    pool_factory: Any, tmp_path: Path, hosts: list[str]
) -> None:
    pool = hosts_pool(pool_factory, tmp_path, hosts)
    dags = [random_dag(seed) for seed in range(3)]
    async with dagrt.Client(processes=False) as local:
        expected = [await local.compute(d) for d in dags]
    async with dagrt.Client(pool.url) as client:
        futures = [client.submit(d) for d in dags]
        with anyio.fail_after(90):
            got = [await f for f in futures]
        assert got == expected
        paths: Counter[str] = Counter()
        for f in futures:
            events = await aread_run(pool.url, f.run_id, wait=30)  # the whole log
            paths += Counter(e.direction for e in events if e.kind == "transfer")
            # the report counts bytes by the path they took
            by_path = analyze(events).bytes_by_path
            moved = Counter(
                {
                    d: sum(e.bytes for e in events if e.kind == "transfer" and e.direction == d)
                    for d in by_path
                }
            )
            assert by_path == dict(moved)
        assert paths["map"] + paths["direct"] > 0  # values went through the stores
        assert paths["store"] > 0  # (logged as written to a store, not as uploaded)
        if len(set(hosts)) == 1:
            assert paths["direct"] == 0
    # every run ended: the workers removed their objects
    with anyio.fail_after(10):
        while store_files(tmp_path):  # noqa: ASYNC110 (files: nothing to wait on)
            await anyio.sleep(0.05)


@dagrt.task
def make(n: int) -> Any:
    return np.arange(n, dtype=np.float64)


@dagrt.task
def part(x: Any, i: int, k: int) -> float:
    m = len(x) // k
    return float(x[i * m : (i + 1) * m].sum())


@dagrt.task
def total(*xs: float) -> float:
    return sum(xs)


#: ``make`` whose output is always stored (its children are its alone, so fan-out
#: clustering would otherwise keep it in its worker's memory only)
make_stored = make.options(locality={"keep_outputs": False})


def fan_out(n: int = 1 << 20, k: int = 8, *, stored: bool = False) -> Any:
    """One 8 MB array, ``k`` children each summing a slice of it, one sink."""
    array = (make_stored if stored else make)(n)
    return total(*[part(array, i, k) for i in range(k)])


EXPECTED = float(np.arange(1 << 20, dtype=np.float64).sum())


async def fan_out_with_a_failpoint(
    pool_factory: Any, tmp_path: Path, hosts: list[str], failpoint: str, upload_all: bool
) -> tuple[Pool, list[Any]]:
    """Run :func:`fan_out` on workers of ``hosts`` with ``failpoint`` armed; it gives
    the right sum, the failpoint fired and killed one worker. Returns the pool and
    the run's log up to the sink's end (the killed worker's attempt never ends)."""
    pool = hosts_pool(
        pool_factory,
        tmp_path,
        hosts,
        DAGRT_FAILPOINTS=failpoint,
        DAGRT_FAILPOINT_DIR=str(tmp_path),
    )
    # (no fan-out clustering: the children must read the array, some from the other host)
    locality = {"upload_all": upload_all, "cluster_fanout": False}
    async with dagrt.Client(pool.url, locality=locality) as client:
        fut = client.submit(fan_out())
        with anyio.fail_after(60):
            assert await fut == EXPECTED
    assert len(list(tmp_path.glob("dagrt-failpoint-*"))) == 1
    assert sum(1 for w in pool.workers if w.poll() is not None) == 1
    storage = RedisStorage(pool.url)
    try:
        events = await wait_for_events(
            storage,
            fut.run_id,
            lambda es: any(e.kind == "task-finished" and e.task == 9 for e in es),
        )
    finally:
        await storage.aclose()
    return pool, events


@pytest.mark.parametrize(
    ("hosts", "upload_all", "how", "makes"),
    [
        (["h1", "h1"], False, "map", 0),  # its host's store still has it
        (["h1", "h2"], False, "recompute", 1),  # nobody can serve it: made again
        (["h1", "h2"], True, "download", 0),  # the server has a copy
    ],
    ids=["same-host", "other-host", "other-host-upload-all"],
)
async def test_a_producer_killed_after_its_output_is_recorded(
    pool_factory: Any,
    tmp_path: Path,
    hosts: list[str],
    upload_all: bool,
    how: str,
    makes: int,
) -> None:
    """The worker that made the 8 MB array dies right after completing it. On its
    host the object outlives it and is mapped; another host cannot reach it any more
    and computes it again, unless the run uploads every output to the server too."""
    _, events = await fan_out_with_a_failpoint(
        pool_factory, tmp_path, hosts, "after_complete:make", upload_all
    )
    arrived = Counter(e.direction for e in events if e.kind == "transfer" and e.producer == 0)
    assert arrived[how] >= 1, arrived
    # made again after the crash (the killed worker logged nothing of its own run)
    assert sum(1 for e in events if e.kind == "task-finished" and e.task == 0) == makes


@pytest.mark.parametrize(
    ("upload_all", "how"), [(False, "recompute"), (True, "download")], ids=["alone", "upload-all"]
)
async def test_a_worker_killed_in_the_middle_of_a_direct_transfer(
    pool_factory: Any, tmp_path: Path, upload_all: bool, how: str
) -> None:
    """The worker serving the 8 MB array to the other host is SIGKILLed after sending
    half of it: the fetch fails, the half-received object is not kept, and the
    consumer takes the value from the server's copy or computes it again."""
    pool, events = await fan_out_with_a_failpoint(
        pool_factory, tmp_path, ["h1", "h2"], "mid_send:0", upload_all
    )
    arrived = Counter(e.direction for e in events if e.kind == "transfer" and e.producer == 0)
    assert arrived[how] >= 1, arrived
    assert arrived["direct"] == 0  # the only direct transfer was cut
    killed = "h1" if pool.workers[0].poll() is not None else "h2"
    survivor = {"h1": "h2", "h2": "h1"}[killed]
    with anyio.fail_after(10):  # the survivor removed the run's objects, the half one too
        while store_files(tmp_path / "stores" / survivor):  # noqa: ASYNC110 (files)
            await anyio.sleep(0.05)
    assert store_files(tmp_path / "stores" / killed)  # nobody of its host is left
    pool.spawn(*FAST, "--host-id", killed, "--store", str(tmp_path / "stores" / killed))
    with anyio.fail_after(30):  # the first to come back empties it
        while store_files(tmp_path / "stores" / killed):  # noqa: ASYNC110 (files)
            await anyio.sleep(0.05)


async def test_a_cancelled_run_leaves_no_files(pool_factory: Any, tmp_path: Path) -> None:
    pool = hosts_pool(pool_factory, tmp_path, ["h1", "h2"])
    async with dagrt.Client(pool.url) as client:
        array = make_stored(1 << 20)
        fut = client.submit(total(part(array, 0, 1), nap(array, 60)))
        with anyio.fail_after(30):
            while not store_files(tmp_path):  # noqa: ASYNC110 (the array is stored)
                await anyio.sleep(0.02)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
    with anyio.fail_after(10):
        while store_files(tmp_path):  # noqa: ASYNC110 (files: nothing to wait on)
            await anyio.sleep(0.05)


async def test_a_full_store_sends_outputs_to_the_server(pool_factory: Any, tmp_path: Path) -> None:
    pool: Pool = pool_factory(0)
    for _ in range(2):
        pool.spawn(*FAST, "--store", str(tmp_path / "s"), "--store-bytes", str(MB))
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(fan_out())  # 8 MB: more than the whole store
        with anyio.fail_after(60):
            assert await fut == EXPECTED
    paths = transfer_paths(pool.url, fut.run_id)
    assert paths["map"] == paths["store"] == 0
    assert paths["upload"] > 0


async def test_a_corrupted_object_is_named_and_computed_again(
    pool_factory: Any, tmp_path: Path
) -> None:
    """The producer's object is cut short under the consumers (a bad disk, a bug):
    each consumer that meets it logs which task's output it was and computes it again."""
    pool = hosts_pool(
        pool_factory,
        tmp_path,
        ["h1"],
        DAGRT_FAILPOINTS="after_complete:make",
        DAGRT_FAILPOINT_DIR=str(tmp_path),
    )

    async with dagrt.Client(pool.url) as client:
        fut = client.submit(fan_out(stored=True))
        with anyio.fail_after(30):
            while not (tmp_path / "dagrt-failpoint-after_complete-make").exists():  # noqa: ASYNC110
                await anyio.sleep(0.02)
        for path in store_files(tmp_path):
            os.truncate(path, 1000)
        pool.spawn(
            *FAST,
            "--host-id",
            "h1",
            "--store",
            str(tmp_path / "stores" / "h1"),
            "--store-min-bytes",
            "4096",
        )
        with anyio.fail_after(60):
            assert await fut == EXPECTED
    assert transfer_paths(pool.url, fut.run_id)["recompute"] >= 1


def on_a_mapping(array: Any) -> bool:
    """Is ``array``'s memory a mapping (of a store file), not the process's heap?"""
    obj = array
    while obj is not None:
        if isinstance(obj, mmap.mmap):
            return True
        obj = obj.obj if isinstance(obj, memoryview) else getattr(obj, "base", None)
    return False


async def test_a_client_on_the_host_maps_the_runs_outputs_from_its_store() -> None:
    """The workers of a local cluster leave large outputs of the run in the host's
    store and the client maps them: they never cross the server."""
    async with (
        dagrt.LocalCluster(2) as cluster,
        dagrt.Client(cluster.url, secret=cluster.secret) as client,
    ):
        root = default_root(namespace_of(cluster.url))
        out, small = await client.compute([make(1 << 20), make(10)])
        np.testing.assert_array_equal(out, np.arange(1 << 20, dtype=np.float64))
        assert on_a_mapping(out)
        assert not on_a_mapping(small)
        out[0] = 5.0  # writable, copy-on-write
        with anyio.fail_after(10):  # the run ended: its objects are gone from the store
            while store_files(root):  # noqa: ASYNC110 (files: nothing to wait on)
                await anyio.sleep(0.05)
        assert out[1] == 1.0  # and the client's array is whole


async def test_outputs_of_workers_of_another_store_come_through_the_server(
    pool_factory: Any, tmp_path: Path
) -> None:
    pool = hosts_pool(pool_factory, tmp_path, ["h1"])
    async with dagrt.Client(pool.url) as client:
        out = await client.compute(make(1 << 20))
    np.testing.assert_array_equal(out, np.arange(1 << 20, dtype=np.float64))
    assert not on_a_mapping(out)


@dagrt.task
def nap(x: Any, seconds: float) -> float:
    time.sleep(seconds)
    return 0.0


async def test_a_killed_cluster_leaves_no_files_once_it_restarts(tmp_path: Path) -> None:
    store = tmp_path / "s"

    def files() -> list[Path]:
        return [p for p in store.rglob("*") if p.is_file() and p.name[0] != "."]

    options = {"store": str(store), "store-min-bytes": "4096"}
    cluster = dagrt.LocalCluster(1, worker_options=options, restart=False)  # a dead pool
    async with cluster, dagrt.Client(cluster.url, secret=cluster.secret) as client:
        array = make_stored(1 << 20)
        client.submit(total(part(array, 0, 1), nap(array, 60)))
        with anyio.fail_after(30):
            while not files():  # noqa: ASYNC110 (the array is stored, a task sleeps)
                await anyio.sleep(0.02)
        for process in cluster.processes:  # kill -9 the whole pool
            process.kill()
    assert files()  # nobody was left to remove it
    async with dagrt.LocalCluster(1, worker_options=options):
        assert files() == []
    assert files() == []
