"""SVD of a tall-and-skinny matrix (m x n, m >> n) by blocked TSQR.

A's p row blocks each get a QR; the R factors (picked from each QR by a tiny
task that runs where the QR did, so the large Q stays there) are stacked two by
two and factored again up a tree; the SVD of the final R gives S and V, and U is
put together per block by carrying the left factor back down the tree. Tasks:
p generate, p QR, p R picks, p - 1 combines, 1 SVD of R, p - 1 down steps, p U
blocks, 1 assembly: 6p.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import dagrt

__all__ = ["BENCH", "DEFAULTS", "build", "check", "n_tasks", "reference", "tsqr"]

DEFAULTS: dict[str, Any] = {"m": 2_000, "n": 20, "blocks": 5, "seed": 0}
BENCH: dict[str, Any] = {"m": 400_000, "n": 100, "blocks": 16, "seed": 0}


def _block(m: int, n: int, blocks: int, seed: int, i: int) -> np.ndarray:
    bounds = np.linspace(0, m, blocks + 1).astype(int)
    rng = np.random.default_rng([seed, i])
    return rng.standard_normal((int(bounds[i + 1] - bounds[i]), n))


@dagrt.task
def generate(m: int, n: int, blocks: int, seed: int, i: int) -> np.ndarray:
    return _block(m, n, blocks, seed, i)


@dagrt.task
def qr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, r = np.linalg.qr(a)
    return q, r


@dagrt.task
def r_of(qr_out: tuple[np.ndarray, np.ndarray]) -> tuple[None, np.ndarray]:
    """The R factor alone (what the tree above needs)."""
    return None, qr_out[1]


@dagrt.task
def combine(
    left: tuple[np.ndarray, np.ndarray], right: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """QR of the two R factors stacked."""
    q, r = np.linalg.qr(np.vstack([left[1], right[1]]))
    return q, r


@dagrt.task
def down(node: tuple[np.ndarray, np.ndarray], m: Any, part: int) -> tuple[np.ndarray, np.ndarray]:
    """This node's left factor times the one handed down: the two halves for its children."""
    q = node[0]
    mm = m[part] if part >= 0 else m
    full = q @ mm
    half = q.shape[0] // 2
    return full[:half], full[half:]


@dagrt.task
def leaf(node: tuple[np.ndarray, np.ndarray], m: Any, part: int) -> np.ndarray:
    return node[0] @ (m[part] if part >= 0 else m)


@dagrt.task
def svd_r(root: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(root[1], full_matrices=False)
    return u, s, vt


@dagrt.task
def eye(size: int) -> np.ndarray:
    return np.eye(size)


@dagrt.task
def assemble(
    u_blocks: list[np.ndarray], usv: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.vstack(u_blocks), usv[1], usv[2]


def tsqr(parts: list[Any]) -> tuple[Any, Any]:
    """The QR tree over row blocks: ``(root, down_pass)``.

    ``root`` produces the root's ``(Q, R)``; ``down_pass(m, part)`` gives, for a
    node producing an ``n x n`` matrix (``m[part]``, or ``m`` itself when
    ``part < 0``) to put on the left of the root's Q, the nodes of the blocks of
    ``Q_total @ M`` in row order.
    """
    leaves = [qr(p) for p in parts]
    # The tree climbs on the R factors only; the leaves keep their Q for the way down.
    level: list[tuple[Any, Any]] = [(r_of(x), ("leaf", x)) for x in leaves]
    while len(level) > 1:
        nxt = [
            (combine(level[i][0], level[i + 1][0]), (level[i], level[i + 1]))
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    root = level[0]

    def down_pass(m: Any, part: int) -> list[Any]:
        out: list[Any] = []
        stack = [(root, m, part)]
        while stack:
            (node, children), mm, pp = stack.pop()
            if children[0] == "leaf":
                out.append(leaf(children[1], mm, pp))
                continue
            halves = down(node, mm, pp)
            stack.append((children[1], halves, 1))
            stack.append((children[0], halves, 0))
        return out

    return root[0], down_pass


def _check(m: int, n: int, blocks: int) -> None:
    if blocks < 1 or n < 1 or m < n * blocks:
        raise ValueError(
            f"svd1 needs m >= n * blocks (tall and skinny), got m={m}, n={n}, blocks={blocks}"
        )


def build(
    m: int = DEFAULTS["m"],
    n: int = DEFAULTS["n"],
    blocks: int = DEFAULTS["blocks"],
    seed: int = DEFAULTS["seed"],
) -> dagrt.Node:
    _check(m, n, blocks)
    root, down_pass = tsqr([generate(m, n, blocks, seed, i) for i in range(blocks)])
    usv = svd_r(root)
    return assemble(down_pass(usv, 0), usv)


def n_tasks(blocks: int = DEFAULTS["blocks"], **_: Any) -> int:
    return 6 * blocks


def matrix(m: int, n: int, blocks: int, seed: int) -> np.ndarray:
    return np.vstack([_block(m, n, blocks, seed, i) for i in range(blocks)])


def reference(
    m: int = DEFAULTS["m"],
    n: int = DEFAULTS["n"],
    blocks: int = DEFAULTS["blocks"],
    seed: int = DEFAULTS["seed"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _check(m, n, blocks)
    a = matrix(m, n, blocks, seed)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return u, s, vt


def check(result: Any, expected: Any) -> bool:
    u, s, vt = result
    eu, es, evt = expected
    a = (eu * es) @ evt
    return bool(
        np.allclose(s, es)
        and np.allclose((u * s) @ vt, a)
        and np.allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-8)
    )
