"""Every error dagrt raises on purpose.

The tree::

    DagrtError
    ├── TaskError               a task raised; carries the remote traceback
    ├── SerializationError      a function, argument or result cannot be (de)serialized
    ├── GraphError              a DAG cannot be built from what was given (also a TypeError)
    ├── RunNotFoundError        no run with that id is known to the server
    ├── ClientClosedError       the client is not started, or already closed
    ├── WorkerLostError         a worker died and the task ran out of attempts
    ├── RunStalledError         a run has tasks left and no work queued, running or waiting
    ├── ResourceError           a task needs resources no live worker has
    ├── PersistedLostError      a persisted value was released, expired or is elsewhere
    ├── SignatureError          a task record is unsigned or forged (shared secret)
    │   └── IntegrityError      a stored value (an output, a cache entry) is unsealed or forged
    └── StorageError            the storage server refused or could not be reached
        ├── StorageConnectionError   unreachable, or the connection broke
        ├── AuthenticationError      wrong password / ACL user
        └── ValueTooLargeError       a value over the server's size limit

A run that is cancelled raises :class:`asyncio.CancelledError`, as awaiting any
cancelled asyncio future does.
"""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "DagrtError",
    "GraphError",
    "IntegrityError",
    "PersistedLostError",
    "RunNotFoundError",
    "ResourceError",
    "RunStalledError",
    "RunTimeoutError",
    "SerializationError",
    "SignatureError",
    "StorageConnectionError",
    "StorageError",
    "TaskError",
    "TaskTimeout",
    "TaskTimeoutError",
    "ValueTooLargeError",
    "WorkerLostError",
]


class DagrtError(Exception):
    """Base class of every error raised by dagrt itself."""


class TaskError(DagrtError):
    """A task raised an exception (after its retries).

    ``exception`` is the original exception object when it could be rebuilt on
    this side (always in-process), else ``None``; ``exc_type`` always names its
    type. ``remote_traceback`` is the traceback text captured where it ran.
    """

    def __init__(
        self,
        *,
        task: str,
        name: str,
        exc_type: str,
        message: str,
        remote_traceback: str = "",
        exception: BaseException | None = None,
        worker: str | None = None,
        attempt: int = 1,
        run_id: str | None = None,
    ) -> None:
        self.task = task
        self.name = name
        self.exc_type = exc_type
        self.message = message
        self.remote_traceback = remote_traceback
        self.exception = exception
        self.worker = worker
        self.attempt = attempt
        self.run_id = run_id
        super().__init__(self._render())

    def _render(self) -> str:
        where = f" on {self.worker}" if self.worker else ""
        text = f"task {self.task!r} ({self.name}) failed{where}: {self.exc_type}: {self.message}"
        if self.attempt > 1:
            text += f" (attempt {self.attempt})"
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip()
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_task_error, (self.to_record(), self.exception))

    def to_record(self) -> dict[str, Any]:
        """The JSON-able error record (what workers store beside the failure event)."""
        return {
            "task": self.task,
            "name": self.name,
            "exc_type": self.exc_type,
            "message": self.message,
            "traceback": self.remote_traceback,
            "worker": self.worker,
            "attempt": self.attempt,
            "run_id": self.run_id,
        }

    @classmethod
    def from_record(
        cls, record: dict[str, Any], exception: BaseException | None = None
    ) -> TaskError:
        if cls is TaskError and record.get("exc_type") == TIMEOUT_TYPE:
            cls = TaskTimeoutError  # (the same record: a subclass that says what it was)
        return cls(
            task=record["task"],
            name=record.get("name", record["task"]),
            exc_type=record.get("exc_type", "Exception"),
            message=record.get("message", ""),
            remote_traceback=record.get("traceback", ""),
            exception=exception,
            worker=record.get("worker"),
            attempt=int(record.get("attempt", 1)),
            run_id=record.get("run_id"),
        )


def _rebuild_task_error(record: dict[str, Any], exception: BaseException | None) -> TaskError:
    return TaskError.from_record(record, exception)


