"""Workloads of the Wukong and Dask comparisons, as dagrt DAGs.

Each module has ``build(**params) -> Node`` (the DAG's output), ``reference(**params)``
(the same answer without dagrt), ``check(result, expected)`` (exact for integers
and words, tolerant for floats), ``n_tasks(**params)`` (the exact node count),
``DEFAULTS`` (small, for tests) and ``BENCH`` (benchmark sizes for a 2-core machine).
They need the ``workflows`` extra (numpy, pillow).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .trees import pairwise

__all__ = ["NAMES", "get", "pairwise"]

NAMES = ("tree_reduction", "gemm", "wordcount", "image_transform", "svd1", "svd2")


def get(name: str) -> ModuleType:
    """The workflow module called ``name``."""
    if name not in NAMES:
        raise ValueError(f"unknown workflow {name!r}; choose one of {', '.join(NAMES)}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        raise ImportError(
            f"workflow {name} needs its extra: pip install 'dagrt[workflows]' ({exc})"
        ) from exc
