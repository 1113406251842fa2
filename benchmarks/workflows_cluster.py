"""Workflows on dagrt's ``Client(n_workers=2)`` as a user gets it: nothing set by hand.

No native thread variable is set here (run it from a shell without them): what the
workers' BLAS uses is what dagrt does by itself. Prints the median of ``--repeat``
runs after a warm-up, per workflow, and what the workers' native thread pools were
(threadpoolctl, inside a task).

    python benchmarks/workflows_cluster.py [--only gemm,svd1,svd2] [--repeat 3]

Pair it with another checkout of dagrt (the code as shipped before a change):

    python benchmarks/compare_trees.py --base /tmp/base --script-here --rounds 3 \\
        benchmarks/workflows_cluster.py --only gemm,svd1,svd2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _harness import Result, save_json

import dagrt
from dagrt import workflows


def pools(_: Any = None) -> str:
    """The native thread pools of the process this runs in, numpy loaded."""
    import numpy  # noqa: F401

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "(threadpoolctl not installed)"
    return " ".join(f"{lib['internal_api']}={lib['num_threads']}" for lib in threadpool_info())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="gemm,svd1,svd2", help="comma-separated workflows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/workflows_cluster.json")
    )
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    client = dagrt.Client(n_workers=args.workers, metrics=False)
    loop.run_until_complete(client.__aenter__())
    results: list[Result] = []
    try:
        seen = loop.run_until_complete(client.compute([dagrt.task(pools)(i) for i in range(8)]))
        print(f"workers' native thread pools: {sorted(set(seen))}")
        for name in args.only.split(","):
            flow = workflows.get(name)
            params = dict(flow.BENCH)
            expected = flow.reference(**params)
            times = []
            for round_ in range(args.repeat + 1):  # round 0 warms up
                t0 = time.perf_counter()
                value = loop.run_until_complete(client.compute(flow.build(**params)))
                elapsed = time.perf_counter() - t0
                if not flow.check(value, expected):
                    raise SystemExit(f"wrong result for {name}")
                if round_:
                    times.append(elapsed)
            result = Result(name, "dagrt-cluster", times, {"params": params})
            results.append(result)
            print(
                f"{name:<16} {result.median * 1e3:8.0f} ms  (runs: "
                + ", ".join(f"{t * 1e3:.0f}" for t in times)
                + ")",
                flush=True,
            )
    finally:
        loop.run_until_complete(client.close())
        loop.close()
    save_json(results, args.json, workers=args.workers, repeat=args.repeat, pools=sorted(set(seen)))


if __name__ == "__main__":
    main()
