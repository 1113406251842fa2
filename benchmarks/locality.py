"""Locality on and off, side by side: the cases of the locality notes (C1-C11).

Two ``dagrt worker`` processes (one thread each) on a private server, with locality
on (dagrt's defaults), off (``LocalityOptions(enabled=False)``: every ready child is
dispatched, every output with a consumer is stored, no chain fused) and, with
``--modes``, ``nocluster`` (on, but no fan-out clustering and no delayed I/O: what
dagrt did before them) and ``noinline`` (on, but no small input inline in entries), on
three data planes: ``redis`` (no store: every value
through the server), ``store`` (the two workers share one host's object store: a
consumer maps) and ``2hosts`` (two simulated hosts, each with its store: a direct
transfer between them). Per case and setup: the median makespan, and the bytes each
path moved as the event log tells it (``network``: uploads, downloads and direct
transfers; ``host``: maps and values read from the worker's memory), and, as a check
of the log, what the server itself received and sent meanwhile (``INFO stats``).

Cases (sizes for 2 cores):

* C1 fanout-big-cheap: a 64 MiB array, 8 children each summing a slice, one sink;
* C2 fanout-big-heavy: a 64 MiB array, 2 children of about 1 s of CPU each;
* C3 delayed-io-hit: A makes 64 MiB, B sleeps 1 s and makes 1 KiB, C(A, B) is cheap;
* C4 delayed-io-timeout: as C3, but B sleeps 6 s (longer than the 5 s wait);
* C5 two-big-parents: A1 and A2 make 64 MiB each (A2 after 0.5 s), C(A1, A2);
* C6 chain-tiny: 1,024 chains of 16 ``inc`` (16,384 tasks);
* C7 chain-big: 16 chains of 8 elementwise steps on 16 MiB arrays;
* C8 tree: a pairwise tree reduction of 8,192 leaves (16,383 tasks);
* C9, C10, C11: the GEMM, SVD1 (tall-skinny) and SVD2 (square) workflows at their
  benchmark sizes (``dagrt.workflows``);
* C12 stencil-tiny: 9 levels of 2,048 tiny tasks, each reading two neighbours of the
  level above (18,433 tasks): children dispatched with a small input inline.

    python benchmarks/locality.py [--repeat 5] [--only C1,C6] [--setups redis,store,2hosts]
        [--modes on,off,nocluster,noinline] [--sweep 0.25,1,4,16,64]

``--sweep`` runs the cases once per threshold of a large output (``cluster_min_bytes``,
in MiB) instead of the modes. Prints on/off ratios of the makespan (above 1: on is
faster) and of network bytes.
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
from dagrt import workflows
from dagrt.metrics.analysis import analyze
from dagrt.metrics.read import aread_run
from dagrt.storage import RedisStorage
from dagrt.storage import commands as C

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
def crunch(x: Any, seconds: float) -> float:
    """About ``seconds`` of CPU on a slice of ``x`` (the GIL held part of the time)."""
    end = time.perf_counter() + seconds
    acc = 0.0
    while time.perf_counter() < end:
        acc += float(np.sum(x[: 1 << 16]))
    return acc


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


def c2() -> Any:
    x = big(64)
    return total(crunch(x, 1.0), crunch(x, 1.0))


def c3() -> Any:
    return total(big(64, 0.3), small(1.0))


def c4() -> Any:
    return total(big(64, 0.3), small(6.0))


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


def c12() -> Any:
    level = [inc(i) for i in range(2048)]
    for _ in range(8):  # each task reads its two neighbours of the level above
        level = [add(level[i], level[(i + 1) % len(level)]) for i in range(len(level))]
    return total(*level)


def workflow(name: str) -> Callable[[], Any]:
    flow = workflows.get(name)
    return lambda: flow.build(**flow.BENCH)


CASES: dict[str, Callable[[], Any]] = {
    "C1": c1,
    "C2": c2,
    "C3": c3,
    "C4": c4,
    "C5": c5,
    "C6": c6,
    "C7": c7,
    "C8": c8,
    "C9": workflow("gemm"),
    "C10": workflow("svd1"),
    "C11": workflow("svd2"),
    "C12": c12,
}
DEFAULT_CASES = ("C1", "C2", "C3", "C5", "C6", "C7", "C8", "C9", "C10", "C11")
MODES: dict[str, dict[str, Any]] = {
    "on": {},
    "off": {"enabled": False},
    "nocluster": {"cluster_fanout": False, "delayed_io": False},
    "noinline": {"inline_inputs": False},
}


async def server_bytes(url: str) -> tuple[int, int]:
    """What the server has received and sent since it started (``INFO stats``)."""
    storage = RedisStorage(url)
    try:
        [info] = await storage.apipeline([C.Cmd(("INFO", "stats"))])
    finally:
        await storage.aclose()
    fields = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
    return int(fields["total_net_input_bytes"]), int(fields["total_net_output_bytes"])


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
) -> tuple[float, dict[str, int], tuple[int, int]]:
    """One run: its makespan, the bytes of each path (the log), and what the server
    received and sent meanwhile (its counters, read before and after)."""
    node = make()
    before = await server_bytes(url)
    t0 = time.perf_counter()
    fut = client.submit(node)
    await fut
    elapsed = time.perf_counter() - t0
    after = await server_bytes(url)
    events = await aread_run(url, fut.run_id, wait=30)
    served = (after[0] - before[0], after[1] - before[1])
    return elapsed, dict(analyze(events).bytes_by_path), served


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default=",".join(DEFAULT_CASES), help="cases (C4 is long)")
    parser.add_argument("--setups", default="redis,store,2hosts")
    parser.add_argument("--modes", default="on,off", help=f"of {', '.join(MODES)}")
    parser.add_argument("--sweep", default="", help="thresholds of a large output, in MiB")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cases = [c for c in args.only.split(",") if c]
    if args.sweep:
        modes = {
            f"min{t}": {"cluster_min_bytes": int(float(t) * MIB)} for t in args.sweep.split(",")
        }
    else:
        modes = {m: MODES[m] for m in args.modes.split(",")}
    results: list[Result] = []
    rows: dict[tuple[str, str, str], tuple[float, int, int]] = {}
    print(
        "case setup   mode       makespan   network (log)   host (log)"
        "   log up/down   server in/out (MiB)"
    )
    with tempfile.TemporaryDirectory(dir=SHM) as tmp:
        for setup in args.setups.split(","):
            flags = setups(Path(tmp))[setup]
            pool = Pool(flags)
            try:
                for mode, switches in modes.items():
                    async with dagrt.Client(pool.url, locality=switches) as client:
                        for case in cases:
                            await one_run(client, pool.url, CASES[case])  # warm up
                            times, network, host, updown, served = [], [], [], [], []
                            for _ in range(args.repeat):
                                elapsed, paths, io = await one_run(client, pool.url, CASES[case])
                                times.append(elapsed)
                                network.append(sum(v for k, v in paths.items() if k in NETWORK))
                                host.append(sum(v for k, v in paths.items() if k not in NETWORK))
                                updown.append((paths.get("upload", 0), paths.get("download", 0)))
                                served.append(io)
                            rows[(case, setup, mode)] = (
                                statistics.median(times),
                                int(statistics.median(network)),
                                int(statistics.median(host)),
                            )
                            results.append(Result(case, f"{setup}-{mode}", times))
                            up = statistics.median(u for u, _ in updown) / MIB
                            down = statistics.median(d for _, d in updown) / MIB
                            got = statistics.median(i for i, _ in served) / MIB
                            sent = statistics.median(o for _, o in served) / MIB
                            print(
                                f"{case:4s} {setup:7s} {mode:9s}"
                                f" {statistics.median(times) * 1e3:9.1f} ms"
                                f" {statistics.median(network) / MIB:10.1f} MiB"
                                f" {statistics.median(host) / MIB:9.1f} MiB"
                                f" {up:8.1f}/{down:<8.1f} {got:8.1f}/{sent:<8.1f}",
                                flush=True,
                            )
            finally:
                pool.stop()
    base = "off" if "off" in modes else next(iter(modes))
    print(
        f"\n{base}/x (makespan: {base} / x, above 1 means x is faster; network bytes: x / {base})"
    )
    for case in cases:
        for setup in args.setups.split(","):
            ref = rows[(case, setup, base)]
            for mode in modes:
                if mode == base:
                    continue
                x = rows[(case, setup, mode)]
                ratio_bytes = x[1] / ref[1] if ref[1] else float("nan")
                print(
                    f"{case:4s} {setup:7s} {mode:9s} makespan {ref[0] / x[0]:5.2f}x"
                    f"  network bytes {ratio_bytes:6.3f}"
                )
    if args.json:
        save_json(results, args.json)


if __name__ == "__main__":
    asyncio.run(main())
