"""Tasks that add tasks, and cached runs: what they cost and save, beside Dask.

Part 1, a fan-out known only when it runs: a task splits its input into ``--width``
chunks and the chunks are summed, then totalled. dagrt: the task returns the graph
(``return total([chunk_sum(...) for ...])``: a sub-run on the two workers; the task
holds nothing meanwhile). Dask distributed: the documented way, a task that submits
the chunks from ``worker_client()`` (it secedes from its thread while it waits). Both
against the same static graph built on the client, on each system (the cost of not
knowing the width in advance). Nested: ``--width`` tasks each returning ``--width``.

Part 2, a cached run: a pipeline whose first task takes ``--slow`` seconds
(``@task(cache=True)``), computed cold (the entry deleted first) and warm (the task's
output found, what only it needed skipped). Dask has no cache across runs: its time
is the cold one.

    python benchmarks/expand_and_cache.py [--repeat 5] [--width 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import dagrt
from dagrt import keys as K
from dagrt.cachekeys import task_keys
from dagrt.storage import RedisStorage

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, measure, save_json, table


def chunk_sum(i: int) -> int:
    return sum(range(i * 1000, (i + 1) * 1000))


def total(parts: list[int]) -> int:
    return sum(parts)


def slow_load(seconds: float, n: int) -> list[int]:
    time.sleep(seconds)
    return list(range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--slow", type=float, default=0.5)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/expand.json"))
    args = parser.parse_args()

    import dask
    from dask import delayed
    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster
    from distributed import worker_client

    width = args.width
    expected = sum(range(width * 1000))
    d_chunk, d_total = dagrt.task(chunk_sum), dagrt.task(total)

    @dagrt.task
    def split(n: int) -> Any:
        return d_total([d_chunk(i) for i in range(n)])

    @dagrt.task
    def split_nested(n: int) -> Any:
        return d_total([split_part(j, n) for j in range(n)])

    @dagrt.task
    def split_part(j: int, n: int) -> Any:
        return d_total([d_chunk(j * n + i) for i in range(n)])

    def dask_split(n: int) -> int:
        with worker_client() as c:
            futures = [c.submit(chunk_sum, i, pure=False) for i in range(n)]
            return c.submit(total, futures, pure=False).result()

    def dask_split_nested(n: int) -> int:
        with worker_client() as c:
            parts = [c.submit(dask_split_part, j, n, pure=False) for j in range(n)]
            return c.submit(total, parts, pure=False).result()

    def dask_split_part(j: int, n: int) -> int:
        with worker_client() as c:
            futures = [c.submit(chunk_sum, j * n + i, pure=False) for i in range(n)]
            return c.submit(total, futures, pure=False).result()

    loop = asyncio.new_event_loop()
    client = dagrt.Client(n_workers=2, threads=1)
    loop.run_until_complete(client.__aenter__())
    cluster = DaskCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    dask_client = DaskClient(cluster)

    def run(node: Any) -> Any:
        return loop.run_until_complete(client.compute(node))

    results: list[Result] = []
    nested_expected = sum(range(width * width * 1000))

    def check(want: int) -> Any:
        def ok(name: str, value: Any) -> None:
            assert value == want, (name, value, want)

        return ok

    results += measure(
        f"fan-out[{width}]",
        {
            "dagrt-returned-graph": lambda: run(split(width)),
            "dagrt-static": lambda: run(d_total([d_chunk(i) for i in range(width)])),
            "dask-worker_client": lambda: dask_client.submit(
                dask_split, width, pure=False
            ).result(),
            "dask-static": lambda: dask.compute(
                delayed(total)([delayed(chunk_sum)(i) for i in range(width)])
            )[0],
        },
        repeat=args.repeat,
        check=check(expected),
    ).values()
    results += measure(
        f"nested-fan-out[{width}x{width}]",
        {
            "dagrt-returned-graph": lambda: run(split_nested(width)),
            "dask-worker_client": lambda: dask_client.submit(
                dask_split_nested, width, pure=False
            ).result(),
        },
        repeat=args.repeat,
        check=check(nested_expected),
    ).values()

    # Part 2: cold and warm runs of a pipeline whose first task is slow and cached.
    load = dagrt.task(slow_load, cache=True)
    n = 10_000

    def pipeline() -> Any:
        return d_total(load(args.slow, n))

    [key] = task_keys(dagrt.DAG(pipeline()), [0]).values()
    assert client.cluster is not None
    storage = RedisStorage(client.cluster.url)

    def cold() -> Any:
        storage.delete(K.cache_entry(key))
        return run(pipeline())

    results += measure(
        f"cached-pipeline[{args.slow}s]",
        {
            "dagrt-cold": cold,
            "dagrt-warm": lambda: run(pipeline()),
            "dask": lambda: dask.compute(delayed(total)(delayed(slow_load)(args.slow, n)))[0],
        },
        repeat=args.repeat,
        check=check(sum(range(n))),
    ).values()

    storage.close()
    dask_client.close()
    cluster.close()
    loop.run_until_complete(client.__aexit__(None, None, None))
    loop.close()
    print(table(results, baseline="dagrt-returned-graph"))
    print(table([r for r in results if r.workload.startswith("cached")], baseline="dagrt-warm"))
    save_json(results, args.json, width=width, slow=args.slow)


if __name__ == "__main__":
    main()
