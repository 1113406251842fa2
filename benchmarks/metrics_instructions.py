"""What the event log costs, in instructions: the in-process tree reduction counted
by valgrind (callgrind), metrics off and with the periodic policy.

Wall-clock ratios on a shared VM move by several percent from one minute to the next
(see metrics_overhead.py); an instruction count does not. Each configuration runs
twice under callgrind, with 2 warm-up runs and then 0 and then ``--runs`` measured
ones; the difference, divided by ``--runs``, is one run's instructions (start-up,
imports and warm-up cancel out). It does not see cache misses or waiting, so it is
a floor for the time the log adds. Needs ``valgrind``; takes 2-3 minutes.

    python benchmarks/metrics_instructions.py [--leaves 16384] [--runs 4]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagrt
from dagrt.metrics import FlushPolicy
from dagrt.workflows import pairwise


def add(x: int, y: int) -> int:
    return x + y


def child(mode: str, leaves: int, runs: int) -> None:
    """Runs under valgrind: 2 warm-up runs, then ``runs`` more."""
    task = dagrt.task(add)

    async def go() -> None:
        if mode == "off":
            client = dagrt.Client(processes=False, metrics=False)
        else:
            client = dagrt.Client(processes=False, flush=FlushPolicy(interval=1.0, max_events=None))
        async with client:
            for _ in range(2 + runs):
                assert await client.compute(pairwise(task, range(leaves))) == sum(range(leaves))
                if client.metrics is not None:
                    await client.metrics.flush()

    asyncio.run(go())


def count(mode: str, runs: int, leaves: int, folder: Path) -> int:
    """Instructions of one child process (the server it starts is not traced)."""
    out = folder / f"{mode}-{runs}.out"
    here = [__file__, "--child", mode, "--leaves", str(leaves), "--runs", str(runs)]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, *here],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--child", choices=("off", "periodic"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.leaves, args.runs)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    jobs = [(mode, runs) for mode in ("off", "periodic") for runs in (0, args.runs)]
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(2) as pool:
        counts = dict(
            zip(jobs, pool.map(lambda j: count(*j, args.leaves, Path(folder)), jobs), strict=True)
        )
    per_run = {
        mode: (counts[mode, args.runs] - counts[mode, 0]) / args.runs
        for mode in ("off", "periodic")
    }
    tasks = args.leaves - 1
    print(f"in-process tree reduction of {tasks} tasks, instructions per run (callgrind)")
    for mode, n in per_run.items():
        added = n / per_run["off"] - 1
        print(
            f"  metrics {mode:<9} {n / 1e6:8.1f} M  {added * 100:+5.1f}%"
            f"  {(n - per_run['off']) / tasks:+6.0f} per task"
        )


if __name__ == "__main__":
    main()
