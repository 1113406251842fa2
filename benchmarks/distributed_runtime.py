"""Tree reduction on worker processes: dagrt Client() vs Dask distributed, plus a 100k DAG.

Part 1: 16,384 leaves (16,383 `add` tasks), and 1,024 chains of 16 `inc` tasks,
end to end (build + compute), on dagrt's LocalCluster with 2 workers and on Dask's
LocalCluster(n_workers=2, threads_per_worker=1), alternating, several repetitions.

Part 2: a 100,000-task DAG (a tree reduction of 50,000 leaves, plus their
leaf tasks) on dagrt: submission time, end-to-end time, and the peak resident
memory of the client and of each worker (VmHWM from /proc).

    python benchmarks/distributed_runtime.py [--repeat 3] [--big 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

import dagrt
from dagrt import submission
from dagrt.workflows import pairwise

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json, table


def add(x: int, y: int) -> int:
    return x + y


def inc(x: int) -> int:
    return x + 1


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", type=int, default=100_000, help="tasks of the large DAG")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/distributed.json"))
    args = parser.parse_args()

    import dask
    from dask import delayed
    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster

    n_tasks = args.leaves - 1
    expected = sum(range(args.leaves))
    dagrt_add = dagrt.task(add)
    dask_add = delayed(add)

    loop = asyncio.new_event_loop()
    client = dagrt.Client(n_workers=2, threads=1)
    loop.run_until_complete(client.__aenter__())
    dask_cluster = DaskCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    dask_client = DaskClient(dask_cluster)

    def run_dagrt() -> int:
        node = pairwise(dagrt_add, range(args.leaves))
        return loop.run_until_complete(client.compute(node))

    def run_dask() -> int:
        node = pairwise(dask_add, range(args.leaves))
        return dask.compute(node)[0]

    dagrt_inc_ = dagrt.task(inc)
    dask_inc = delayed(inc)
    n_chains, length = 1024, 16

    def chains(inc_: object) -> list[object]:
        ends = []
        for c in range(n_chains):
            x: object = c
            for _ in range(length):
                x = inc_(x)  # type: ignore[operator]
            ends.append(x)
        return ends

    def run_dagrt_chains() -> int:
        return sum(loop.run_until_complete(client.compute(chains(dagrt_inc_))))

    def run_dask_chains() -> int:
        return sum(dask.compute(*chains(dask_inc)))

    chains_expected = sum(c + length for c in range(n_chains))
    tree, chain = f"tree_reduction[{n_tasks}]", f"chains[{n_chains}x{length}]"
    results: dict[tuple[str, str], Result] = {
        (w, s): Result(w, s) for w in (tree, chain) for s in ("dask-distributed", "dagrt-cluster")
    }
    cases = [
        (tree, "dask-distributed", run_dask, expected),
        (tree, "dagrt-cluster", run_dagrt, expected),
        (chain, "dask-distributed", run_dask_chains, chains_expected),
        (chain, "dagrt-cluster", run_dagrt_chains, chains_expected),
    ]
    for _, _, fn, _ in cases:  # warm up all
        fn()
    for _ in range(args.repeat):
        for workload, name, fn, want in cases:
            t0 = time.perf_counter()
            value = fn()
            results[(workload, name)].seconds.append(time.perf_counter() - t0)
            assert value == want, (name, value)
    dask_client.close()
    dask_cluster.close()
    rows = list(results.values())
    print(table(rows, baseline="dask-distributed"))
    for r in rows:
        tasks = n_tasks if r.workload == tree else n_chains * length
        print(f"{r.workload} {r.system}: {r.median / tasks * 1e6:.1f} us per task, end to end")

    # -- the large DAG -----------------------------------------------------------------
    if args.big < 2:
        loop.run_until_complete(client.close())
        loop.close()
        save_json(rows, args.json)
        return
    runtime = client._runtime
    cluster = client.cluster
    dagrt_inc = dagrt.task(inc)
    half = args.big // 2
    t0 = time.perf_counter()
    node = pairwise(dagrt_add, [dagrt_inc(i) for i in range(half)])
    dag = dagrt.DAG(node)
    build = time.perf_counter() - t0
    spec = loop.run_until_complete(
        submission.submit(runtime.storage, dag, "bench-submit-only", stream="bench:nobody")
    )
    loop.run_until_complete(submission.cleanup(runtime.storage, spec, "cancelled"))
    t0 = time.perf_counter()
    value = loop.run_until_complete(client.compute(dag))
    total = time.perf_counter() - t0
    assert value == sum(i + 1 for i in range(half))
    client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_peaks = [peak_rss_mb(p.pid) for p in cluster.processes]
    print(
        f"\n{len(dag):,}-task DAG: build {build:.2f} s, submission {spec.submit_seconds:.2f} s "
        f"({spec.submit_seconds / len(dag) * 1e6:.1f} us per task), end to end {total:.2f} s "
        f"({total / len(dag) * 1e6:.1f} us per task)"
    )
    print(
        f"peak RSS: client {client_peak:.0f} MB, workers "
        + ", ".join(f"{p:.0f} MB" for p in worker_peaks)
    )
    big = Result(
        f"dag[{len(dag)}]",
        "dagrt-cluster",
        [total],
        {
            "submit_seconds": spec.submit_seconds,
            "build_seconds": build,
            "client_peak_mb": client_peak,
            "worker_peak_mb": worker_peaks,
        },
    )
    loop.run_until_complete(client.close())
    loop.close()
    save_json([*rows, big], args.json)


if __name__ == "__main__":
    main()
