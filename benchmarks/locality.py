"""Locality on and off, side by side: the cases of the locality notes (C1-C8).

Two ``dagrt worker`` processes (one thread each) on a private server, with locality
on (dagrt's defaults) and off (``LocalityOptions(enabled=False)``: every ready child
is dispatched, every output with a consumer is stored, no chain fused), on three data
planes: ``redis`` (no store: every value through the server), ``store`` (the two
workers share one host's object store: a consumer maps) and ``2hosts`` (two
simulated hosts, each with its store: a direct transfer between them). Per case
and setup: the median makespan, and the bytes each path moved as the event log
tells it (``network``: uploads, downloads and direct transfers; ``host``: maps and
values read from the worker's memory).

Cases (sizes for 2 cores):

* C1 fanout-big-cheap: a 64 MiB array, 8 children each summing a slice, one sink;
* C3 delayed-io-hit: A makes 64 MiB, B sleeps 1 s and makes 1 KiB, C(A, B) is cheap;
* C5 two-big-parents: A1 and A2 make 64 MiB each (A2 after 0.5 s), C(A1, A2);
* C6 chain-tiny: 1,024 chains of 16 ``inc`` (16,384 tasks);
* C7 chain-big: 16 chains of 8 elementwise steps on 16 MiB arrays;
* C8 tree: a pairwise tree reduction of 8,192 leaves (16,383 tasks).

    python benchmarks/locality.py [--repeat 5] [--only C1,C6] [--setups redis,store,2hosts]

Prints on/off ratios of the makespan (above 1: on is faster) and of network bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import dagrt
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json
from data_plane import Pool

MIB = 1 << 20
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
NETWORK = ("upload", "download", "direct")


@dagrt.task
def big(mib: int, seconds: float = 0.0) -> Any:
    time.sleep(seconds)
    return np.ones(mib * MIB // 8)


@dagrt.task
def small(seconds: float) -> Any:
    time.sleep(seconds)
    return np.ones(128)


@dagrt.task
def part(x: Any, i: int, k: int) -> float:
    m = len(x) // k
    return float(x[i * m : (i + 1) * m].sum())


@dagrt.task
def total(*xs: Any) -> float:
    return float(
        sum(float(np.sum(x[:: max(1, len(x) // 64)])) if hasattr(x, "sum") else x for x in xs)
    )


@dagrt.task
def inc(x: int) -> int:
    return x + 1


@dagrt.task
def step(x: Any) -> Any:
    return x * 1.0001 + 1.0


@dagrt.task
def add(a: int, b: int) -> int:
    return a + b


def c1() -> Any:
    x = big(64)
    return total(*[part(x, i, 8) for i in range(8)])


def c3() -> Any:
    return total(big(64, 0.3), small(1.0))


def c5() -> Any:
    return total(big(64), big(64, 0.5))


def c6() -> Any:
    outs = []
    for i in range(1024):
        x = inc(i)
        for _ in range(15):
            x = inc(x)
        outs.append(x)
    return outs


def c7() -> Any:
    outs = []
    for _i in range(16):
        x = big(16, 0.0)
        for _ in range(7):
            x = step(x)
        outs.append(total(x))
    return total(*outs)


def c8() -> Any:
    level = [inc(i) for i in range(8192)]
    while len(level) > 1:
        level = [add(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


CASES: dict[str, Callable[[], Any]] = {
    "C1": c1,
    "C3": c3,
    "C5": c5,
    "C6": c6,
    "C7": c7,
    "C8": c8,
}
LOCALITY = {"on": {}, "off": {"enabled": False}}


def setups(root: Path) -> dict[str, list[list[str]]]:
    return {
        "redis": [[], []],
        "store": [["--store", str(root / "one")]] * 2,
        "2hosts": [
            ["--store", str(root / "a"), "--host-id", "a"],
            ["--store", str(root / "b"), "--host-id", "b"],
        ],
    }


async def one_run(
    client: dagrt.Client, url: str, make: Callable[[], Any]
) -> tuple[float, dict[str, int]]:
    node = make()
    t0 = time.perf_counter()
    fut = client.submit(node)
    await fut
    elapsed = time.perf_counter() - t0
    events = await aread_run(url, fut.run_id, wait=30)
    return elapsed, dict(analyze(events).bytes_by_path)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--setups", default="redis,store,2hosts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cases = [c for c in args.only.split(",") if c]
    results: list[Result] = []
    rows: dict[tuple[str, str, str], tuple[float, int, int]] = {}
    with tempfile.TemporaryDirectory(dir=SHM) as tmp:
        for setup in args.setups.split(","):
            flags = setups(Path(tmp))[setup]
            pool = Pool(flags)
            try:
                for mode, switches in LOCALITY.items():
                    async with dagrt.Client(pool.url, locality=switches) as client:
                        for case in cases:
                            await one_run(client, pool.url, CASES[case])  # warm up
                            times, network, host = [], [], []
                            for _ in range(args.repeat):
                                elapsed, paths = await one_run(client, pool.url, CASES[case])
                                times.append(elapsed)
                                network.append(sum(v for k, v in paths.items() if k in NETWORK))
                                host.append(sum(v for k, v in paths.items() if k not in NETWORK))
                            rows[(case, setup, mode)] = (
                                statistics.median(times),
                                int(statistics.median(network)),
                                int(statistics.median(host)),
                            )
                            results.append(Result(case, f"{setup}-{mode}", times))
                            print(
                                f"{case} {setup:7s} {mode:3s} {statistics.median(times) * 1e3:9.1f} ms"
                                f"  network {statistics.median(network) / MIB:9.1f} MiB"
                                f"  host {statistics.median(host) / MIB:9.1f} MiB",
                                flush=True,
                            )
            finally:
                pool.stop()
    print("\non/off (makespan: off / on, above 1 means on is faster; network bytes: on / off)")
    for case in cases:
        for setup in args.setups.split(","):
            on, off = rows[(case, setup, "on")], rows[(case, setup, "off")]
            ratio_bytes = on[1] / off[1] if off[1] else float("nan")
            print(
                f"{case} {setup:7s} makespan {off[0] / on[0]:5.2f}x  network bytes {ratio_bytes:6.3f}"
            )
    if args.json:
        save_json(results, args.json)


if __name__ == "__main__":
    asyncio.run(main())
