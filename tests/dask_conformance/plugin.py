"""A pytest plugin that runs Dask's own tests on dagrt: Dask's named schedulers
("sync", "threads", ...) and its default scheduler become ``dagrt.dask.get`` (Dask's
``assert_eq`` and many tests compute with ``scheduler="sync"`` by name). The number of
computations routed is printed at the end, so a run that routed nothing is seen."""

from __future__ import annotations

from typing import Any

import dask
import dask.base

import dagrt.dask

ROUTED = [0]
NAMES = ("sync", "synchronous", "single-threaded", "threads", "threading")


def routed(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    ROUTED[0] += 1
    return dagrt.dask.get(dsk, keys, **kwargs)


routed.persist = dagrt.dask.get.persist  # type: ignore[attr-defined]  # (Dask's protocol)


def pytest_configure(config: Any) -> None:
    for name in NAMES:
        dask.base.named_schedulers[name] = routed
    dask.config.set(scheduler=routed)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(f"dagrt-routed computations: {ROUTED[0]}")
