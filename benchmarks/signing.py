"""What signing costs: per call, per GB, and per task of a tree reduction on workers.

Part 1: the HMACs themselves (``dagrt.records.sign``/``verify`` of an 80-byte record,
``dagrt.outcomes.event_tag``, an output's ``seal``/``unseal``), and sealing throughput
on a 256 MB output (what a signed output costs per GB, on each side).

Part 2: a tree reduction of 16,384 leaves on two private pools of two worker
processes each (``--threads 1``), one whose clients and workers hold a secret and one
without, alternated with Dask distributed (two workers) as the drift reference, several
repetitions; prints medians, the signed / unsigned ratio, and the cost per task.

Part 3: large outputs through the server (the pools' workers have no host store): 16
tasks of 32 MB each and their sum, on both pools in turn; the cost per GB stored and
read back.

    python benchmarks/signing.py [--repeat 5] [--leaves 16384]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import dagrt
from dagrt.hmacs import mac
from dagrt.keyring import Keyring, new_secret
from dagrt.outcomes import event_tag
from dagrt.records import sign, verify
from dagrt.sealing import output_place, seal, unseal
from dagrt.workflows import pairwise

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json, table
from _pool import WorkerPool


def add(x: int, y: int) -> int:
    return x + y


def per_call() -> None:
    keys = Keyring.of(new_secret())
    payload = os.urandom(80)
    stored = sign(payload, keys, "run-1", "7")
    n = 200_000
    for name, fn in (
        ("records.sign (80 B)", lambda: sign(payload, keys, "run-1", "7")),
        ("records.verify (80 B)", lambda: verify(stored, keys, "run-1", "7")),
        ("outcomes.event_tag", lambda: event_tag(keys, "run-1", "finished")),
    ):
        seconds = min(timeit.repeat(fn, number=n, repeat=3)) / n
        print(f"{name:<24} {seconds * 1e6:6.2f} us per call")
    small = pickle.dumps(12345)
    place = output_place("run-1", 7)
    sealed = seal(keys, place, small)
    for name, fn in (
        ("seal (small output)", lambda: seal(keys, place, small)),
        ("unseal (small output)", lambda: unseal(keys, [place], sealed, what="x")),
    ):
        seconds = min(timeit.repeat(fn, number=n, repeat=3)) / n
        print(f"{name:<24} {seconds * 1e6:6.2f} us per call")
    buffer = os.urandom(1 << 28)
    seconds = min(timeit.repeat(lambda: mac(keys.signing, buffer), number=1, repeat=3))
    print(f"{'HMAC-SHA256, 256 MB':<24} {seconds * 4:6.3f} s per GB ({0.25 / seconds:.2f} GB/s)")
    big = bytes(seal(keys, place, buffer))  # (as read back: one buffer)
    for name, fn in (
        ("seal, 256 MB", lambda: seal(keys, place, buffer)),
        ("unseal, 256 MB", lambda: unseal(keys, [place], big, what="x")),
    ):
        seconds = min(timeit.repeat(fn, number=1, repeat=3))
        print(f"{name:<24} {seconds * 4:6.3f} s per GB")


def block(i: int, n: int) -> Any:
    import numpy as np

    return np.full(n, float(i))


def total(*blocks: Any) -> float:
    return float(sum(b.sum() for b in blocks))


BLOCKS, BLOCK_N = 16, 4 << 20  # 16 outputs of 32 MB
LARGE_GB = BLOCKS * BLOCK_N * 8 / 1e9


def large_outputs(
    loop: asyncio.AbstractEventLoop,
    signed: dagrt.Client,
    unsigned: dagrt.Client,
    repeat: int,
) -> list[Result]:
    """16 outputs of 32 MB through the server and their sum, on each pool in turn."""
    dagrt_block, dagrt_total = dagrt.task(block), dagrt.task(total)
    expected = float(sum(range(BLOCKS)) * BLOCK_N)

    def on(client: dagrt.Client) -> float:
        dag = dagrt_total(*(dagrt_block(i, BLOCK_N) for i in range(BLOCKS)))
        return loop.run_until_complete(client.compute(dag))

    workload = f"large_outputs[{BLOCKS}x32MB]"
    results = [Result(workload, "dagrt-signed"), Result(workload, "dagrt-unsigned")]
    clients = [signed, unsigned]
    for c in clients:  # warm up
        on(c)
    for r in range(repeat):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            t0 = time.perf_counter()
            assert on(clients[k]) == expected
            results[k].seconds.append(time.perf_counter() - t0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/signing.json"))
    args = parser.parse_args()
    per_call()

    import dask
    from dask import delayed
    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster

    secret = new_secret()
    signed, unsigned = WorkerPool([[], []], secret=secret), WorkerPool([[], []])
    loop = asyncio.new_event_loop()
    signed_client = dagrt.Client(signed.url, secret=secret)
    unsigned_client = dagrt.Client(unsigned.url)
    for c in (signed_client, unsigned_client):
        loop.run_until_complete(c.__aenter__())
    dask_cluster = DaskCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    dask_client = DaskClient(dask_cluster)
    dagrt_add, dask_add = dagrt.task(add), delayed(add)
    expected = sum(range(args.leaves))

    def on(client: dagrt.Client) -> int:
        return loop.run_until_complete(client.compute(pairwise(dagrt_add, range(args.leaves))))

    cases = {
        "dagrt-signed": lambda: on(signed_client),
        "dagrt-unsigned": lambda: on(unsigned_client),
        "dask-distributed": lambda: dask.compute(pairwise(dask_add, range(args.leaves)))[0],
    }
    workload = f"tree_reduction[{args.leaves - 1}]"
    results = {name: Result(workload, name) for name in cases}
    for fn in cases.values():  # warm up
        fn()
    pair = ("dagrt-signed", "dagrt-unsigned")
    for r in range(args.repeat):  # Dask first, then the two in turn: each follows Dask as
        # often (what Dask leaves running for a moment slows whatever comes next)
        for name in ("dask-distributed", *(pair if r % 2 == 0 else pair[::-1])):
            fn = cases[name]
            t0 = time.perf_counter()
            assert fn() == expected
            results[name].seconds.append(time.perf_counter() - t0)
    dask_client.close()
    dask_cluster.close()
    big = large_outputs(loop, signed_client, unsigned_client, args.repeat)
    for c in (signed_client, unsigned_client):
        loop.run_until_complete(c.close())
    loop.close()
    signed.stop()
    unsigned.stop()
    rows = list(results.values())
    print(table(rows, baseline="dask-distributed"))
    print(table(big, baseline="dagrt-unsigned"))
    bs, bu = (r.median for r in big)
    print(
        f"large outputs, signed / unsigned: {bs / bu:.3f}"
        f" ({(bs - bu) / LARGE_GB:+.3f} s per GB stored and read back)"
    )
    rows += big
    s, u = results["dagrt-signed"].median, results["dagrt-unsigned"].median
    print(f"signed / unsigned: {s / u:.3f} ({(s - u) / (args.leaves - 1) * 1e6:+.2f} us per task)")
    save_json(rows, args.json)


if __name__ == "__main__":
    main()
