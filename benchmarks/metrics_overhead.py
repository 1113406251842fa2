"""What the event log costs: tree reduction with metrics off and with each flush policy.

In one run: 16,384 leaves (16,383 tasks), end to end, on the in-process runtime
and on a local cluster of 2 workers; every configuration alternates with the
others, several repetitions; ratios against metrics off. A round's time ends when
the run's events are written (what the policy left buffered is flushed and
counted in that round).

    python benchmarks/metrics_overhead.py [--repeat 5] [--runtime in-process|cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import dagrt
from dagrt.metrics import FlushPolicy
from dagrt.workflows import pairwise

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Result, save_json

POLICIES: dict[str, bool | FlushPolicy] = {
    "off": False,
    "periodic 1s": FlushPolicy(interval=1.0, max_events=None),
    "size 2000": FlushPolicy(interval=None, max_events=2000),
    "periodic+size": FlushPolicy(interval=1.0, max_events=2000),
    "each task": FlushPolicy(after_each_task=True, interval=None, max_events=None),
}


def add(x: int, y: int) -> int:
    return x + y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runtime", choices=("in-process", "cluster", "both"), default="both")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/metrics.json"))
    args = parser.parse_args()
    task = dagrt.task(add)

    def build() -> dagrt.Node:
        return pairwise(task, range(args.leaves))

    async def measure(runtime: str) -> dict[str, list[float]]:
        clients = {}
        for name, policy in POLICIES.items():
            if runtime == "in-process":
                options = {"processes": False}
            else:
                options = {"n_workers": 2, "threads": 1}
            if policy is False:
                client = dagrt.Client(metrics=False, **options)
            else:
                client = dagrt.Client(flush=policy, **options)  # type: ignore[arg-type]
            await client.__aenter__()
            clients[name] = client
        times: dict[str, list[float]] = {name: [] for name in POLICIES}
        expected = sum(range(args.leaves))
        for round_ in range(args.repeat + 1):
            for name, client in clients.items():
                t0 = time.perf_counter()
                assert await client.compute(build()) == expected
                if client.metrics is not None:
                    # The run's events still buffered are written now and counted here,
                    # not in whichever configuration's round the next flush would land.
                    await client.metrics.flush()
                if round_:  # the first round warms up
                    times[name].append(time.perf_counter() - t0)
        for client in clients.values():
            await client.close()
        return times

    results = []
    runtimes = ("in-process", "cluster") if args.runtime == "both" else (args.runtime,)
    for runtime in runtimes:
        times = asyncio.run(measure(runtime))
        base = statistics.median(times["off"])
        best = min(times["off"])
        print(
            f"\n{runtime}: tree reduction of {args.leaves - 1} tasks, {args.repeat} rounds"
            " (median; the fastest round; and 'paired', the median over rounds of the ratio"
            " to metrics off in the same round, which cancels the machine's drift from one"
            " minute to the next)"
        )
        for name, ts in times.items():
            median, low = statistics.median(ts), min(ts)
            paired = statistics.median(t / off for t, off in zip(ts, times["off"], strict=True))
            print(
                f"  metrics {name:<14} median {median * 1e3:7.1f} ms {(median / base - 1) * 100:+6.1f}%"
                f"   min {low * 1e3:7.1f} ms {(low / best - 1) * 100:+6.1f}%"
                f"   paired {(paired - 1) * 100:+6.1f}%"
            )
            results.append(Result(f"tr[{runtime}]", f"metrics {name}", ts))
    save_json(results, args.json)


if __name__ == "__main__":
    main()
