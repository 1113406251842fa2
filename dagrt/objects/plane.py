"""A worker's side of the data plane: put outputs in the host store, get inputs from it.

:class:`DataPlane` joins this host's :class:`~.store.HostStore` and answers the
two questions the worker asks:

* :meth:`DataPlane.put`: may this output stay on the host? If it is large
  enough (``min_bytes``: smaller values cost less as a Redis round trip than as
  a file and a mapping) and the store has room, it is written there and its
  :class:`~.location.Location` is what the ``complete`` script records in Redis;
  otherwise ``None`` and the value goes to Redis as before.
* :meth:`DataPlane.get`: the frame of an output recorded at a location: mapped
  from this host's store (made here, or fetched here before), else fetched from
  the endpoint the location names (:func:`~.transfer.fetch`) and kept in this
  host's store for its other consumers. How it came is said too (``"map"`` or
  ``"direct"``). An object that cannot be had raises a
  :class:`~.store.StoreError`; the worker then computes it again.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import anyio.to_thread

from ..keyring import Keyring
from ..serialize import Frame
from .location import Location
from .store import HostStore, ObjectMissing
from .transfer import fetch

__all__ = ["DataPlane"]

MAP, DIRECT = "map", "direct"


class DataPlane:
    """This host's store, as one worker uses it (see the module's text)."""

    def __init__(
        self,
        store: HostStore,
        host: str,
        *,
        min_bytes: int,
        address: str = "",
        timeout: float = 30.0,
        keyring: Keyring | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring  # checks what is fetched from other hosts (dagrt.sealing)
        self.host = host
        self.min_bytes = min_bytes
        self.address = address
        self.timeout = timeout
        self.limiter = anyio.CapacityLimiter(4)  # transfers and writes at once

    def is_at(self, host: str, root: str) -> bool:
        """Is this the store ``root`` of host ``host`` (a client's, who maps from it)?"""
        return host == self.host and root == str(self.store.root)

    def wants(self, nbytes: int) -> bool:
        return nbytes >= self.min_bytes

    async def put(self, run_id: str, index: int, frame: bytes | Frame) -> Location | None:
        """Write an output to the store: its location, or None (too small, no room)."""
        size = len(frame)
        if not self.wants(size):
            return None
        stored = await anyio.to_thread.run_sync(
            self.store.put, run_id, index, frame, limiter=self.limiter
        )
        return Location(self.host, size, self.address) if stored else None

    def get_sync(self, run_id: str, index: int, where: Location) -> tuple[memoryview, str]:
        """The object's bytes and how they came (blocking; see :meth:`get`)."""
        try:
            return self.store.map(run_id, index, where.size), MAP
        except ObjectMissing:
            if where.host == self.host:
                raise  # made on this host and gone: nowhere else has it
        view = fetch(
            where.address,
            run_id,
            index,
            where.size,
            self.store,
            timeout=self.timeout,
            keyring=self.keyring,
        )
        return view, DIRECT

    async def get(self, run_id: str, index: int, where: Location) -> tuple[memoryview, str]:
        """The object's bytes (mapped, or fetched from its host) and how they came."""
        return await anyio.to_thread.run_sync(
            functools.partial(self.get_sync, run_id, index, where), limiter=self.limiter
        )

    def drop_run(self, run_id: str) -> Any:
        return self.store.drop_run(run_id)
