"""The worker process: consumes ready tasks from the stream and runs them.

``dagrt worker --redis URL`` starts one; see :class:`Worker` (:mod:`.lifecycle`),
whose module text tells what happens to one stream entry and where.
"""

from __future__ import annotations

from .lifecycle import Worker as Worker
from .settings import WorkerSettings as WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
