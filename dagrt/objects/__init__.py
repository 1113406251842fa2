"""The data plane: large outputs stay on the host that made them (a shared-memory
object store per host), consumers there map them, consumers elsewhere fetch them
directly; Redis records where each one is (:mod:`.location`)."""

from .location import Location, is_location, this_host
from .plane import DataPlane
from .store import HostStore, ObjectCorrupt, ObjectMissing, StoreError, default_root, namespace_of
from .transfer import DataServer, TransferError, fetch

__all__ = [
    "DataPlane",
    "DataServer",
    "HostStore",
    "Location",
    "ObjectCorrupt",
    "ObjectMissing",
    "StoreError",
    "TransferError",
    "default_root",
    "fetch",
    "is_location",
    "namespace_of",
    "this_host",
]
