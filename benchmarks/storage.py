"""RedisStorage against raw redis-py on the same server: what does the wrapper cost?

For 100 B, 100 kB, 8 MB and 128 MB values: one-at-a-time round trips (set then get)
and pipelined batches (mset/mget), sync and async, each interleaved with raw
redis-py (hiredis parser, same pool settings) doing the same work. Also the
cost of serializing an 8 MB numpy array (copies made, time).

    python benchmarks/storage.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis
import redis.asyncio as aredis

from dagrt.serialize import dumps, loads
from dagrt.storage import RedisServer, RedisStorage

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json

SIZES = {"100B": 100, "100kB": 100_000, "8MB": 8 * 1024 * 1024, "128MB": 128 * 1024 * 1024}
OPS = {"100B": 2000, "100kB": 400, "8MB": 12, "128MB": 2}


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/storage.json"))
    args = parser.parse_args()
    results: list[Result] = []
    with RedisServer() as server:
        store = RedisStorage(server.url)
        raw = redis.Redis.from_url(server.url)
        loop = asyncio.new_event_loop()
        araw = aredis.Redis.from_url(server.url)
        print(f"server: {server.executable}  hiredis: {redis.utils.HIREDIS_AVAILABLE}")
        print(f"{'case':<28}{'raw redis-py':>14}{'RedisStorage':>14}{'overhead':>10}")
        for label, size in SIZES.items():
            value = b"x" * size
            n = OPS[label]
            keys = [f"k{i}" for i in range(n)]
            mapping = dict.fromkeys(keys, value)

            def rt_raw() -> None:
                for k in keys:
                    raw.set(k, value)
                    raw.get(k)

            def rt_dagrt() -> None:
                for k in keys:
                    store.set(k, value)
                    store.get(k)

            def pipe_raw() -> None:
                p = raw.pipeline(transaction=False)
                for k in keys:
                    p.set(k, value)
                p.execute()
                raw.mget(keys)

            def pipe_dagrt() -> None:
                store.mset(mapping)
                store.mget(keys)

            async def art_raw() -> None:
                for k in keys:
                    await araw.set(k, value)
                    await araw.get(k)

            async def art_dagrt() -> None:
                for k in keys:
                    await store.aset(k, value)
                    await store.aget(k)

            async def apipe_raw() -> None:
                p = araw.pipeline(transaction=False)
                for k in keys:
                    p.set(k, value)
                await p.execute()
                await araw.mget(keys)

            async def apipe_dagrt() -> None:
                await store.amset(mapping)
                await store.amget(keys)

            cases = {
                "sync round trip": (rt_raw, rt_dagrt),
                "sync pipelined": (pipe_raw, pipe_dagrt),
                "async round trip": (
                    lambda: loop.run_until_complete(art_raw()),
                    lambda: loop.run_until_complete(art_dagrt()),
                ),
                "async pipelined": (
                    lambda: loop.run_until_complete(apipe_raw()),
                    lambda: loop.run_until_complete(apipe_dagrt()),
                ),
            }
            for case, (fa, fb) in cases.items():
                ta, tb = [], []
                fa(), fb()  # warm up
                for _ in range(args.repeat):
                    ta.append(timed(fa))
                    tb.append(timed(fb))
                ma, mb = statistics.median(ta), statistics.median(tb)
                name = f"{case} {label}"
                print(
                    f"{name:<28}{ma * 1e3:>11.1f} ms{mb * 1e3:>11.1f} ms{(mb / ma - 1) * 100:>+9.1f}%"
                )
                results.append(Result(name, "redis-py", ta, {"ops": n, "bytes": size}))
                results.append(Result(name, "RedisStorage", tb, {"ops": n, "bytes": size}))
            raw.flushdb()
        loop.run_until_complete(araw.aclose())
        loop.run_until_complete(store.aclose())
        loop.close()
        raw.close()

    array = np.random.default_rng(0).random(1024 * 1024)  # 8 MB of float64

    def allocated(fn: Callable[[], Any]) -> tuple[Any, int]:
        """What ``fn`` returns, and the bytes it allocated at its peak."""
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return out, peak

    frame, peak_dumps = allocated(lambda: dumps(array))
    view, peak_ro = allocated(lambda: loads(frame, writeable=False))
    copy, peak_rw = allocated(lambda: loads(frame))
    mb = array.nbytes / 2**20
    t_dumps = statistics.median(timed(lambda: dumps(array)) for _ in range(args.repeat))
    t_loads = statistics.median(timed(lambda: loads(frame)) for _ in range(args.repeat))
    print(
        f"\n8 MB numpy array: dumps {t_dumps * 1e3:.2f} ms allocating {peak_dumps / 2**20 / mb:.2f}x "
        f"the array (the frame: one copy); loads read-only allocates {peak_ro / 2**20 / mb:.2f}x "
        f"(zero copy), writable {peak_rw / 2**20 / mb:.2f}x ({t_loads * 1e3:.2f} ms)"
    )
    assert np.array_equal(view, array) and np.array_equal(copy, array)
    save_json(results, args.json)


if __name__ == "__main__":
    main()
