"""Timing helpers shared by the benchmarks: alternate systems, repeat, report medians.

Every benchmark runs all of its systems in one process tree, interleaved
(A, B, A, B, ...) so that a slow moment of the machine hits every system
alike, and prints medians and ratios against a baseline system.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Result:
    workload: str
    system: str
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def measure(
    workload: str,
    systems: dict[str, Callable[[], Any]],
    *,
    repeat: int = 5,
    warmup: int = 1,
    check: Callable[[str, Any], None] | None = None,
) -> dict[str, Result]:
    """Time each system ``repeat`` times, interleaved, after ``warmup`` untimed runs."""
    results = {name: Result(workload, name) for name in systems}
    for round_ in range(warmup + repeat):
        for name, fn in systems.items():
            gc.collect()
            t0 = time.perf_counter()
            value = fn()
            elapsed = time.perf_counter() - t0
            if check is not None:
                check(name, value)
            if round_ >= warmup:
                results[name].seconds.append(elapsed)
    return results


def table(results: list[Result], baseline: str) -> str:
    """A plain-text table of medians with ``baseline / system`` speed-up ratios."""
    by_workload: dict[str, dict[str, Result]] = {}
    for r in results:
        by_workload.setdefault(r.workload, {})[r.system] = r
    systems = list(dict.fromkeys(r.system for r in results))
    head = f"{'workload':<22}" + "".join(f"{s:>24}" for s in systems)
    lines = [head, "-" * len(head)]
    for workload, row in by_workload.items():
        base = row.get(baseline)
        cells = []
        for s in systems:
            r = row.get(s)
            if r is None:
                cells.append(f"{'-':>24}")
                continue
            ratio = f" ({base.median / r.median:5.1f}x)" if base and s != baseline else ""
            cells.append(f"{r.median * 1e3:>14.1f} ms{ratio:>8}")
        lines.append(f"{workload:<22}" + "".join(cells))
    lines.append(f"(ratio = {baseline} median / system median; higher is faster than {baseline})")
    return "\n".join(lines)


def save_json(results: list[Result], path: Path, **meta: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "meta": meta,
        "results": [
            {
                "workload": r.workload,
                "system": r.system,
                "seconds": r.seconds,
                "median": r.median,
                **r.extra,
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(payload, indent=2))
