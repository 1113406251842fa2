"""Combining many pieces pairwise, level by level: the shape of every reduction here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["pairwise"]

T = TypeVar("T")


def pairwise(combine: Callable[[Any, Any], T], items: Iterable[Any]) -> T:
    """``combine`` applied to neighbours, level after level, down to one.

    ``items`` may be values or nodes (``combine`` a task builds the reduction
    tree as a DAG: ``n - 1`` calls, depth ``ceil(log2 n)``); an odd one out
    moves up to the next level unchanged.
    """
    level = list(items)
    if not level:
        raise ValueError("pairwise needs at least one item")
    while len(level) > 1:
        nxt = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]  # type: ignore[no-any-return]
