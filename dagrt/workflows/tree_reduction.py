"""Tree reduction: pairwise sums over N leaves, level by level (an odd one out moves up).

N - 1 ``add`` tasks for N >= 2 leaves, whether N is a power of two or not.
"""

from __future__ import annotations

from typing import Any

import dagrt

from .trees import pairwise

__all__ = ["BENCH", "DEFAULTS", "build", "check", "n_tasks", "reference"]

DEFAULTS: dict[str, Any] = {"n": 1000}
BENCH: dict[str, Any] = {"n": 16_384}


@dagrt.task
def add(x: int, y: int) -> int:
    return x + y


@dagrt.task
def identity(x: int) -> int:
    return x


def build(n: int = DEFAULTS["n"]) -> dagrt.Node:
    if n < 1:
        raise ValueError(f"tree_reduction needs n >= 1 leaves, got {n}")
    if n == 1:
        return identity(0)
    return pairwise(add, range(n))


def n_tasks(n: int = DEFAULTS["n"]) -> int:
    return max(1, n - 1)


def reference(n: int = DEFAULTS["n"]) -> int:
    return n * (n - 1) // 2


def check(result: Any, expected: Any) -> bool:
    return bool(result == expected)
