"""SVD of a square matrix, randomized (compressed) to rank k with power iterations.

A (n x n, in p row blocks, a quickly decaying spectrum) is sketched with a random
Omega: Y = A Omega, then q power iterations Y = A (A^T Y) (A^T Y summed over
blocks in a tree); TSQR of Y gives Q blocks; B = Q^T A (summed in a tree); the SVD
of the small B gives S, V and U = Q U_B. Tasks: 10p + q(3p - 1) + 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import dagrt

from .svd1 import eye, tsqr
from .trees import pairwise

__all__ = ["BENCH", "DEFAULTS", "build", "check", "n_tasks", "reference"]

DEFAULTS: dict[str, Any] = {"n": 400, "k": 10, "blocks": 4, "power": 1, "seed": 0}
BENCH: dict[str, Any] = {"n": 3_000, "k": 20, "blocks": 8, "power": 2, "seed": 0}
OVERSAMPLE = 10


def _spectrum(n: int) -> np.ndarray:
    return 0.7 ** np.arange(n)


def _v(n: int, seed: int) -> np.ndarray:
    """An orthonormal n x n matrix: the DCT-II basis with its columns shuffled and
    signs flipped by ``seed``. O(n^2) (0.3 s at n = 3000): a QR of a random matrix,
    O(n^3), took 3.3 s, one serial task that made up three quarters of the workflow
    on every runtime, so the benchmark measured LAPACK instead of the runtimes."""
    rng = np.random.default_rng([seed, 999])
    order = rng.permutation(n)
    rows = np.arange(n)[:, None] + 0.5
    v = np.cos((np.pi / n) * rows * order) * np.sqrt(2.0 / n)
    v[:, order == 0] /= np.sqrt(2.0)  # the constant column: norm 1 too
    return v * rng.choice([-1.0, 1.0], size=n)


def _block(n: int, blocks: int, seed: int, i: int, v: np.ndarray) -> np.ndarray:
    bounds = np.linspace(0, n, blocks + 1).astype(int)
    rng = np.random.default_rng([seed, i])
    g = rng.standard_normal((int(bounds[i + 1] - bounds[i]), n)) / np.sqrt(n)
    return (g * _spectrum(n)) @ v.T


@dagrt.task
def right_vectors(n: int, seed: int) -> np.ndarray:
    return _v(n, seed)


@dagrt.task
def generate(n: int, blocks: int, seed: int, i: int, v: np.ndarray) -> np.ndarray:
    return _block(n, blocks, seed, i, v)


@dagrt.task
def omega(n: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 12345]).standard_normal((n, width))


@dagrt.task
def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b


@dagrt.task
def t_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.T @ b


@dagrt.task
def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


@dagrt.task
def svd_small(b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(b, full_matrices=False)
    return u[:, :k], s[:k], vt[:k]


@dagrt.task
def u_block(q: np.ndarray, usv: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    return q @ usv[0]


@dagrt.task
def assemble(
    u_blocks: list[np.ndarray], usv: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.vstack(u_blocks), usv[1], usv[2]


def _check(n: int, k: int, blocks: int, power: int) -> None:
    width = k + OVERSAMPLE
    if k < 1 or blocks < 1 or power < 0 or n < width * blocks:
        raise ValueError(
            f"svd2 needs n >= (k + {OVERSAMPLE}) * blocks, k >= 1, power >= 0; "
            f"got n={n}, k={k}, blocks={blocks}, power={power}"
        )


def build(
    n: int = DEFAULTS["n"],
    k: int = DEFAULTS["k"],
    blocks: int = DEFAULTS["blocks"],
    power: int = DEFAULTS["power"],
    seed: int = DEFAULTS["seed"],
) -> dagrt.Node:
    _check(n, k, blocks, power)
    width = k + OVERSAMPLE
    v = right_vectors(n, seed)
    a = [generate(n, blocks, seed, i, v) for i in range(blocks)]
    sketch = omega(n, width, seed)
    y = [matmul(ai, sketch) for ai in a]
    for _ in range(power):
        z = pairwise(add, [t_matmul(ai, yi) for ai, yi in zip(a, y, strict=True)])
        y = [matmul(ai, z) for ai in a]
    _, down_pass = tsqr(y)
    q = down_pass(eye(width), -1)
    b = pairwise(add, [t_matmul(qi, ai) for qi, ai in zip(q, a, strict=True)])
    usv = svd_small(b, k)
    return assemble([u_block(qi, usv) for qi in q], usv)


def n_tasks(blocks: int = DEFAULTS["blocks"], power: int = DEFAULTS["power"], **_: Any) -> int:
    return 10 * blocks + power * (3 * blocks - 1) + 2


def matrix(n: int, blocks: int, seed: int) -> np.ndarray:
    v = _v(n, seed)
    return np.vstack([_block(n, blocks, seed, i, v) for i in range(blocks)])


def reference(
    n: int = DEFAULTS["n"],
    k: int = DEFAULTS["k"],
    blocks: int = DEFAULTS["blocks"],
    power: int = DEFAULTS["power"],
    seed: int = DEFAULTS["seed"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _check(n, k, blocks, power)
    u, s, vt = np.linalg.svd(matrix(n, blocks, seed), full_matrices=False)
    return u[:, :k], s[:k], vt[:k]


def check(result: Any, expected: Any) -> bool:
    """Singular values and the rank-k approximation agree with the exact SVD within the
    randomized SVD's own error: Halko, Martinsson and Tropp bound it by
    ``(1 + 9 sqrt(k + p) sqrt(n)) ** (1 / (2q + 1)) * s[k + p]``, about 1e-4 of the
    largest singular value for these spectra (0.7 ** i) and sizes. A runtime mistake
    (a block out of place, a stale input) is off by the order of ``s[0]``."""
    u, s, vt = result
    eu, es, evt = expected
    tol = 1e-4 * float(es[0])
    return bool(
        np.allclose(s, es, rtol=0, atol=tol)
        and np.allclose((u * s) @ vt, (eu * es) @ evt, rtol=0, atol=tol)
    )
