"""What a worker can be told: :class:`WorkerSettings` (``dagrt worker``'s options)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import keys as K
from ..metrics.policy import FlushPolicy

__all__ = ["WorkerSettings"]


@dataclass
class WorkerSettings:
    # Stream entries in flight at once. Tiny tasks are run in batches, so a large
    # window is what makes them fast; tasks that run in threads are held to
    # threads + 1 in flight, so that heavy work is not hoarded by one worker.
    concurrency: int = 128
    threads: int | None = None  # threads for sync task functions (default: cores)
    name: str | None = None
    stream: str = K.tasks_stream()
    group: str = K.TASKS_GROUP
    claim_timeout: float = 30.0  # idle seconds before another worker takes an entry over
    heartbeat: float = 5.0
    burst: bool = False
    keep_children: bool = True  # run a ready child whose input is here (Wukong "become")
    cache_bytes: int = 256 * 1024 * 1024  # outputs kept in memory for local children
    secret: bytes | None = None
    graceful_timeout: float = 10.0  # seconds in-flight tasks get at shutdown
    connect_timeout: float = 30.0  # seconds to keep retrying the first connection
    block: float = 2.0  # seconds one stream read waits
    heartbeat_file: str | None = None  # touched on every heartbeat (container health checks)
    metrics: bool = True  # log task, transfer and worker events
    metrics_url: str | None = None  # the event log's server (default: the same as tasks)
    flush: FlushPolicy = field(default_factory=FlushPolicy)

    def __post_init__(self) -> None:
        for label in ("concurrency",):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an int >= 1, got {self.threads!r}")
        if self.claim_timeout <= 0 or self.heartbeat <= 0:
            raise ValueError("claim_timeout and heartbeat must be > 0")
        if not isinstance(self.flush, FlushPolicy):
            raise TypeError(f"flush must be a dagrt.metrics.FlushPolicy, got {self.flush!r}")

    @property
    def thread_count(self) -> int:
        """Threads for sync task functions: as set, else one per core."""
        return self.threads or os.cpu_count() or 1
