"""Where an output lives, as its Redis value says.

An output kept in a host's object store is recorded in its Redis key (by the
``complete`` script, in the step that releases its children) as a location
instead of the value: ``DGL1`` then msgpack ``[host, size, address]``: the host
whose store holds it, its size in bytes, and the ``host:port`` of a data
endpoint of that host. A stored value never starts with ``DGL1`` (a pickle
starts with ``0x80``, a frame with out-of-band buffers with ``DGB1``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..serialize import pack, unpack

__all__ = ["MAGIC", "Location", "is_location", "this_host"]

MAGIC = b"DGL1"


@dataclass(frozen=True, slots=True)
class Location:
    """An object in a host's store: which host, how many bytes, whom to ask for it."""

    host: str
    size: int
    address: str  # "host:port" of a data endpoint on that host ("" if none)

    def encode(self) -> bytes:
        return MAGIC + pack([self.host, self.size, self.address])

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Location:
        host, size, address = unpack(bytes(data[len(MAGIC) :]), what="object location")
        return cls(str(host), int(size), str(address))


def this_host() -> str:
    """This machine's host id, as workers and clients name it by default."""
    return socket.gethostname().split(".")[0]


def is_location(data: bytes | memoryview | None) -> bool:
    return data is not None and data[:4] == MAGIC  # (memoryview == bytes compares bytes)
