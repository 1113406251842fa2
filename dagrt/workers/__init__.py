"""The worker process: consumes ready tasks from the stream and runs them.

``dagrt worker --redis URL`` starts one; see :class:`Worker`.
"""

from __future__ import annotations

from .worker import Worker as Worker
from .worker import WorkerSettings as WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
