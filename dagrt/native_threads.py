"""The native thread budget: how many threads a task's native libraries may start.

NumPy's BLAS (OpenBLAS, MKL, BLIS, Accelerate), OpenMP and numexpr start one thread per
core by default, in every process, and use them from every thread that calls them. A
dagrt process runs several task threads and a host runs several dagrt processes: two
workers of two task threads on two cores could run eight BLAS threads at once, and a
GEMM then takes twice as long as with one. dagrt gives every process it runs tasks in
a budget of native threads per task thread::

    max(1, cores // (processes on the host * task threads per process))

and applies it before the libraries load, through their environment variables
(:data:`VARIABLES`): in the processes it starts (:class:`~dagrt.LocalCluster`'s workers,
``dagrt cluster``), in ``dagrt worker`` at its start (``--native-threads``, by default
cores // task threads: give each of several workers on one host its share), and, with
:class:`Limits`, in the caller's own process while an in-process client is open (there
the libraries are often loaded already: ``threadpoolctl``, when installed, limits those
and gives them their own limits back when the client closes).

A task may ask for more: ``@task(threads=4)`` (a large GEMM that should use 4 cores);
:func:`widened` raises the limit of this process for the length of its call.

The user's own setting always wins: if any of :data:`VARIABLES` is set in the
environment, dagrt sets none of them and limits no library.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "VARIABLES",
    "Limits",
    "budget",
    "environ_for",
    "info",
    "user_set",
    "widened",
]

#: what native libraries read to size their thread pools, at load time
VARIABLES = (
    "OMP_NUM_THREADS",  # OpenMP runtimes, and OpenBLAS/BLIS builds that use OpenMP
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",  # Apple Accelerate
    "NUMEXPR_NUM_THREADS",
)


def budget(threads: int, processes: int = 1, cores: int | None = None) -> int:
    """Native threads per task thread for ``processes`` processes of ``threads`` task
    threads each on ``cores`` cores (default: this machine's)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, processes * threads))


def user_set(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the user set (any of them turns dagrt's limits off)."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in VARIABLES if env.get(name)}


def environ_for(native: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to give a process started with ``native`` threads per task thread:
    every one of :data:`VARIABLES`, or none if the user set any."""
    if user_set(environ):
        return {}
    return {name: str(native) for name in VARIABLES}


def info() -> list[dict[str, Any]]:
    """The native thread pools loaded in this process and their sizes (``threadpoolctl``'s
    ``threadpool_info``; empty if it is not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return list(threadpool_info())


class Limits:
    """This process's native libraries held to ``native`` threads while entered, given
    their own limits back on exit (the in-process runtime; nested and concurrent users
    share one limit: the first in applies it, the last out restores it).

    Libraries that load while the limits hold read the variables set here; libraries
    already loaded are limited through ``threadpoolctl`` if it is installed. On exit the
    variables are as they were, libraries loaded before get their own limits back, and
    libraries loaded meanwhile get the size they would have had (one thread per core).
    """

    _lock = threading.Lock()
    _users = 0
    _saved_env: dict[str, str | None] = {}  # noqa: RUF012 - class-wide by design
    _restore: Any = None  # threadpoolctl's handle of the limits it applied
    _before: frozenset[str] = frozenset()  # libraries loaded before the limits

    def __init__(self, native: int) -> None:
        self.native = native

    def __enter__(self) -> Limits:
        cls = type(self)
        with cls._lock:
            cls._users += 1
            if cls._users == 1:
                cls._apply(self.native)
        return self

    def __exit__(self, *exc_info: object) -> None:
        cls = type(self)
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                cls._give_back()

    @classmethod
    def _apply(cls, native: int) -> None:
        cls._saved_env = {}
        cls._restore = None
        if user_set():
            return
        for name in VARIABLES:
            cls._saved_env[name] = os.environ.get(name)
            os.environ[name] = str(native)
        controller = _controller()
        if controller is not None:
            cls._before = frozenset(lib.filepath for lib in controller.lib_controllers)
            cls._restore = controller.limit(limits=native)

    @classmethod
    def _give_back(cls) -> None:
        for name, value in cls._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if cls._restore is None:
            return
        cls._restore.restore_original_limits()
        cls._restore = None
        controller = _controller()
        if controller is not None:  # loaded meanwhile, at our limit: their own size back
            for lib in controller.lib_controllers:
                if lib.filepath not in cls._before:
                    lib.set_num_threads(os.cpu_count() or 1)


_wide_lock = threading.Lock()
_wide: list[int] = []  # the threads asked for by calls under way


@contextlib.contextmanager
def widened(threads: int) -> Iterator[None]:
    """Let this process's native libraries use ``threads`` threads while the block runs
    (a task that asked for them); the limits are per process, so tasks running beside
    it may use as many. Back to what they were when the last such block ends."""
    controller = _controller()
    if controller is None or user_set():
        yield
        return
    with _wide_lock:
        if not _wide:
            widened.restore = controller.limit(limits=threads)  # type: ignore[attr-defined]
        elif threads > max(_wide):
            controller.limit(limits=threads)
        _wide.append(threads)
    try:
        yield
    finally:
        with _wide_lock:
            _wide.remove(threads)
            if not _wide:
                widened.restore.restore_original_limits()  # type: ignore[attr-defined]
            elif threads > max(_wide):
                controller.limit(limits=max(_wide))


def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()
