"""Dask collections on three schedulers: dagrt's cluster, Dask distributed, Dask threads.

The same Dask collection graphs (built afresh for each run, as a user's script does)
computed with ``dask.compute``:

* ``dagrt``: ``Client(n_workers=2)`` (two worker processes), ``scheduler=client.get``
  inside ``dagrt.dask.enable(client)`` (task-based shuffles);
* ``dask-distributed``: ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)``,
  its defaults otherwise (p2p shuffles);
* ``dask-threads``: Dask's threaded scheduler in this process.

Workloads: GEMM (``A @ B``, 2000x2000 in 4x4 blocks), TSQR SVD (``da.linalg.svd`` of
400,000x100 in 16 row blocks), ``svd_compressed`` (3000x3000, rank 20, two power
iterations), a bag word count (2,000,000 words, 32 partitions), a dataframe
groupby-aggregate and a shuffle-join (``dask.datasets.timeseries``: 2,073,600 rows in
24 partitions; the join on a non-index column, against 1,000 rows in 4 partitions, no
broadcast). Each result is checked against the threaded scheduler's. Runs alternate
(distributed, dagrt, threads) after a warm-up; prints medians and ratios.

    python benchmarks/dask_collections.py [--repeat 3] [--only gemm,svd_tall]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

import dagrt
import dagrt.dask

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json, table
from dask_workflows import gemm, svd_square, svd_tall, word_count


def groupby() -> Any:
    df = dask.datasets.timeseries(
        start="2000-01-01", end="2000-01-25", freq="1s", partition_freq="1D", seed=0
    )
    return df.groupby("name").agg({"x": "mean", "y": "sum", "id": "count"})


def join() -> Any:
    df = dask.datasets.timeseries(
        start="2000-01-01", end="2000-01-25", freq="1s", partition_freq="1D", seed=1
    )
    ids = np.arange(900, 1100)
    right = dd.from_pandas(
        pd.DataFrame({"id": np.repeat(ids, 5), "w": np.arange(1000) % 7}), npartitions=4
    )
    joined = dd.merge(df, right, on="id", how="inner", broadcast=False)
    return joined.groupby("w").x.sum()


def svd_tall_summary() -> Any:
    u, s, v = svd_tall(400_000, 100, 16, 0)
    return abs(u).sum(), s, abs(v).sum()


def svd_compressed_summary() -> Any:
    u, s, v = svd_square(3_000, 20, 8, 2, 0)
    return abs(u).sum(), s, abs(v).sum()


WORKLOADS: dict[str, Callable[[], Any]] = {
    "gemm": lambda: gemm(2000, 4, 0),
    "svd_tall": svd_tall_summary,
    "svd_compressed": svd_compressed_summary,
    "wordcount": lambda: word_count(2_000_000, 32, 0),
    "df_groupby": groupby,
    "df_join": join,
}


#: how far floats may differ from the threaded scheduler's: BLAS with another number of
#: threads sums in another order, and power iterations amplify it on small singular values
RTOL = {"svd_compressed": 1e-3}


def same(a: Any, b: Any, rtol: float = 1e-6) -> bool:
    """Equal results (floats to ``rtol``; frames sorted by index)."""
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y, rtol) for x, y in zip(a, b, strict=True))
    if isinstance(a, pd.DataFrame | pd.Series):
        return bool(np.allclose(a.sort_index().to_numpy(), b.sort_index().to_numpy(), rtol=rtol))
    if isinstance(a, np.ndarray | float | np.floating):
        return bool(np.allclose(a, b, rtol=rtol))
    return bool(a == b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/dask_collections.json")
    )
    args = parser.parse_args()
    from distributed import Client as DaskClient
    from distributed import LocalCluster as DaskCluster

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = dagrt.Client(n_workers=2, metrics=False)
    asyncio.run_coroutine_threadsafe(client.__aenter__(), loop).result(120)
    cluster = DaskCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    dask_client = DaskClient(cluster, set_as_default=False)

    def on_dagrt(build: Callable[[], Any]) -> Any:
        with dagrt.dask.enable(client):
            return dask.compute(build())[0]

    def on_distributed(build: Callable[[], Any]) -> Any:
        return dask.compute(build(), scheduler=dask_client)[0]

    def on_threads(build: Callable[[], Any]) -> Any:
        return dask.compute(build(), scheduler="threads")[0]

    systems = {"dask-distributed": on_distributed, "dagrt": on_dagrt, "dask-threads": on_threads}
    results: list[Result] = []
    try:
        for name in args.only.split(","):
            build = WORKLOADS[name]
            rows = {s: Result(name, s) for s in systems}
            expected = on_threads(build)
            for round_ in range(args.repeat + 1):  # round 0 warms up
                for system, run in systems.items():
                    t0 = time.perf_counter()
                    value = run(build)
                    elapsed = time.perf_counter() - t0
                    if not same(value, expected, RTOL.get(name, 1e-6)):
                        raise SystemExit(f"{name} on {system}: {value} instead of {expected}")
                    if round_:
                        rows[system].seconds.append(elapsed)
            results += rows.values()
            d, g, t = (rows[s].median for s in systems)
            print(
                f"{name:<15} distributed {d * 1e3:7.0f} ms  dagrt {g * 1e3:7.0f} ms"
                f"  threads {t * 1e3:7.0f} ms   distributed/dagrt {d / g:5.2f}x"
                f"  threads/dagrt {t / g:5.2f}x",
                flush=True,
            )
    finally:
        dask_client.close()
        cluster.close()
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    print()
    print(table(results, baseline="dask-distributed"))
    save_json(results, args.json, repeat=args.repeat)


if __name__ == "__main__":
    main()
