"""Moving large values: dagrt through Redis, through the host object store, and between
two simulated hosts; against Dask distributed (and Ray, when installed).

Part 1, moving one 64 MiB array between two workers (``make`` on one worker,
``consume`` on the other; ``keep_children`` off so that the child is dispatched).
Per system, the median over the rounds where the child really ran on the other
worker: the end-to-end time, and the time the move itself took as the event log
tells it (the producer's upload + the consumer's download, map or fetch).

* ``dagrt-redis``: two workers without a store (every value through the server);
* ``dagrt-store``: two workers of one host sharing its store (the consumer maps);
* ``dagrt-2hosts``: two workers with different host ids and stores (a direct transfer).

Part 2, the fan-out case: one 64 MiB float64 array, 8 children each summing a slice,
one sink, on two workers: dagrt without and with the store, Dask distributed
(``LocalCluster(2 processes x 1 thread)``), Ray (``num_cpus=2``) if it is installed.

Part 0 (``--sweep``), the threshold: one value of each size written and read
back, in one process, through Redis (``SET``, ``GET``, unpickle) and through a store
(write the frame, map it, unpickle), medians of 60.

    python benchmarks/data_plane.py [--repeat 5] [--mib 64] [--sweep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import dagrt
from dagrt.metrics.read import aread_run
from dagrt.storage import RedisServer

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json, table
from _pool import WorkerPool

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None


def make(n: int) -> Any:
    return np.ones(n, dtype=np.float64)


def consume(x: Any) -> float:
    return float(x[::4096].sum())  # touches one value per page: the move, not a sum


def part(x: Any, i: int, k: int) -> float:
    m = len(x) // k
    return float(x[i * m : (i + 1) * m].sum())


def total(*xs: float) -> float:
    return sum(xs)


async def move_once(client: dagrt.Client, url: str, n: int) -> tuple[float, float, str] | None:
    """One make -> consume run: (end to end, move seconds, how) if the consumer ran on
    the other worker, else None."""
    dmake, dconsume = dagrt.task(make), dagrt.task(consume)
    t0 = time.perf_counter()
    fut = client.submit(dconsume(dmake(n)))
    value = await fut
    elapsed = time.perf_counter() - t0
    assert value == float(len(range(0, n, 4096)))
    events = await aread_run(url, fut.run_id, wait=30)
    finished = {e.task: e for e in events if e.kind == "task-finished"}
    moves = [e for e in events if e.kind == "transfer" and e.consumer == 1]
    if not moves or moves[0].direction == "local" or len(finished) < 2:
        return None
    moved = finished[0].upload_time + finished[1].download_time
    if os.environ.get("DAGRT_BENCH_VERBOSE"):
        print(
            f"    upload {finished[0].upload_time * 1e3:.1f} ms, read {finished[1].download_time * 1e3:.1f} ms"
        )
    return elapsed, moved, moves[0].direction


async def part_one(args: argparse.Namespace, root: Path) -> list[Result]:
    n = args.mib * (1 << 20) // 8
    setups = {
        "dagrt-redis": [[], []],
        "dagrt-store": [["--store", str(root / "one")]] * 2,
        "dagrt-2hosts": [
            ["--store", str(root / "a"), "--host-id", "a"],
            ["--store", str(root / "b"), "--host-id", "b"],
        ],
    }
    results = []
    print(f"Part 1: moving one {args.mib} MiB array between two workers")
    for name, flags in setups.items():
        pool = WorkerPool(flags, password="bench")
        try:
            async with dagrt.Client(pool.url, locality={"keep_children": False}) as client:
                await move_once(client, pool.url, n)  # warm up
                ends, moved, hows = [], [], set()
                tries = 0
                while len(ends) < args.repeat and tries < 8 * args.repeat:
                    tries += 1
                    got = await move_once(client, pool.url, n)
                    if got is not None:
                        ends.append(got[0])
                        moved.append(got[1])
                        hows.add(got[2])
        finally:
            pool.stop()
        results.append(Result(f"move[{args.mib}MiB]", name, ends, {"how": sorted(hows)}))
        results.append(Result(f"move[{args.mib}MiB] move only", name, moved))
        print(
            f"  {name:<14} end to end {statistics.median(ends) * 1e3:7.1f} ms,"
            f" the move {statistics.median(moved) * 1e3:7.1f} ms ({', '.join(sorted(hows))},"
            f" {len(ends)} of {tries} rounds crossed workers)"
        )
    return results


async def part_two(args: argparse.Namespace, loop_results: list[Result]) -> None:
    n = args.mib * (1 << 20) // 8
    k = 8
    expected = float(n)
    dmake, dpart, dtotal = dagrt.task(make), dagrt.task(part), dagrt.task(total)

    def dagrt_dag() -> Any:
        a = dmake(n)
        return dtotal(*[dpart(a, i, k) for i in range(k)])

    redis_cluster = dagrt.LocalCluster(2, threads=1, store=False)
    store_cluster = dagrt.LocalCluster(2, threads=1)
    await redis_cluster.__aenter__()
    await store_cluster.__aenter__()
    redis_client = await dagrt.Client(redis_cluster.url, secret=redis_cluster.secret).__aenter__()
    store_client = await dagrt.Client(store_cluster.url, secret=store_cluster.secret).__aenter__()

    import dask
    from dask import delayed
    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster

    saved = dict(os.environ)
    dask_cluster = DaskCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    dask_client = DaskClient(dask_cluster)
    os.environ.clear()
    os.environ.update(saved)  # (Dask's nanny writes its thread variables here)

    def run_dask() -> float:
        a = delayed(make)(n)
        return dask.compute(delayed(total)(*[delayed(part)(a, i, k) for i in range(k)]))[0]

    ray = None
    try:
        import ray as ray_module

        ray_module.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray = ray_module
        rmake, rpart, rtotal = (ray.remote(f) for f in (make, part, total))

        def run_ray() -> float:
            a = rmake.remote(n)
            return ray.get(rtotal.remote(*[rpart.remote(a, i, k) for i in range(k)]))
    except ImportError:
        run_ray = None  # type: ignore[assignment]

    systems: dict[str, Any] = {
        "dask-distributed": lambda: asyncio.to_thread(run_dask),
        "dagrt-redis": lambda: redis_client.compute(dagrt_dag()),
        "dagrt-store": lambda: store_client.compute(dagrt_dag()),
    }
    if run_ray is not None:
        systems["ray"] = lambda: asyncio.to_thread(run_ray)
    workload = f"fan_out[{args.mib}MiB x{k}]"
    results = {name: Result(workload, name) for name in systems}
    for round_ in range(1 + args.repeat):
        for name, fn in systems.items():
            t0 = time.perf_counter()
            value = await fn()
            elapsed = time.perf_counter() - t0
            assert value == expected, (name, value)
            if os.environ.get("DAGRT_BENCH_VERBOSE"):
                print(f"    {name} {elapsed * 1e3:.1f} ms")
            if round_:
                results[name].seconds.append(elapsed)
    dask_client.close()
    dask_cluster.close()
    if ray is not None:
        ray.shutdown()
    await store_client.close()
    await redis_client.close()
    await store_cluster.close()  # (in the reverse order of entering)
    await redis_cluster.close()
    loop_results.extend(results.values())
    print(f"\nPart 2: the fan-out case, {args.repeat} rounds")
    print(table(list(results.values()), baseline="dagrt-store"))


def sweep() -> None:
    from dagrt.objects import HostStore
    from dagrt.serialize import dumps_frame, loads
    from dagrt.storage import RedisStorage

    server = RedisServer(die_with_parent=True).start()
    storage = RedisStorage(server.url)
    print("Part 0: one value through Redis and through the store (medians of 60)")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d, HostStore(d, 1 << 34) as store:
        for kb in [16, 64, 128, 256, 512, 1024, 4096]:
            a = np.ones(kb * 1024 // 8)
            redis, mapped = [], []
            for i in range(60):
                t0 = time.perf_counter()
                frame = dumps_frame(a)
                storage.set("k", bytes(frame))
                loads(storage.get("k"))
                t1 = time.perf_counter()
                frame = dumps_frame(a)
                store.put("r", i, frame)
                loads(store.map("r", i, len(frame)))
                redis.append(t1 - t0)
                mapped.append(time.perf_counter() - t1)
            store.drop_run("r")
            print(
                f"  {kb:>5} KiB  redis {statistics.median(redis) * 1e6:7.0f} us"
                f"   store {statistics.median(mapped) * 1e6:7.0f} us"
            )
    server.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--skip-move", action="store_true", help="only part 2")
    parser.add_argument("--sweep", action="store_true", help="part 0 first: the threshold")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/data_plane.json"))
    args = parser.parse_args()
    if args.sweep:
        sweep()
    base = SHM
    results: list[Result] = []
    if not args.skip_move:
        with tempfile.TemporaryDirectory(prefix="dagrt-bench-", dir=base) as tmp:
            results = await part_one(args, Path(tmp))
    for r in results:
        if r.workload.endswith("move only"):
            redis = next(
                x for x in results if x.workload == r.workload and x.system == "dagrt-redis"
            )
            if r.system != "dagrt-redis":
                print(
                    f"  the move, {r.system}: {redis.median / r.median:5.1f}x faster than dagrt-redis"
                )
    await part_two(args, results)
    save_json(results, args.json)


if __name__ == "__main__":
    asyncio.run(main())
