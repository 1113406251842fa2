"""Storage backends: one interface, each method in a sync and an async form.

* :class:`Storage`: the interface (``get``/``aget``, ``xadd``/``axadd``, ...).
* :class:`InMemoryStorage`: in this process; thread-safe and loop-safe.
* :class:`RedisStorage`: a Redis-compatible server, configured by URL.
* :class:`RedisServer`: start a private server process (tests, ``LocalCluster``).
* :mod:`dagrt.storage.commands`: command builders for :meth:`Storage.pipeline`.
"""

from __future__ import annotations

from . import _commands as commands
from .base import Script as Script
from .base import Storage as Storage
from .memory import InMemoryStorage as InMemoryStorage
from .redis import RedisConfig as RedisConfig
from .redis import RedisStorage as RedisStorage
from .server import RedisServer as RedisServer
from .server import find_server_binary as find_server_binary

__all__ = [
    "InMemoryStorage",
    "RedisConfig",
    "RedisServer",
    "RedisStorage",
    "Script",
    "Storage",
    "commands",
    "connect",
    "find_server_binary",
]


def connect(url: str | None = None, **options: object) -> Storage:
    """A storage for ``url``: ``memory://`` (or ``None``) in this process, else Redis."""
    if url is None or url == "memory://":
        return InMemoryStorage()
    return RedisStorage(url, **options)  # type: ignore[arg-type]
