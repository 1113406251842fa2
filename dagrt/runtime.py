"""``Runtime``: what a :class:`~dagrt.Client` needs from the thing that runs its DAGs.

Two runtimes implement it: :class:`~dagrt.local.LocalRuntime` (this process) and
:class:`~dagrt.distributed.DistributedRuntime` (worker processes behind a server).
The client makes one, gives it its id, enters it, and calls only what is below.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from .caching import CachePlan
    from .graph import DAG
    from .metrics.recorder import RunRecorder
    from .storage import Storage

__all__ = ["Runtime", "new_client_id"]


def new_client_id() -> str:
    """A client's id: in its runs' meta, its events and its runs-submitted entries."""
    return f"client-{os.getpid()}-{os.urandom(2).hex()}"


class Runtime(Protocol):
    """What a client needs from the thing that runs its DAGs."""

    #: The id of the client that submits the runs (written into each run it stores).
    client_id: str

    @property
    def threads(self) -> int | None:
        """Threads of this process that run sync task functions; ``None`` when tasks run
        in worker processes (then this process logs no worker or task events)."""

    @property
    def url(self) -> str | None:
        """The server's URL (said in run-submitted events; the dashboard reads the event
        log there); ``None`` without a server."""

    @property
    def event_storage(self) -> Storage | None:
        """Where the client's event log goes unless told otherwise: the runtime's server;
        ``None`` if it has none (the client then keeps its log in memory)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def run(
        self,
        dag: DAG,
        run_id: str,
        recorder: RunRecorder | None = None,
        on_submitted: Callable[[float], None] | None = None,
        cache: CachePlan | None = None,
        priority: int = 0,
    ) -> list[Any]:
        """Run ``dag``; the values of its outputs in order, or its :class:`TaskError`.
        ``recorder`` takes the task events of a run in this process; ``on_submitted``
        hears the seconds a submission to a server took; ``cache`` says what the run
        reads from the cache and writes there (filled in: what was found, what was
        skipped), and whether it keeps what it finished if it does not finish.
        ``priority``: the run's, added to each task's (:mod:`dagrt.resources`)."""
        ...

    async def release(self, pins: list[str]) -> None:
        """Drop the persisted values kept under ``pins`` (:mod:`dagrt.persist`)."""
        ...

    def cancel(self, run_id: str) -> None:
        """Start no more tasks of ``run_id``: at once in this process, or as soon as the
        run's ``run()`` stops it on the server. Called on the event loop; no I/O here.
        The caller then cancels the task awaiting ``run()`` (the client does both)."""

    def progress(self, run_id: str, total: int) -> AsyncIterator[int]:
        """Tasks of ``run_id`` done so far, each time some complete, until all are or the
        run is gone; nothing for a runtime that does not report progress."""
        ...
