"""Helpers shared by test modules (``import helpers``: the tests directory is on sys.path)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio

import dagrt
from dagrt.storage import Storage


class Form:
    """One view of a storage for a test body: every call is awaited.

    ``sync`` runs the plain method in a worker thread; ``async`` awaits the
    ``a``-prefixed twin. The same test thus checks both forms.
    """

    def __init__(self, storage: Storage, form: str) -> None:
        self.storage = storage
        self.form = form

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.form == "async":
            return getattr(self.storage, "a" + name)  # type: ignore[no-any-return]
        method = getattr(self.storage, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

        return call

    async def scan(self, match: str | None = None) -> list[str]:
        if self.form == "async":
            return [k async for k in self.storage.ascan_iter(match)]
        return await anyio.to_thread.run_sync(lambda: list(self.storage.scan_iter(match)))


# --------------------------------------------------------------------------- tasks shared by tests


@dagrt.task
def add(x: int, y: int) -> int:
    return x + y


@dagrt.task
def inc(x: int) -> int:
    return x + 1


@dagrt.task
def total(parts: Any, *, scale: int = 1) -> int:
    return scale * (parts["left"][0] + parts["left"][1] + parts["right"][0][0])


@dagrt.task
def collect(*xs: Any) -> list[Any]:
    return list(xs)
