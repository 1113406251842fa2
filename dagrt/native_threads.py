"""The native thread budget: how many threads a task's native libraries may start.

NumPy's BLAS (OpenBLAS, MKL, BLIS, Accelerate), OpenMP and numexpr start one thread per
core by default, in every process, and use them from every thread that calls them. A
dagrt process runs several task threads and a host runs several dagrt processes: two
workers of two task threads on two cores could run eight BLAS threads at once, and a
GEMM then takes twice as long as with one. dagrt gives each process it runs tasks in a
budget of native threads per task thread::

    max(1, cores // (processes on the host * task threads per process))

and applies it through the libraries' environment variables (:data:`VARIABLES`), read
when a library loads, and through ``threadpoolctl`` (when installed) for libraries
already loaded:

* a worker (``dagrt worker``, :class:`~dagrt.LocalCluster`'s workers, ``dagrt cluster``,
  the compose pool) applies it at its start, before any task imports a library:
  ``--native-threads``, by default cores // task threads (a local cluster gives each of
  its workers its share of the host);
* the in-process runtime (``Client(processes=False)``) holds the caller's process to it
  while the client is open (:class:`Limits`) and gives the libraries their own limits
  back when it closes.

A task may ask for more: ``@task(threads=4)`` (one large GEMM that should use four
cores): :func:`widened` raises the process's limit for the length of its call.

The user's own setting always wins: if any of :data:`VARIABLES` is set in a process's
environment when dagrt would apply its budget, dagrt sets none of them, limits no
library, and widens nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = [
    "VARIABLES",
    "Limits",
    "budget",
    "cores",
    "info",
    "limit_process",
    "user_set",
    "widened",
]

#: what native libraries read to size their thread pools, when they load
VARIABLES = (
    "OMP_NUM_THREADS",  # OpenMP runtimes, and OpenBLAS/BLIS builds that use OpenMP
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",  # Apple Accelerate
    "NUMEXPR_NUM_THREADS",
)


def cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def budget(threads: int, processes: int = 1, on: int | None = None) -> int:
    """Native threads per task thread for ``processes`` processes of ``threads`` task
    threads each, on ``on`` cores (default: this process's)."""
    return max(1, (on or cores()) // max(1, processes * threads))


def user_set(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of :data:`VARIABLES` set in ``environ`` (default: this process's)."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in VARIABLES if env.get(name)}


def info() -> list[dict[str, Any]]:
    """The native thread pools loaded in this process and their sizes (``threadpoolctl``'s
    ``threadpool_info``; empty if it is not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return list(threadpool_info())


class _State:
    """What dagrt applied in this process (one budget per process)."""

    lock = threading.Lock()
    users = 0  # Limits entered and not left
    native = 0  # the budget applied; 0: none (the user's settings govern, or nothing yet)
    saved_env: dict[str, str | None] = {}  # noqa: RUF012 - one process-wide record
    restore: Any = None  # threadpoolctl's record of the limits libraries had before
    loaded_before: frozenset[str] = frozenset()
    wide: list[int] = []  # noqa: RUF012 - threads asked for by calls under way


def _apply(native: int) -> None:
    """Set the variables and limit loaded libraries (caller holds the lock)."""
    if user_set():
        return
    _State.saved_env = {name: os.environ.get(name) for name in VARIABLES}
    os.environ.update({name: str(native) for name in VARIABLES})
    _State.native = native
    controller = _controller()
    if controller is not None:
        _State.loaded_before = frozenset(lib.filepath for lib in controller.lib_controllers)
        _State.restore = controller.limit(limits=native)


def limit_process(native: int) -> None:
    """Hold this process to ``native`` threads per task thread for good (a worker
    process, at its start)."""
    with _State.lock:
        if not _State.native:
            _apply(native)


class Limits:
    """The caller's process held to ``native`` threads per task thread while entered
    (the in-process runtime). Nested and concurrent users share one limit: the first in
    applies it, the last out gives everything back: the variables as they were, the
    libraries loaded before their own limits, and libraries loaded meanwhile (at the
    budget, from the variables) the size they would have had, one thread per core."""

    def __init__(self, native: int) -> None:
        self.native = native

    def __enter__(self) -> Limits:
        with _State.lock:
            _State.users += 1
            if _State.users == 1 and not _State.native:
                _apply(self.native)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _State.lock:
            _State.users -= 1
            if _State.users == 0 and _State.native:
                _give_back()

    @property
    def applied(self) -> bool:
        """Did dagrt apply a budget (rather than the user's own settings governing)?"""
        return bool(_State.native)


def _give_back() -> None:
    for name, value in _State.saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _State.native = 0
    restore, _State.restore = _State.restore, None
    if restore is None:
        return
    restore.restore_original_limits()
    controller = _controller()
    if controller is not None:
        for lib in controller.lib_controllers:
            if lib.filepath not in _State.loaded_before:
                controller.set_num_threads(lib, cores())


@contextlib.contextmanager
def widened(threads: int) -> Iterator[None]:
    """Let this process's native libraries use ``threads`` threads while the block runs
    (a task that asked for them). The limits are the process's: tasks running beside it
    may use as many meanwhile. Back to the budget once the last such block ends; nothing
    changes where dagrt applied no budget (the user's settings govern)."""
    controller = _controller() if threads > _State.native > 0 else None
    if controller is None:
        yield
        return
    with _State.lock:
        _State.wide.append(threads)
        controller.limit(limits=max(_State.wide))
    try:
        yield
    finally:
        with _State.lock:
            _State.wide.remove(threads)
            if _State.native:
                controller.limit(limits=max(_State.wide, default=_State.native))


def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return _Control(ThreadpoolController())


class _Control:
    """A threadpoolctl controller whose limits are all set from one thread of dagrt's.

    OpenBLAS (0.3.31, NumPy's) lets only the thread that lowered its limit raise it
    again: a task thread that widened a limit the event loop's thread had lowered got
    nothing. So every change goes through one thread, whichever thread asks for it.
    """

    _thread: ThreadPoolExecutor | None = None

    def __init__(self, controller: Any) -> None:
        self._controller = controller
        self.lib_controllers = controller.lib_controllers

    @classmethod
    def _run(cls, fn: Callable[[], Any]) -> Any:
        if cls._thread is None:
            cls._thread = ThreadPoolExecutor(1, thread_name_prefix="dagrt-native-threads")
        return cls._thread.submit(fn).result()

    def limit(self, *, limits: int) -> Any:
        limiter = self._run(lambda: self._controller.limit(limits=limits))
        return _Restore(limiter)

    def set_num_threads(self, lib: Any, threads: int) -> None:
        self._run(lambda: lib.set_num_threads(threads))


class _Restore:
    def __init__(self, limiter: Any) -> None:
        self._limiter = limiter

    def restore_original_limits(self) -> None:
        _Control._run(self._limiter.restore_original_limits)