class TaskTimeout(DagrtError, TimeoutError):
    """Raised in place of a task's result when it ran longer than its timeout
    (``@task(timeout=...)``, or ``Client(task_timeout=...)``): a failure like any other,
    retried while the task has retries left. The client then raises
    :class:`TaskTimeoutError`."""

    @classmethod
    def of(cls, key: str, name: str, seconds: float, more: str = "") -> TaskTimeout:
        """The error of task ``key`` (function ``name``) past its ``seconds``."""
        return cls(f"task {key!r} ({name}) ran longer than its timeout of {seconds:g} s{more}")


TIMEOUT_TYPE = "dagrt.TaskTimeout"  # (exception_type_name of TaskTimeout: re-exported)


class TaskTimeoutError(TaskError, TimeoutError):
    """A task ran longer than its timeout on its last attempt (a :class:`TaskError`
    whose ``exc_type`` is ``dagrt.TaskTimeout``). An ``async def`` task was cancelled;
    a sync task's thread cannot be stopped: its result is discarded when it returns."""


class RunTimeoutError(DagrtError, TimeoutError):
    """A run went on longer than ``compute(..., timeout=...)`` allowed: it was cancelled."""


class SerializationError(DagrtError):
    """A function, argument or result could not be serialized or deserialized."""


class GraphError(DagrtError, TypeError):
    """What was given cannot be turned into a DAG."""


class RunNotFoundError(DagrtError, KeyError):
    """No run with that id is known."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "run not found"


class ClientClosedError(DagrtError, RuntimeError):
    """The client is not started (use ``async with Client(...)``) or already closed."""


class WorkerLostError(DagrtError):
    """A task's worker died on every attempt."""


class RunStalledError(DagrtError):
    """A running run has tasks left, yet nothing of it is queued, running, or waiting
    for a retry: it can never finish (a stream entry was lost or removed). The
    client's watchdog stops the run and raises this instead of waiting for ever."""


class ResourceError(DagrtError):
    """A task needs resources (``@task(resources=...)``) that no live worker has: at
    submission, or when the workers that had them are gone while its entry waits (the
    watchdog). The run never starts, or is stopped, instead of waiting for ever."""


class PersistedLostError(DagrtError):
    """A computation reads a persisted value (:meth:`dagrt.Client.persist`) that is not
    there any more: released (its handle was garbage-collected, or its client closed),
    past its time to live, or persisted on another server than the one this run uses."""


class SignatureError(DagrtError):
    """A task record is unsigned, or signed with another secret (or forged)."""


class IntegrityError(SignatureError):
    """A value read back (a task's output in storage, in an entry or from another host;
    a cache entry) is not sealed, or its seal does not match: forged, replayed from
    another run or task, or sealed with another secret. Nothing of it is unpickled;
    the message names the key (or the object) it came from."""


class StorageError(DagrtError):
    """The storage server refused a command or could not be reached."""


class StorageConnectionError(StorageError, ConnectionError):
    """The server cannot be reached, or the connection broke."""


class AuthenticationError(StorageError):
    """The server rejected the password or ACL user."""


class ValueTooLargeError(StorageError, ValueError):
    """A value is larger than the server accepts."""


def _runtime_dirs() -> tuple[str, ...]:
    """Where the frames that call a task come from: dagrt, anyio, asyncio, threads."""
    import asyncio
    import concurrent.futures

    import anyio

    mods = (__file__, anyio.__file__, asyncio.__file__, concurrent.futures.__file__)
    dirs = tuple(os.path.dirname(os.path.abspath(m or "")) + os.sep for m in mods)
    return (*dirs, os.path.abspath(threading.__file__ or ""))


_RUNTIME_DIRS = _runtime_dirs()
_USER_DIRS = (os.path.join(_RUNTIME_DIRS[0], "workflows") + os.sep,)  # tasks shipped with dagrt


def _is_runtime(filename: str) -> bool:
    return filename.startswith(_RUNTIME_DIRS) and not filename.startswith(_USER_DIRS)


def user_traceback(exc: BaseException) -> str:
    """The traceback text of ``exc`` without the runtime's frames in front of the user's code.

    dagrt's own frames, and the anyio/asyncio/thread-pool frames that call a
    task, are dropped from the front; what is left starts at the task function.
    """
    tb = exc.__traceback__
    while tb is not None and _is_runtime(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def exception_type_name(t: type) -> str:
    """``ValueError`` for builtins, ``package.module.Error`` otherwise."""
    mod = t.__module__
    return t.__qualname__ if mod in ("builtins", "__main__") else f"{mod}.{t.__qualname__}"
