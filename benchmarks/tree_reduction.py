"""Tree reduction of 16,384 leaves (16,383 `add` tasks): dagrt in-process vs Dask threads.

Timed end to end: building the graph plus computing it, as a user would.

    python benchmarks/tree_reduction.py [--leaves 16384] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import dask
from dask import delayed

import dagrt
from dagrt.workflows import pairwise

sys.path.insert(0, str(Path(__file__).parent))
from _harness import measure, save_json, table


def add(x: int, y: int) -> int:
    return x + y


def build(make, leaves: int):
    return pairwise(make, range(leaves))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/tree_reduction.json"))
    args = parser.parse_args()
    expected = sum(range(args.leaves))
    dagrt_add = dagrt.task(add)
    dask_add = delayed(add)
    loop = asyncio.new_event_loop()
    client = dagrt.Client(processes=False)
    loop.run_until_complete(client.__aenter__())

    def run_dagrt() -> int:
        return loop.run_until_complete(client.compute(build(dagrt_add, args.leaves)))

    def run_dask_threads() -> int:
        return dask.compute(build(dask_add, args.leaves), scheduler="threads")[0]

    def check(system: str, value: int) -> None:
        assert value == expected, (system, value, expected)

    results = measure(
        f"tree_reduction[{args.leaves - 1}]",
        {"dask-threads": run_dask_threads, "dagrt-inprocess": run_dagrt},
        repeat=args.repeat,
        check=check,
    )
    loop.run_until_complete(client.close())
    loop.close()
    rows = list(results.values())
    print(table(rows, baseline="dask-threads"))
    n = args.leaves - 1
    for r in rows:
        print(f"{r.system}: {r.median / n * 1e6:.2f} us per task (end to end)")
    save_json(rows, args.json, leaves=args.leaves)


if __name__ == "__main__":
    main()
