"""Blocked matrix multiply: C = A @ B, A and B of n x n split into b x b blocks.

Tasks: one per input block of A and of B (generated from a seed, so inputs need
no transfer from the client), one product per (i, j, k), one sum per C block,
and one task assembling C: 2b^2 + b^3 + b^2 + 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import dagrt

__all__ = ["BENCH", "DEFAULTS", "build", "check", "n_tasks", "reference"]

DEFAULTS: dict[str, Any] = {"n": 120, "b": 3, "seed": 0}
BENCH: dict[str, Any] = {"n": 2000, "b": 4, "seed": 0}


def _block(n: int, b: int, seed: int, which: int, i: int, j: int) -> np.ndarray:
    size = n // b
    rng = np.random.default_rng([seed, which, i, j])
    return rng.standard_normal((size, size))


@dagrt.task
def block(n: int, b: int, seed: int, which: int, i: int, j: int) -> np.ndarray:
    return _block(n, b, seed, which, i, j)


@dagrt.task
def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b


@dagrt.task
def add_blocks(*parts: np.ndarray) -> np.ndarray:
    out = parts[0].copy()
    for part in parts[1:]:
        out += part
    return out


@dagrt.task
def assemble(rows: list[list[np.ndarray]]) -> np.ndarray:
    return np.block(rows)


def _check(n: int, b: int) -> None:
    if b < 1 or n < b or n % b:
        raise ValueError(f"gemm needs n divisible into b >= 1 blocks, got n={n}, b={b}")


def build(
    n: int = DEFAULTS["n"], b: int = DEFAULTS["b"], seed: int = DEFAULTS["seed"]
) -> dagrt.Node:
    _check(n, b)
    a = [[block(n, b, seed, 0, i, k) for k in range(b)] for i in range(b)]
    bb = [[block(n, b, seed, 1, k, j) for j in range(b)] for k in range(b)]
    c = [
        [add_blocks(*[matmul(a[i][k], bb[k][j]) for k in range(b)]) for j in range(b)]
        for i in range(b)
    ]
    return assemble(c)


def n_tasks(n: int = DEFAULTS["n"], b: int = DEFAULTS["b"], seed: int = DEFAULTS["seed"]) -> int:
    return 2 * b * b + b**3 + b * b + 1


def inputs(n: int, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.block([[_block(n, b, seed, 0, i, k) for k in range(b)] for i in range(b)])
    bb = np.block([[_block(n, b, seed, 1, k, j) for j in range(b)] for k in range(b)])
    return a, bb


def reference(
    n: int = DEFAULTS["n"], b: int = DEFAULTS["b"], seed: int = DEFAULTS["seed"]
) -> np.ndarray:
    _check(n, b)
    a, bb = inputs(n, b, seed)
    return a @ bb


def check(result: Any, expected: Any) -> bool:
    return bool(np.allclose(result, expected))
