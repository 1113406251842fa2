"""dagrt: an asyncio-native distributed DAG runtime.

Write plain functions, make them tasks with ``@dagrt.task``, compose their
calls lazily, and run the graph with ``await client.compute(...)``.
"""

from __future__ import annotations

from . import dask as dask  # (Dask's scheduler protocol; imports Dask only when used)
from .caching import CacheOptions as CacheOptions
from .client import Client as Client
from .client import compute as compute
from .cluster import LocalCluster as LocalCluster
from .exceptions import AuthenticationError as AuthenticationError
from .exceptions import ClientClosedError as ClientClosedError
from .exceptions import DagrtError as DagrtError
from .exceptions import GraphError as GraphError
from .exceptions import IntegrityError as IntegrityError
from .exceptions import PersistedLostError as PersistedLostError
from .exceptions import ResourceError as ResourceError
from .exceptions import RunNotFoundError as RunNotFoundError
from .exceptions import RunStalledError as RunStalledError
from .exceptions import RunTimeoutError as RunTimeoutError
from .exceptions import SerializationError as SerializationError
from .exceptions import SignatureError as SignatureError
from .exceptions import StorageConnectionError as StorageConnectionError
from .exceptions import StorageError as StorageError
from .exceptions import TaskError as TaskError
from .exceptions import TaskTimeout as TaskTimeout
from .exceptions import TaskTimeoutError as TaskTimeoutError
from .exceptions import ValueTooLargeError as ValueTooLargeError
from .exceptions import WorkerLostError as WorkerLostError
from .futures import RunFuture as RunFuture
from .graph import DAG as DAG
from .graph import Node as Node
from .locality import LocalityOptions as LocalityOptions
from .tasks import TaskFunction as TaskFunction
from .tasks import task as task

__version__ = "0.1.0"

__all__ = [
    "DAG",
    "AuthenticationError",
    "CacheOptions",
    "Client",
    "ClientClosedError",
    "DagrtError",
    "GraphError",
    "LocalCluster",
    "LocalityOptions",
    "Node",
    "PersistedLostError",
    "RunFuture",
    "ResourceError",
    "RunNotFoundError",
    "RunStalledError",
    "RunTimeoutError",
    "SerializationError",
    "IntegrityError",
    "SignatureError",
    "StorageConnectionError",
    "StorageError",
    "TaskError",
    "TaskTimeout",
    "TaskTimeoutError",
    "TaskFunction",
    "ValueTooLargeError",
    "WorkerLostError",
    "compute",
    "task",
]

# Reprs and tracebacks name the public path (dagrt.Client), not the module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("dagrt."):
        _obj.__module__ = "dagrt"
del _name, _obj
