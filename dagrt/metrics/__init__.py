"""Metrics as events: models, their wire form, the buffered writer, readers and the report.

* :mod:`~dagrt.metrics.events`: the event models; :mod:`~dagrt.metrics.wire`: their
  wire form (and the batch decoder every reader uses); :mod:`~dagrt.metrics.recorder`:
  wire events built cheaply on hot paths.
* :class:`MetadataStorage` (:mod:`~dagrt.metrics.writer`) and :class:`FlushPolicy`
  (:mod:`~dagrt.metrics.policy`): write events in batches; :mod:`~dagrt.metrics.plan`
  plans a write, :mod:`~dagrt.metrics.runs_index` says what it does to the runs index.
* :func:`read_run`, :func:`read_graph`, :func:`list_runs`, :func:`run_summary`,
  :func:`wait_for_run`, :func:`read_log`: read them back (each with an async twin;
  :mod:`~dagrt.metrics.read`); a run's graph record is :mod:`~dagrt.metrics.run_graph`;
  :func:`prune` deletes old runs.
* :mod:`~dagrt.metrics.analysis`: a run's figures; :mod:`~dagrt.metrics.report`: the
  HTML report (``dagrt report RUN_ID``).
"""

from __future__ import annotations

from .events import RUN_ENDED as RUN_ENDED
from .events import Event as Event
from .events import EventsDropped as EventsDropped
from .events import HoldEnded as HoldEnded
from .events import RunFinished as RunFinished
from .events import RunSubmitted as RunSubmitted
from .events import TaskExecutionMetrics as TaskExecutionMetrics
from .events import TaskFailed as TaskFailed
from .events import TaskFinished as TaskFinished
from .events import TasksFinished as TasksFinished
from .events import TaskStarted as TaskStarted
from .events import Transfer as Transfer
from .events import Transfers as Transfers
from .events import WorkerHeartbeat as WorkerHeartbeat
from .events import WorkerStarted as WorkerStarted
from .events import WorkerStopped as WorkerStopped
from .policy import FlushPolicy as FlushPolicy
from .prune import Pruned as Pruned
from .prune import aprune as aprune
from .prune import prune as prune
from .read import RunSummary as RunSummary
from .read import alist_runs as alist_runs
from .read import aread_graph as aread_graph
from .read import aread_log as aread_log
from .read import aread_run as aread_run
from .read import arun_summary as arun_summary
from .read import await_for_run as await_for_run
from .read import list_runs as list_runs
from .read import read_graph as read_graph
from .read import read_log as read_log
from .read import read_run as read_run
from .read import run_summary as run_summary
from .read import wait_for_run as wait_for_run
from .run_graph import RunGraph as RunGraph
from .wire import expand as expand
from .wire import from_wire as from_wire
from .writer import MetadataStorage as MetadataStorage

__all__ = [
    "RUN_ENDED",
    "Event",
    "EventsDropped",
    "FlushPolicy",
    "HoldEnded",
    "MetadataStorage",
    "Pruned",
    "RunFinished",
    "RunGraph",
    "RunSubmitted",
    "RunSummary",
    "TaskExecutionMetrics",
    "TaskFailed",
    "TaskFinished",
    "TaskStarted",
    "TasksFinished",
    "Transfer",
    "Transfers",
    "WorkerHeartbeat",
    "WorkerStarted",
    "WorkerStopped",
    "alist_runs",
    "aprune",
    "aread_graph",
    "aread_log",
    "aread_run",
    "arun_summary",
    "await_for_run",
    "expand",
    "from_wire",
    "list_runs",
    "prune",
    "read_graph",
    "read_log",
    "read_run",
    "run_summary",
    "wait_for_run",
]
