"""Paired before/after: one benchmark, run alternately on two checkouts of dagrt.

A change that must not slow dagrt down is measured against the code before it,
side by side: each round runs the benchmark once with the base checkout's dagrt
and once with this one's (the order turning every round), each with its own copy
of the benchmark script (or this checkout's, ``--script-here``, for a script that
uses only public API), and reads the medians it saved (``--json``). The
machine's speed drifts between rounds; the pairs do not, and the peers the
benchmark also times (Dask) show how much it drifted.

    git worktree add /tmp/base <commit>
    python benchmarks/compare_trees.py --base /tmp/base --rounds 4 \\
        benchmarks/tree_reduction.py --repeat 5

Prints, per workload and system, the medians of both trees in every round, the
median of the per-round ratios (base / this: above 1 means this tree is faster)
and their range.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run(tree: Path, script: Path, args: list[str], out: Path) -> dict[tuple[str, str], float]:
    """One run of ``script`` with ``tree``'s dagrt: median per (workload, system)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run(
        [sys.executable, str(script), *args, "--json", str(out)],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results = json.loads(out.read_text())["results"]
    return {(r["workload"], r["system"]): r["median"] for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="checkout of the code before")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--script-here",
        action="store_true",
        help="run this checkout's copy of the script on both (it uses only public API)",
    )
    parser.add_argument("script", help="benchmark script, relative to the checkout's root")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own arguments")
    opts = parser.parse_args()
    trees = {"base": opts.base.resolve(), "this": HERE}
    rounds: list[dict[str, dict[tuple[str, str], float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(opts.rounds):
            order = ["base", "this"] if n % 2 == 0 else ["this", "base"]
            medians = {}
            for name in order:
                script = (HERE if opts.script_here else trees[name]) / opts.script
                medians[name] = run(trees[name], script, opts.args, Path(tmp) / f"{name}.json")
            rounds.append(medians)
            print(f"round {n + 1}/{opts.rounds} done", file=sys.stderr, flush=True)
    keys = sorted(set(rounds[0]["base"]) & set(rounds[0]["this"]))
    print(f"{opts.script} {' '.join(opts.args)}: {opts.rounds} rounds, medians in ms (base / this)")
    for key in keys:
        pairs = [(r["base"][key], r["this"][key]) for r in rounds]
        ratios = [b / t for b, t in pairs]
        cells = "  ".join(f"{b * 1e3:.0f}/{t * 1e3:.0f}" for b, t in pairs)
        print(
            f"{key[0]:<24} {key[1]:<18} {cells}   base/this {statistics.median(ratios):.3f}"
            f" [{min(ratios):.3f}, {max(ratios):.3f}]"
        )


if __name__ == "__main__":
    main()
