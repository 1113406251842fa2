"""An image pipeline on tiles: grayscale, blur, edge detection, reassembly.

One task loads (or generates) the image; per tile, ``cut`` takes the tile with a
2-pixel halo, then ``grayscale``, ``blur`` (3x3 mean) and ``edges`` (Sobel
magnitude) run on it, and ``assemble`` puts the tiles' cores back together. The
halo makes every tile's core exactly what the same pipeline gives on the whole
image: 4 tasks per tile, plus 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import dagrt

__all__ = ["BENCH", "DEFAULTS", "build", "check", "n_tasks", "pipeline", "reference"]

DEFAULTS: dict[str, Any] = {"height": 96, "width": 128, "tiles": 3, "seed": 0, "path": None}
BENCH: dict[str, Any] = {"height": 2048, "width": 2048, "tiles": 4, "seed": 0, "path": None}
HALO = 2


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A reproducible RGB image: gradients, discs and noise (uint8, height x width x 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [x / max(1, width) * 255, y / max(1, height) * 255, (x + y) / max(1, width + height) * 255],
        axis=-1,
    )
    for _ in range(8):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.05, 0.2) * min(height, width)
        mask = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@dagrt.task
def load(height: int, width: int, seed: int, path: str | None) -> np.ndarray:
    return read_image(path) if path is not None else make_image(height, width, seed)


def _gray(img: np.ndarray) -> np.ndarray:
    rgb = img.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _blur(gray: np.ndarray) -> np.ndarray:
    p = np.pad(gray, 1, mode="edge")
    h, w = gray.shape
    total = np.zeros_like(gray)
    for dy in range(3):
        for dx in range(3):
            total += p[dy : dy + h, dx : dx + w]
    return total / 9.0


def _edges(gray: np.ndarray) -> np.ndarray:
    p = np.pad(gray, 1, mode="edge")
    h, w = gray.shape
    gx = (p[0:h, 2:] + 2 * p[1 : h + 1, 2:] + p[2:, 2:]) - (
        p[0:h, 0:w] + 2 * p[1 : h + 1, 0:w] + p[2:, 0:w]
    )
    gy = (p[2:, 0:w] + 2 * p[2:, 1 : w + 1] + p[2:, 2:]) - (
        p[0:h, 0:w] + 2 * p[0:h, 1 : w + 1] + p[0:h, 2:]
    )
    return np.sqrt(gx * gx + gy * gy)


def pipeline(img: np.ndarray) -> np.ndarray:
    """The whole pipeline on one array (the reference, and what each tile runs)."""
    return _edges(_blur(_gray(img)))


@dagrt.task
def cut(img: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, Any]:
    """The tile ``box`` = (y0, y1, x0, x1) with its halo, and where its core sits."""
    y0, y1, x0, x1 = box
    h, w = img.shape[:2]
    ey0, ey1, ex0, ex1 = max(0, y0 - HALO), min(h, y1 + HALO), max(0, x0 - HALO), min(w, x1 + HALO)
    return {
        "pixels": img[ey0:ey1, ex0:ex1],
        "core": (y0 - ey0, y1 - ey0, x0 - ex0, x1 - ex0),
        "box": box,
    }


@dagrt.task
def grayscale(tile: dict[str, Any]) -> dict[str, Any]:
    return {**tile, "pixels": _gray(tile["pixels"])}


@dagrt.task
def blur(tile: dict[str, Any]) -> dict[str, Any]:
    return {**tile, "pixels": _blur(tile["pixels"])}


@dagrt.task
def edges(tile: dict[str, Any]) -> dict[str, Any]:
    cy0, cy1, cx0, cx1 = tile["core"]
    return {"pixels": _edges(tile["pixels"])[cy0:cy1, cx0:cx1], "box": tile["box"]}


@dagrt.task
def assemble(tiles: list[dict[str, Any]]) -> np.ndarray:
    h = max(t["box"][1] for t in tiles)
    w = max(t["box"][3] for t in tiles)
    out = np.zeros((h, w), dtype=np.float32)
    for t in tiles:
        y0, y1, x0, x1 = t["box"]
        out[y0:y1, x0:x1] = t["pixels"]
    return out


def _shape(height: int, width: int, path: str | Path | None) -> tuple[int, int]:
    if path is None:
        return height, width
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def boxes(height: int, width: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """A ``tiles`` x ``tiles`` grid of boxes covering the image."""
    if tiles < 1:
        raise ValueError(f"tiles must be >= 1, got {tiles}")
    ys = np.linspace(0, height, tiles + 1).astype(int)
    xs = np.linspace(0, width, tiles + 1).astype(int)
    return [
        (int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1]))
        for i in range(tiles)
        for j in range(tiles)
        if ys[i] < ys[i + 1] and xs[j] < xs[j + 1]
    ]


def build(
    height: int = DEFAULTS["height"],
    width: int = DEFAULTS["width"],
    tiles: int = DEFAULTS["tiles"],
    seed: int = DEFAULTS["seed"],
    path: str | Path | None = DEFAULTS["path"],
) -> dagrt.Node:
    h, w = _shape(height, width, path)
    img = load(h, w, seed, str(path) if path is not None else None)
    return assemble([edges(blur(grayscale(cut(img, box)))) for box in boxes(h, w, tiles)])


def n_tasks(
    height: int = DEFAULTS["height"],
    width: int = DEFAULTS["width"],
    tiles: int = DEFAULTS["tiles"],
    **_: Any,
) -> int:
    return 4 * len(boxes(height, width, tiles)) + 2


def reference(
    height: int = DEFAULTS["height"],
    width: int = DEFAULTS["width"],
    tiles: int = DEFAULTS["tiles"],
    seed: int = DEFAULTS["seed"],
    path: str | Path | None = DEFAULTS["path"],
) -> np.ndarray:
    img = read_image(path) if path is not None else make_image(height, width, seed)
    return pipeline(img)


def check(result: Any, expected: Any) -> bool:
    return bool(result.shape == expected.shape and np.allclose(result, expected, atol=1e-3))
