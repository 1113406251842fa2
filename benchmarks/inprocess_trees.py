"""The in-process tree reduction, before/after: fresh processes of two checkouts, alternated.

``compare_trees.py`` runs a whole benchmark per tree (with Dask beside it); on a noisy
machine a small per-task cost of the in-process runtime hides in that drift. This runs
only dagrt's in-process tree reduction (the graph ``tree_reduction.py`` builds, built
and computed end to end), ``--runs`` times per process (the median of all but the first
two), in ``--rounds`` pairs of fresh processes, base and this checkout alternated, and
prints each tree's medians and the median of the per-round ratios.

    git worktree add /tmp/base <commit>
    python benchmarks/inprocess_trees.py --base /tmp/base --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

ONE = """
import asyncio, statistics, sys, time
sys.path[:0] = [{tree!r}, {bench!r}]
import dagrt
from tree_reduction import add, build
task, leaves, runs = dagrt.task(add), {leaves}, {runs}
loop = asyncio.new_event_loop()
client = dagrt.Client(processes=False)
loop.run_until_complete(client.__aenter__())
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    assert loop.run_until_complete(client.compute(build(task, leaves))) == sum(range(leaves))
    times.append(time.perf_counter() - t0)
loop.run_until_complete(client.close())
print(statistics.median(times[2:]))
"""


def one(tree: Path, leaves: int, runs: int) -> float:
    code = ONE.format(tree=str(tree), bench=str(HERE / "benchmarks"), leaves=leaves, runs=runs)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--leaves", type=int, default=16_384)
    args = parser.parse_args()
    base, this, ratios = [], [], []
    for k in range(args.rounds):
        pair = [(args.base, base), (HERE, this)]
        for tree, into in pair if k % 2 == 0 else pair[::-1]:
            into.append(one(tree, args.leaves, args.runs))
        ratios.append(base[-1] / this[-1])
        print(f"round {k + 1}: base {base[-1] * 1e3:.1f} ms, this {this[-1] * 1e3:.1f} ms")
    print(
        f"tree_reduction[{args.leaves - 1}] in-process: base {statistics.median(base) * 1e3:.1f}"
        f" ms, this {statistics.median(this) * 1e3:.1f} ms; base/this"
        f" {statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]"
    )


if __name__ == "__main__":
    main()
