"""What turning a Dask graph into a dagrt graph costs, per task (``dagrt.dask.convert``).

A ``dask.array`` expression of about 100,000 tasks (``(x + 1) * 2 + x.T`` summed over
rows, 210x210 chunks of 25x25), as ``dask.compute`` hands it to a scheduler (optimized:
fused tasks) and unoptimized (legacy tuples, converted first); prints the time Dask
takes to materialize the graph and the time of the conversion, per task.

    python benchmarks/dask_conversion.py [--chunks 210] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import dask
import dask.array as da
from dask.base import collections_to_expr

import dagrt.dask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=210, help="chunks per side")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.chunks * 25
    for optimize in (True, False):
        best_graph = best_convert = float("inf")
        tasks = 0
        for _ in range(args.repeat):
            x = da.ones((n, n), chunks=25)
            expr = collections_to_expr([((x + 1) * 2 + x.T).sum(axis=1)], optimize)
            if optimize:
                expr = expr.optimize()
            t0 = time.perf_counter()
            graph = expr.__dask_graph__()
            t1 = time.perf_counter()
            keys = list(dask.core.flatten(expr.__dask_keys__()))
            dagrt.dask.convert(graph, keys)
            t2 = time.perf_counter()
            tasks = len(graph)
            best_graph, best_convert = min(best_graph, t1 - t0), min(best_convert, t2 - t1)
        print(
            f"{'optimized' if optimize else 'unoptimized':>11}: {tasks:,} Dask tasks;"
            f" Dask materializes the graph in {best_graph:.2f} s, dagrt converts it in"
            f" {best_convert:.2f} s ({best_convert / tasks * 1e6:.1f} us per task)"
        )


if __name__ == "__main__":
    main()
