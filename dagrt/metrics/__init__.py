"""Metrics as events: models, the buffered writer, readers and the report.

* :mod:`dagrt.metrics.events`: the event models (and their wire form).
* :class:`MetadataStorage` and :class:`FlushPolicy`: write events in batches.
* :func:`read_run`, :func:`read_graph`, :func:`list_runs`: read them back.
* :mod:`dagrt.metrics.report`: the HTML report (``dagrt report RUN_ID``).
"""

from __future__ import annotations

from .events import Event as Event
from .events import RunFinished as RunFinished
from .events import RunSubmitted as RunSubmitted
from .events import TaskExecutionMetrics as TaskExecutionMetrics
from .events import TaskFailed as TaskFailed
from .events import TaskFinished as TaskFinished
from .events import TaskStarted as TaskStarted
from .events import Transfer as Transfer
from .read import RunGraph as RunGraph
from .read import RunSummary as RunSummary
from .read import alist_runs as alist_runs
from .read import aread_graph as aread_graph
from .read import aread_run as aread_run
from .read import list_runs as list_runs
from .read import read_graph as read_graph
from .read import read_run as read_run
from .store import FlushPolicy as FlushPolicy
from .store import MetadataStorage as MetadataStorage

__all__ = [
    "Event",
    "FlushPolicy",
    "MetadataStorage",
    "RunFinished",
    "RunGraph",
    "RunSubmitted",
    "RunSummary",
    "TaskExecutionMetrics",
    "TaskFailed",
    "TaskFinished",
    "TaskStarted",
    "Transfer",
    "alist_runs",
    "aread_graph",
    "aread_run",
    "list_runs",
    "read_graph",
    "read_run",
]
