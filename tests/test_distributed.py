"""The distributed runtime: worker processes, crashes, bad entries, cleanup.

Workers are real ``dagrt worker`` processes (see ``Pool`` in conftest); crash
tests SIGKILL them, some at exact points of the protocol through failpoints
(``DAGRT_FAILPOINTS``), and check that the run still gives the right result.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from conftest import FAST as FAST_FLAGS
from conftest import Pool, worker_env
from helpers import (
    Signals,
    add,
    big,
    collect,
    first,
    gate,
    grow,
    inc,
    interrupt_and_reap,
    note_call,
    second,
    shrink,
)

import dagrt
from dagrt import SignatureError, StorageConnectionError, TaskError, submission
from dagrt import keys as K
from dagrt.serialize import unpack
from dagrt.storage import RedisStorage
from dagrt.storage import commands as C
from dagrt.workflows import pairwise


@dagrt.task
def slow_inc(x: int, seconds: float = 0.01) -> int:
    time.sleep(seconds)
    return x + 1


def tree(n: int, seconds: float = 0.0) -> dagrt.Node:
    """n leaves summed pairwise: about 2n tasks."""
    return pairwise(add, [slow_inc(i, seconds) for i in range(n)])


def tree_value(n: int) -> int:
    return sum(i + 1 for i in range(n))


def children_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def run_keys_left(url: str, run_id: str) -> list[str]:
    storage = RedisStorage(url)
    try:
        return sorted(storage.scan_iter(f"dagrt:{{{run_id}}}*"))
    finally:
        storage.close()


# --------------------------------------------------------------------------- local cluster


async def test_client_starts_a_local_cluster_and_stops_everything() -> None:
    before = children_pids()
    async with dagrt.Client(n_workers=3) as client:
        cluster = client.cluster
        assert len(cluster.processes) == 3
        assert await client.compute(tree(20)) == tree_value(20)
        storage = RedisStorage(cluster.url)
        beats = {k.decode(): unpack(v) for k, v in storage.hgetall(K.workers()).items()}
        assert sorted(beats) == sorted(cluster.worker_ids)
        assert all(b["status"] in ("started", "alive") for b in beats.values())
        storage.close()
    assert children_pids() <= before  # no server, no worker left behind


async def test_the_default_client_uses_every_core() -> None:
    async with dagrt.Client() as client:
        cluster = client.cluster
        assert len(cluster.processes) == (os.cpu_count() or 1)
        assert await client.compute(add(inc(1), 2)) == 4


def test_ctrl_c_leaves_no_orphan_processes(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, os, signal, sys, time
        import dagrt

        @dagrt.task
        def nap(x):
            time.sleep(60)
            return x

        async def main():
            async with dagrt.Client(n_workers=2) as client:
                cluster = client.cluster
                pids = [p.pid for p in cluster.processes] + [cluster.server.process.pid]
                print(" ".join(map(str, pids)), flush=True)
                await client.compute(nap(1))

        asyncio.run(main())
    """)
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=worker_env()
    )
    assert process.stdout is not None
    pids = [int(p) for p in process.stdout.readline().split()]
    assert len(pids) == 3
    process.send_signal(signal.SIGINT)
    process.wait(30)
    _, alive = psutil.wait_procs(
        [psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=15
    )
    assert alive == []
    process.stdout.close()


def test_the_cluster_command_serves_until_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dagrt", "cluster", "--workers", "2"],
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "2 workers on redis://:***@127.0.0.1:" in line  # (no password on the terminal)
    process.stdout.readline()
    files = dict(w.split("=") for w in process.stdout.readline().split()[1:])
    url = Path(files["DAGRT_REDIS_URL_FILE"]).read_text()
    secret = Path(files["DAGRT_SECRET_FILE"]).read_text()
    assert oct(Path(files["DAGRT_SECRET_FILE"]).stat().st_mode & 0o777) == "0o600"
    assert dagrt.compute(add(1, 2), address=url, secret=secret) == 3
    interrupt_and_reap(process)
    assert not Path(files["DAGRT_SECRET_FILE"]).exists()


# --------------------------------------------------------------------------- crashes


async def test_sigkill_a_worker_in_the_middle_of_200_tasks(
    pool_factory: Any, signals: Signals
) -> None:
    pool: Pool = pool_factory(2)
    leaves = [slow_inc(i, 0.02) for i in range(99)]
    middle = gate(signals, "mid", 0, *leaves[:10])
    node = collect(*leaves, middle, *[add(x, 1) for x in leaves])
    assert len(dagrt.DAG(node)) == 200
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(node)
        await signals.started("mid")
        pool.workers[0].kill()  # SIGKILL, mid-run, with tasks in flight
        await signals.release("mid")
        with anyio.fail_after(60):
            result = await fut
    assert result == [i + 1 for i in range(99)] + [0] + [i + 2 for i in range(99)]
    assert run_keys_left(pool.url, fut.run_id) == [K.RunKeys(fut.run_id).end]


@pytest.mark.parametrize(
    "failpoint",
    [
        "before_run:first",  # dies while running a task
        "before_upload:first",  # dies after running, before its output is stored
        "after_upload:first",  # dies between storing the output and completing
        "before_run:second",  # dies while running the child it kept
    ],
)
async def test_a_worker_killed_at_each_step_loses_nothing(
    pool_factory: Any, tmp_path: Path, failpoint: str
) -> None:
    env = worker_env(DAGRT_FAILPOINTS=failpoint, DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    chains = [second(first(i)) for i in range(6)]
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(60):
            assert await client.compute(chains) == [i * 10 + 7 for i in range(6)]
    fired = list(tmp_path.glob("dagrt-failpoint-*"))
    assert len(fired) == 1  # the crash really happened
    assert sum(1 for w in pool.workers if w.poll() is not None) == 1


async def test_a_run_cancelled_after_its_worker_died_starts_nothing_and_leaves_no_key(
    pool_factory: Any, tmp_path: Path
) -> None:
    """A worker dies running a task; the run is cancelled before the other worker takes
    the task over. When it does, it runs nothing of the run and leaves no count of lost
    deliveries behind: every key of the run but its end marker is gone."""
    env = worker_env(DAGRT_FAILPOINTS="before_run:first", DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit([second(first(i)) for i in range(4)])  # both workers know it
        with anyio.fail_after(30):
            while not list(tmp_path.glob("dagrt-failpoint-*")):  # noqa: ASYNC110 (a file)
                await anyio.sleep(0.02)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
    storage = RedisStorage(pool.url)
    try:
        with anyio.fail_after(30):  # the survivor takes the dead worker's entry (2 s)
            while (await storage.axpending(K.tasks_stream(), K.TASKS_GROUP))["pending"]:  # noqa: ASYNC110
                await anyio.sleep(0.1)
    finally:
        await storage.aclose()
    assert run_keys_left(pool.url, fut.run_id) == [K.RunKeys(fut.run_id).end]
    assert sum(1 for w in pool.workers if w.poll() is not None) == 1


@dagrt.task
def third(x: int) -> int:
    return x * 2


async def test_outputs_kept_in_memory_are_recomputed_after_a_crash(
    pool_factory: Any, tmp_path: Path
) -> None:
    """first and second keep their outputs in memory (each has one child that runs
    there); the worker dies running third; the one that takes over recomputes both."""
    env = worker_env(DAGRT_FAILPOINTS="before_run:third", DAGRT_FAILPOINT_DIR=str(tmp_path))
    pool: Pool = pool_factory(2, env=env)
    chains = [third(second(first(i))) for i in range(4)]
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(60):
            assert await client.compute(chains) == [(i * 10 + 7) * 2 for i in range(4)]
    assert len(list(tmp_path.glob("dagrt-failpoint-*"))) == 1


async def test_locality_switches_change_what_moves(pool: Pool) -> None:
    from helpers import wait_for_events

    from dagrt.metrics import Transfer

    chains = [shrink(grow(big(i))) for i in range(6)]
    moved = {}
    for name, locality in (("on", {}), ("off", {"keep_children": False, "keep_outputs": False})):
        async with dagrt.Client(pool.url, locality=locality) as client:
            fut = client.submit(chains)
            assert await fut == [i + 1 for i in range(6)]
        storage = RedisStorage(pool.url)
        events = await wait_for_events(
            storage, fut.run_id, lambda es: sum(e.kind == "task-finished" for e in es) >= 18
        )
        await storage.aclose()
        moves = [e for e in events if isinstance(e, Transfer)]
        moved[name] = (
            sum(m.direction == "upload" for m in moves),
            sum(m.direction == "download" for m in moves),
            sum(m.direction == "local" for m in moves),
        )
    assert moved["on"] == (6, 0, 12)  # only the run's outputs are stored; edges stay local
    uploads, downloads, local = moved["off"]
    assert uploads == 18  # every output stored
    assert downloads + local == 12  # every edge read (from storage or this worker's cache)
    with pytest.raises(ValueError, match="bad locality options"):
        dagrt.Client(pool.url, locality={"fuse": True})


@dagrt.task
def matrix(rows: int) -> bytes:
    return bytes(rows * 1024)


@dagrt.task
def read_slowly(data: bytes, i: int) -> int:
    time.sleep(0.05)
    return len(data) + i


async def test_an_output_with_many_children_crosses_to_a_worker_once(pool: Pool) -> None:
    """Twelve tasks read one 1 MiB output on two workers: each worker downloads it at
    most once (it keeps what it downloaded for its other readers, and a reader that
    finds the download under way waits for it); every edge is read."""
    from helpers import wait_for_events

    from dagrt.metrics import Transfer

    data = matrix(1024)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit([read_slowly(data, i) for i in range(12)])
        assert await fut == [1024 * 1024 + i for i in range(12)]
    storage = RedisStorage(pool.url)
    events = await wait_for_events(
        storage, fut.run_id, lambda es: sum(e.kind == "task-finished" for e in es) >= 13
    )
    await storage.aclose()
    reads = [e for e in events if isinstance(e, Transfer) and e.direction != "upload"]
    assert sorted(e.consumer for e in reads) == list(range(1, 13))  # every edge, once
    downloads: dict[str, int] = {}
    for e in reads:
        if e.direction == "download":
            downloads[e.worker_id] = downloads.get(e.worker_id, 0) + 1
    assert all(n == 1 for n in downloads.values()), downloads
    assert len(downloads) <= 1  # the producer's worker read it from memory


# --------------------------------------------------------------------------- the server


async def test_a_server_killed_during_a_run_is_a_clear_error(
    pool_factory: Any, signals: Signals
) -> None:
    pool: Pool = pool_factory(1)
    async with dagrt.Client(pool.url) as client:
        fut = client.submit(gate(signals, "hold", 1))
        await signals.started("hold")
        pool.server.kill()
        with anyio.fail_after(30), pytest.raises(StorageConnectionError, match="cannot reach"):
            await fut
        await signals.release("hold")


async def test_an_unreachable_server_fails_at_start() -> None:
    from dagrt.storage.server import free_port

    with anyio.fail_after(30), pytest.raises(StorageConnectionError, match=r"127\.0\.0\.1"):
        async with dagrt.Client(f"redis://127.0.0.1:{free_port()}/0"):
            pass


@dagrt.task
def dies_once(log: str, x: int, key: str, die: bool) -> int:
    """Notes ``key`` in the file ``log``; with ``die``, kills its worker the first time."""
    note_call(log, key, die)
    return x + 1


async def test_a_worker_killed_in_the_middle_of_a_fused_chain(
    pool_factory: Any, tmp_path: Path
) -> None:
    """Tiny links of a chain run in one go (chain fusion), counted together at its end;
    the worker dies at the fifth link, so nothing of the chain was counted. Its entry
    is taken over: the chain runs again from its first link (the four links before
    the fifth ran twice: the proof they were fused) and the run ends right."""
    pool: Pool = pool_factory(2)
    log = str(tmp_path / "calls")
    async with dagrt.Client(pool.url) as client:
        warm = [dies_once(log, inc(i), "w", False) for i in range(32)]
        for _ in range(3):
            warm = [dies_once(log, w, "w", False) for w in warm]
        assert await client.compute(warm) == [i + 5 for i in range(32)]  # measured tiny
        x = inc(0)
        for k in range(8):
            x = dies_once(log, x, f"c{k}", k == 4)
        with anyio.fail_after(60):
            assert await client.compute(x) == 9
    lines = Path(log).read_text().split()
    calls = [lines.count(f"c{k}") for k in range(8)]
    assert calls == [2, 2, 2, 2, 2, 1, 1, 1]
    assert sum(1 for w in pool.workers if w.poll() is not None) == 1


@dagrt.task
def imported(module: str) -> bool:
    return module in sys.modules


async def test_a_worker_imports_numpy_before_its_first_task(pool_factory: Any) -> None:
    """Preloaded at start (``--preload``; default: numpy when installed), so two task
    threads of a fresh worker never import it at once and see it half-made (seen in
    the stress test: ``ImportError ... partially initialized module``)."""
    pool: Pool = pool_factory(0)
    pool.spawn(*FAST_FLAGS)
    async with dagrt.Client(pool.url) as client:
        assert await client.compute(imported("numpy")) is True
    pool.stop()
    pool = pool_factory(0)
    pool.spawn(*FAST_FLAGS, "--preload", "none")
    async with dagrt.Client(pool.url) as client:
        assert await client.compute(imported("numpy")) is False


# --------------------------------------------------------------------------- the watchdog


async def test_a_run_whose_entries_were_lost_fails_as_stalled(pool_factory: Any) -> None:
    """No worker yet; the run's one ready entry is removed from the stream by hand. The
    run can never finish: the client says so within the stall timeout (instead of
    waiting for ever), stops the run, and leaves only its end marker."""
    pool: Pool = pool_factory(0)
    storage = RedisStorage(pool.url)
    async with dagrt.Client(pool.url, stall_timeout=1) as client:
        fut = client.submit(inc(inc(1)))
        with anyio.fail_after(30):  # the submission dispatched the root
            [(_, [(entry_id, fields)])] = await storage.axread({K.tasks_stream(): "0-0"}, block=30)
        assert fields[b"r"] == fut.run_id.encode()
        await storage.apipeline([C.xdel(K.tasks_stream(), [entry_id])])
        started = time.monotonic()
        with pytest.raises(dagrt.RunStalledError, match="2 of its 2 tasks are left"):
            await fut
        assert time.monotonic() - started < 10  # (1 s, seen at the next wake-up)
    await storage.aclose()
    assert run_keys_left(pool.url, fut.run_id) == [K.RunKeys(fut.run_id).end]


async def test_a_worker_that_stops_reading_is_found_by_the_watchdog(
    pool_factory: Any, tmp_path: Path
) -> None:
    """A worker whose read loop is stuck (a failpoint: it beats, but never reads the
    stream again) with the run's entries waiting: no task completes, and the entries
    are there, undelivered. The watchdog sees the worker beat with nothing in flight
    and no entry read, and fails the run, naming it (a hang, loud)."""
    pool: Pool = pool_factory(
        1, env={"DAGRT_FAILPOINTS": "stop_reading:any", "DAGRT_FAILPOINT_DIR": str(tmp_path)}
    )
    async with dagrt.Client(pool.url, stall_timeout=1) as client:
        fut = client.submit(inc(inc(1)))
        started = time.monotonic()
        with pytest.raises(dagrt.RunStalledError, match="read loop is stuck") as caught:
            await fut
        assert time.monotonic() - started < 20  # (1 s, then two heartbeats of 0.5 s)
    [worker] = unpack_workers(pool.url)
    assert worker in str(caught.value)
    assert "2 of its 2 tasks are left" in str(caught.value)


async def test_entries_that_wait_for_busy_workers_are_not_a_stall(
    pool_factory: Any, signals: Signals
) -> None:
    """One worker, one slot, busy for 3 s with another run's task: this run's entry
    waits undelivered, nothing of it completes for longer than the stall timeout, and
    the worker reads nothing meanwhile. It is busy, not stuck: the run waits, and ends."""
    pool: Pool = pool_factory(1, "--concurrency", "1", "--threads", "1")
    async with dagrt.Client(pool.url, stall_timeout=0.5) as client:
        busy = client.submit(inc(gate(signals, "g", 1)))
        await signals.started("g")
        waiting = client.submit(inc(inc(1)))
        await anyio.sleep(3)
        await signals.release("g")
        assert await busy == 2
        with anyio.fail_after(30):
            assert await waiting == 3


def unpack_workers(url: str) -> list[str]:
    """The ids of the workers that ever beat on the server at ``url``."""
    storage = RedisStorage(url)
    try:
        return [w.decode() for w in storage.hgetall(K.workers())]
    finally:
        storage.close()


@dagrt.task(retries=1, retry_delay=2.5)
def fails_once(signals: Signals, x: int) -> int:
    """Fails on its first attempt (and says "started" then), then returns ``x``."""
    with signals._redis() as r:
        if r.incr(f"{signals.prefix}:fails_once") == 1:
            r.rpush(f"{signals.prefix}:started:fails_once", 1)
            raise RuntimeError("the first attempt fails")
    return x


async def test_long_tasks_and_waiting_retries_are_not_stalls(
    pool_factory: Any, signals: Signals
) -> None:
    """Nothing completes for longer than the stall timeout, yet the run has work: a task
    that runs (held by a gate for 2.5 s) and a retry waiting 2.5 s for its backoff.
    Their entries are pending: the watchdog looks, finds them, and lets the runs be."""
    pool: Pool = pool_factory(1, "--threads", "2")
    async with dagrt.Client(pool.url, stall_timeout=0.5) as client:
        held = client.submit(inc(gate(signals, "g", 1)))
        waiting = client.submit(inc(fails_once(signals, 2)))
        await signals.started("g")
        await anyio.sleep(2.5)  # (a task that runs for 2.5 s)
        await signals.release("g")
        assert await held == 2
        assert await waiting == 3


async def test_a_stray_entry_while_a_retry_waits_leaves_the_run_to_finish(
    pool_factory: Any, signals: Signals
) -> None:
    """A task fails once and waits 2.5 s for its retry; meanwhile a second entry for it
    is written by hand. Whichever attempt completes first counts; the other is a
    repeat; the waiting retry is never lost and the run ends with its value."""
    pool: Pool = pool_factory(1, "--threads", "2")
    storage = RedisStorage(pool.url)
    async with dagrt.Client(pool.url, stall_timeout=1) as client:
        fut = client.submit(inc(fails_once(signals, 2)))
        with anyio.fail_after(30):
            [(_, [(_, root)])] = await storage.axread({K.tasks_stream(): "0-0"}, count=1, block=30)
        await signals.started("fails_once")  # the first attempt failed: the retry waits
        await storage.axadd(K.tasks_stream(), {"r": fut.run_id, "t": root[b"t"].decode()})
        with anyio.fail_after(30):
            assert await fut == 3
    await storage.aclose()


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "30", True])
def test_a_stall_timeout_must_be_positive_seconds(bad: Any) -> None:
    with pytest.raises(ValueError, match="stall_timeout"):
        dagrt.Client("redis://localhost:1", stall_timeout=bad)


# --------------------------------------------------------------------------- bad entries


async def test_malformed_and_unknown_entries_are_dead_lettered(pool: Pool) -> None:
    storage = RedisStorage(pool.url)
    start = storage.xadd(K.dead_letter(), {"marker": 1})
    storage.xadd(K.tasks_stream(), {"garbage": "x"})
    storage.xadd(K.tasks_stream(), {"r": "no-such-run", "t": 0})
    storage.xadd(K.tasks_stream(), {"r": "bad id!", "t": "zero"})
    async with dagrt.Client(pool.url) as client:
        assert await client.compute(add(inc(1), 1)) == 3  # the workers kept serving
    entries: list = []
    last = start
    with anyio.fail_after(30):
        while len(entries) < 3:  # dead letters are written as the workers meet them
            for _, batch in await storage.axread({K.dead_letter(): last}, block=5):
                entries += batch
                last = batch[-1][0]
    reasons = sorted(f[b"reason"].decode() for _, f in entries)
    assert reasons[0].startswith("malformed entry")
    assert reasons[1].startswith("malformed entry")
    assert reasons[2] == "unknown run no-such-run"
    # each letter carries the entry's fields as they were written
    assert any(f.get(b"field:garbage") == b"x" for _, f in entries)
    assert any(f.get(b"field:r") == b"bad id!" for _, f in entries)
    assert storage.xpending(K.tasks_stream(), K.TASKS_GROUP)["pending"] == 0
    await storage.aclose()


async def test_records_signed_with_another_secret_are_refused(
    pool_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool: Pool = pool_factory(1, env=worker_env(DAGRT_SECRET="the-pool-secret-of-tests"))
    monkeypatch.setenv("DAGRT_SECRET", "the-pool-secret-of-tests")
    async with dagrt.Client(pool.url) as client:
        assert await client.compute(add(1, 2)) == 3
    # The worker fails the run, and seals its error with its secret: this client cannot
    # check that, so it takes nothing from it but its text, and says why.
    monkeypatch.setenv("DAGRT_SECRET", "a-wrong-secret-of-tests")
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(30), pytest.raises(SignatureError) as refused:
            await client.compute(add(1, 2))
    assert "another secret" in str(refused.value)
    assert "unverified, says: dagrt.SignatureError" in str(refused.value)
    assert "signature does not match" in str(refused.value)
    monkeypatch.delenv("DAGRT_SECRET")
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(30), pytest.raises(TaskError) as info:
            await client.compute(add(1, 2))
    assert info.value.exc_type == "dagrt.SignatureError"
    assert "not signed" in info.value.message


async def test_a_module_missing_on_the_workers_is_named(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "only_on_the_client.py").write_text(
        textwrap.dedent("""
        import dagrt

        @dagrt.task
        def local_only(x):
            return x
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_client  # type: ignore[import-not-found]

    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(30), pytest.raises(TaskError) as info:
            await client.compute(only_on_the_client.local_only(1))
    assert info.value.exc_type == "ModuleNotFoundError"
    assert "only_on_the_client" in info.value.message


# --------------------------------------------------------------------------- many clients, cleanup


async def test_two_clients_submitting_twenty_runs_each(pool: Pool) -> None:
    async def one_client(offset: int) -> list[int]:
        async with dagrt.Client(pool.url) as client:
            futs = [client.submit(add(inc(offset + i), offset)) for i in range(20)]
            return await client.gather(futs)

    a, b = await asyncio.gather(one_client(0), one_client(1000))
    assert a == [i + 1 for i in range(20)]
    assert b == [1000 + i + 1 + 1000 for i in range(20)]


async def test_runs_leave_no_keys_behind(pool: Pool, signals: Signals) -> None:
    async with dagrt.Client(pool.url) as client:
        ok = client.submit(tree(30))
        assert await ok == tree_value(30)
        failed = client.submit(add(inc(1), collect(signals, 1)))  # add(int, list) fails
        with pytest.raises(TaskError):
            await failed
        cancelled = client.submit(gate(signals, "never", 1))
        await signals.started("never")
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await signals.release("never")
    for name, fut in (("ok", ok), ("failed", failed), ("cancelled", cancelled)):
        assert (name, run_keys_left(pool.url, fut.run_id)) == (name, [K.RunKeys(fut.run_id).end])


async def test_abandoned_runs_expire(redis_url: str) -> None:
    storage = RedisStorage(redis_url)
    spec = await submission.submit(
        storage, dagrt.DAG(tree(5)), "abandoned-run", ttl=0.3, stream="test:tasks:nobody-reads"
    )
    assert run_keys_left(redis_url, "abandoned-run")
    await anyio.sleep(0.5)  # the TTL is the point: let it pass
    assert run_keys_left(redis_url, spec.run_id) == []
    await storage.aclose()


# --------------------------------------------------------------------------- the compose topology


def test_the_compose_file_runs_what_the_pool_fixture_runs() -> None:
    import yaml

    root = Path(__file__).parent.parent
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    redis, worker = compose["services"]["redis"], compose["services"]["worker"]
    assert "./storage/redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    # users from the ACL file `dagrt acl` writes (no password on any command line), which
    # must exist; the port on loopback only; a health check that fails on NOAUTH
    assert redis["command"] == [
        "redis-server",
        "/usr/local/etc/redis/redis.conf",
        "--aclfile",
        "/usr/local/etc/redis/users.acl",
        "--dir",
        "/data",
        "--maxmemory",  # (noeviction refuses writes only under a limit)
        "${DAGRT_REDIS_MAXMEMORY:-2gb}",
    ]
    [acl] = [v for v in redis["volumes"] if isinstance(v, dict)]
    assert acl["source"] == "./storage/users.acl"
    assert acl["bind"]["create_host_path"] is False
    assert redis["ports"] == ["${DAGRT_REDIS_BIND:-127.0.0.1}:${DAGRT_REDIS_PORT:-6379}:6379"]
    assert "-e" in redis["healthcheck"]["test"]
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${DAGRT_ACL_DASHBOARD_PASSWORD:?")
    assert worker["environment"]["DAGRT_REDIS_URL"].startswith(
        "redis://worker:${DAGRT_ACL_WORKER_PASSWORD:?"
    )
    assert worker["environment"]["DAGRT_SECRET"].startswith("${DAGRT_SECRET:?")  # (required)
    assert "container_name" not in worker  # `--scale worker=N` needs that
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    dockerfile = (root / "workers" / "Dockerfile").read_text()
    assert (
        'ENTRYPOINT ["dagrt", "worker", "--heartbeat-file", "/tmp/dagrt-heartbeat"]' in dockerfile
    )
    assert "RUN pip install -r /tmp/requirements.txt" in dockerfile
    assert (root / "workers" / "requirements.txt").exists()
    # the workers share one tmpfs object store, and their flags are dagrt worker's
    from dagrt.cli import _parser

    command = [
        os.path.expandvars(c).replace("${DAGRT_HOST_ID:-compose}", "compose")
        for c in worker["command"]
    ]
    args = _parser().parse_args(["worker", *command])
    assert args.store == "/dagrt-store"
    assert args.data_bind == "0.0.0.0:0"
    assert "dagrt-store:/dagrt-store" in worker["volumes"]
    assert compose["volumes"]["dagrt-store"]["driver_opts"]["type"] == "tmpfs"
    board = compose["services"]["dashboard"]
    assert board["entrypoint"][:2] == ["dagrt", "dashboard"]
    # one image, built once, on the clients' Python version
    assert board["image"] == worker["image"]
    assert "build" not in board
    assert worker["build"]["args"]["PYTHON_VERSION"] == "${DAGRT_PYTHON_VERSION:-3.12}"
    assert "ARG PYTHON_VERSION" in dockerfile
    assert "FROM python:${PYTHON_VERSION}-slim" in dockerfile
    ignored = (root / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
    pins = [
        line
        for line in (root / "workers" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert pins
    assert all("==" in line for line in pins)
    assert board["environment"]["DAGRT_REDIS_URL"].startswith(
        "redis://dashboard:${DAGRT_ACL_DASHBOARD_PASSWORD:?"
    )
    assert board["ports"][0].startswith("${DAGRT_DASHBOARD_BIND:-127.0.0.1}:")


def test_a_worker_touches_its_heartbeat_file(pool_factory: Any, tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    pool_factory(1, "--heartbeat-file", str(beat))
    assert beat.exists()


def test_a_worker_waits_for_a_server_loading_its_data(tmp_path: Path) -> None:
    """A server restarted answers LOADING until its data is back (3M keys here: about
    2 s): the worker running then retries as for a server it cannot reach, and serves
    once the server is up."""
    from dagrt.storage import RedisServer
    from dagrt.storage import commands as C

    options = {"enable-debug-command": "yes", "appendonly": "no", "save": ""}
    with RedisServer(directory=tmp_path, options=options) as server:
        storage = RedisStorage(server.url)
        storage.pipeline([C.Cmd(("DEBUG", "POPULATE", 3_000_000)), C.Cmd(("SAVE",))])
        storage.close()
        worker = subprocess.Popen(
            [sys.executable, "-m", "dagrt", "worker", "--redis", server.url, "--name", "w"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )
        try:
            assert worker.stdout is not None
            assert worker.stdout.readline().startswith("dagrt-worker ready")
            server.stop()
            server.spawn()  # loading dump.rdb: LOADING to every command meanwhile
            server.wait_ready()
            assert worker.poll() is None, "the worker gave up on the loading server"

            async def one_task() -> int:
                async with dagrt.Client(server.url) as client:
                    with anyio.fail_after(30):
                        return await client.compute(add(1, 2))  # type: ignore[no-any-return]

            assert anyio.run(one_task) == 3
        finally:
            worker.terminate()
            _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err


async def test_a_local_cluster_keeps_its_password_out_of_process_listings() -> None:
    async with dagrt.LocalCluster(1, password="not-for-ps") as cluster:
        [worker] = cluster.processes
        argv = " ".join(psutil.Process(worker.pid).cmdline())
        assert "not-for-ps" not in argv
        async with dagrt.Client(cluster.url, secret=cluster.secret) as client:
            assert await client.compute(add(1, 2)) == 3


async def test_a_function_by_value_from_another_python_is_refused_naming_both_versions(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code that travels by value (a function of ``__main__``, a notebook, a lambda) is
    bytecode of the client's Python: a worker on another version says so, before it
    unpickles it (3.12 bytecode on 3.11 failed with a TypeError that named nothing)."""
    monkeypatch.setattr(submission, "PYTHON", "3.99")  # (the client's, as a run says it)
    by_value = dagrt.task(lambda x: x + 1)
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(30), pytest.raises(TaskError) as failed:
            await client.compute(by_value(1))
        mine = f"{sys.version_info.major}.{sys.version_info.minor}"
        assert f"client on Python 3.99; this worker runs Python {mine}" in str(failed.value)
        with anyio.fail_after(30):  # by reference: any version
            assert await client.compute(inc(1)) == 2
