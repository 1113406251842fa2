"""What the event log costs: tree reduction with metrics off and with each flush policy.

In one run: 16,384 leaves (16,383 tasks), end to end, on the in-process runtime
and on a local cluster of 2 workers; every configuration alternates with the
others (in an order that turns every round), several repetitions; ratios against
metrics off. A round's time ends when the run's events are written (what the
policy left buffered is flushed and counted in that round).

The machine's speed drifts, and the effect measured is a few percent: use enough
rounds (the default 30 takes about 40 s in-process and 3-4 minutes on the cluster)
and read the paired figure.

    python benchmarks/metrics_overhead.py [--repeat 30] [--runtime in-process|cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
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


def machine_cpu() -> float:
    """CPU-seconds the machine has been busy so far, all cores, steal left out
    (``/proc/stat``; 10 ms ticks)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=16_384)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--runtime", choices=("in-process", "cluster", "both"), default="both")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/metrics.json"))
    args = parser.parse_args()
    task = dagrt.task(add)

    def build() -> dagrt.Node:
        return pairwise(task, range(args.leaves))

    async def measure(runtime: str) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
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
        # CPU: in-process all of it is this process's; on the cluster, the machine's
        # (client, workers, server), less the time the hypervisor took (steal).
        cpu = time.process_time if runtime == "in-process" else machine_cpu
        times: dict[str, list[float]] = {name: [] for name in POLICIES}
        cpus: dict[str, list[float]] = {name: [] for name in POLICIES}
        expected = sum(range(args.leaves))
        names = list(clients)
        for round_ in range(args.repeat + 1):
            # The order turns every round: no configuration always follows the same other
            # one (the memory a round frees is what the next one's allocations reuse).
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                client = clients[name]
                # Every round starts from the same collector state: a full collection
                # (30-50 ms here) otherwise lands in whichever round crosses its threshold.
                gc.collect()
                c0, t0 = cpu(), time.perf_counter()
                assert await client.compute(build()) == expected
                if client.metrics is not None:
                    # The run's events still buffered are written now and counted here,
                    # not in whichever configuration's round the next flush would land.
                    await client.metrics.flush()
                if round_:  # the first round warms up
                    times[name].append(time.perf_counter() - t0)
                    cpus[name].append(cpu() - c0)
        for client in clients.values():
            await client.close()
        return times, cpus

    def paired(xs: list[float], offs: list[float]) -> float:
        return statistics.median(x / off for x, off in zip(xs, offs, strict=True)) - 1

    def per_task(xs: list[float], offs: list[float]) -> float:
        """The median over rounds of the time added in the same round, per task, in
        microseconds: what the log costs, whatever the machine's speed that minute."""
        added = statistics.median(x - off for x, off in zip(xs, offs, strict=True))
        return added / (args.leaves - 1) * 1e6

    def interval(xs: list[float], offs: list[float]) -> tuple[float, float]:
        """A 90% bootstrap interval of ``paired`` (rounds resampled with replacement)."""
        pick = random.Random(0)
        ratios = [x / off for x, off in zip(xs, offs, strict=True)]
        medians = sorted(
            statistics.median(pick.choices(ratios, k=len(ratios))) - 1 for _ in range(2000)
        )
        return medians[100], medians[1899]

    results = []
    runtimes = ("in-process", "cluster") if args.runtime == "both" else (args.runtime,)
    for runtime in runtimes:
        times, cpus = asyncio.run(measure(runtime))
        base = statistics.median(times["off"])
        best = min(times["off"])
        print(
            f"\n{runtime}: tree reduction of {args.leaves - 1} tasks, {args.repeat} rounds"
            " (median; the fastest round; 'paired', the median over rounds of the ratio"
            " to metrics off in the same round, which cancels the machine's drift from one"
            " minute to the next, with a 90% bootstrap interval, and the time it adds per task; and the same for the CPU-seconds the round used"
            f" {'in this process' if runtime == 'in-process' else 'on the whole machine'})"
        )
        for name, ts in times.items():
            median, low = statistics.median(ts), min(ts)
            lo, hi = interval(ts, times["off"])
            print(
                f"  metrics {name:<14} median {median * 1e3:7.1f} ms {(median / base - 1) * 100:+6.1f}%"
                f"   min {low * 1e3:7.1f} ms {(low / best - 1) * 100:+6.1f}%"
                f"   paired {paired(ts, times['off']) * 100:+6.1f}%"
                f" [{lo * 100:+.1f}, {hi * 100:+.1f}]"
                f" {per_task(ts, times['off']):+5.2f} us/task"
                f"   cpu {statistics.median(cpus[name]):6.2f} s"
                f" paired {paired(cpus[name], cpus['off']) * 100:+6.1f}%"
            )
            results.append(Result(f"tr[{runtime}]", f"metrics {name}", ts))
            results.append(Result(f"tr[{runtime}] cpu", f"metrics {name}", cpus[name]))
    save_json(results, args.json)


if __name__ == "__main__":
    main()
