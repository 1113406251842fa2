"""What a worker can be told: :class:`WorkerSettings` (``dagrt worker``'s options).

Each field carries its meaning and bounds: ``dagrt worker`` derives its flags,
defaults and help from them (:mod:`dagrt.options`).
"""

from __future__ import annotations

import functools

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import keys as K
from .. import native_threads
from ..keyring import Keyring
from ..metrics.policy import FlushPolicy
from ..resources import check_resources
from ..storage.redis import RedactsURLs

__all__ = ["WorkerSettings"]


class WorkerSettings(RedactsURLs, BaseModel):
    """A worker's settings: ``WorkerSettings(concurrency=16, ...)``, checked when made
    (a bad value raises :class:`pydantic.ValidationError`, a ``ValueError``)."""

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    concurrency: int = Field(
        128,
        ge=1,
        description="stream entries in flight: tiny tasks run in batches, threaded ones are"
        " held to threads + 1 so that one worker does not hoard heavy work",
    )
    threads: int | None = Field(
        None, ge=1, description="threads for sync task functions (default: one per core)"
    )
    native_threads: int | None = Field(
        None,
        ge=1,
        description="threads each task's native libraries (BLAS, OpenMP) may use (default:"
        " cores // threads; with several workers on a host, give each its share). Any of"
        " OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS... set in the environment"
        " wins",
    )
    name: str | None = Field(None, description="worker id (default: host-pid-random)")
    stream: str = Field(K.tasks_stream(), description="the tasks stream")
    group: str = Field(K.TASKS_GROUP, description="the workers' consumer group")
    claim_timeout: float = Field(
        30.0, gt=0, description="seconds before a silent worker's tasks are taken over"
    )
    heartbeat: float = Field(5.0, gt=0, description="seconds between heartbeats")
    burst: bool = Field(False, description="exit once the stream is drained")
    keep_children: bool = Field(
        True,
        description="keep a child that became ready on this worker to run it here, where its"
        " input is (Wukong's 'become')",
    )
    cache_bytes: int = Field(
        256 * 1024 * 1024, ge=0, description="bytes of outputs kept in memory for local children"
    )
    store: str | None = Field(
        None,
        description="directory of this host's object store, shared by the host's workers"
        " (a tmpfs such as /dev/shm/...; 'auto': one under /dev/shm/dagrt-<uid> for this"
        " server's pool): large outputs stay"
        " there and other hosts fetch them from this worker; unset: every output goes to"
        " the server",
    )
    store_bytes: int | None = Field(
        None,
        ge=0,
        description="bytes the host's object store may hold (default: half of its"
        " filesystem); beyond them outputs go to the server",
    )
    store_min_bytes: int = Field(
        128 * 1024, ge=0, description="outputs at least this large go to the object store"
    )
    host_id: str | None = Field(
        None,
        description="this host's name in the data plane: workers with one host id share one"
        " object store (default: the machine's host name)",
    )
    data_bind: str = Field(
        "127.0.0.1:0",
        description="address of this worker's data endpoint, host:port (port 0: any free"
        " one); 0.0.0.0:PORT serves other machines",
    )
    data_advertise: str | None = Field(
        None,
        description="host name or IP other hosts reach the data endpoint by (default: the"
        " bound address; this machine's address when bound to 0.0.0.0)",
    )
    preload: str | None = Field(
        None,
        description="modules to import when the worker starts, joined by commas (default:"
        " numpy, if it is installed; 'none': none). A module that two task threads import for"
        " the first time at once (or a task while an input of its kind is unpickled) can"
        " be seen half-initialized",
    )
    resources: dict[str, float] | None = Field(
        None,
        description="what this worker has, name=amount joined by commas (gpu=2,memory=32GB):"
        " it runs the tasks that need them (@task(resources=...)), at once no more than"
        " the amounts allow",
    )
    unauthenticated: bool = Field(
        False,
        description="serve a server that is not on loopback without a secret (by default a"
        " worker refuses: whoever can write to the server could run code on it)",
    )
    secret: bytes | None = Field(
        None, repr=False, description="key that signs task records (HMAC-SHA256)"
    )
    graceful_timeout: float = Field(
        10.0, ge=0, description="seconds in-flight tasks get to finish on SIGTERM"
    )
    connect_timeout: float = Field(
        30.0,
        ge=0,
        description="seconds to keep retrying the first connection while the server starts",
    )
    block: float = Field(2.0, gt=0, description="seconds one read of the stream waits")
    heartbeat_file: str | None = Field(
        None, description="touch this file on every heartbeat (container health checks)"
    )
    metrics: bool = Field(True, description="log task, transfer and worker events")
    metrics_url: str | None = Field(
        None, description="server of the event log, if not the tasks' server"
    )
    flush: FlushPolicy = Field(
        default_factory=FlushPolicy, description="when buffered events are written"
    )

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: bytes | None) -> bytes | None:
        Keyring.of(value)  # (a secret too short, say, raises here: a validation error)
        return value

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return check_resources(value)

    _url_fields = ("metrics_url",)  # (its repr redacts it; the secret is left out)

    @functools.cached_property
    def keyring(self) -> Keyring | None:
        """The secrets (``secret``: one a line or comma-separated, the signing one first)."""
        return Keyring.of(self.secret)

    @property
    def thread_count(self) -> int:
        """Threads for sync task functions: as set, else one per core."""
        return self.threads or native_threads.cores()

    @property
    def native_budget(self) -> int:
        """Native threads per task thread: as set, else this host's cores shared out."""
        return self.native_threads or native_threads.budget(self.thread_count)
