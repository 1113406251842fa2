"""The task record: the contract between a client that submits a run and the workers.

A run's task table (``RunKeys.tasks``) maps each task's index to a compact
msgpack record, signed when the pool has a secret:

``[key, function, parents, children, slots, mode, arguments]``

* ``function`` indexes the run's function table (``RunKeys.meta`` field ``fns``,
  signed too): ``(digest, name, retries, retry_delay, threads[, options])`` per
  distinct function, whose pickled frame lives at ``dagrt:fn:<digest>`` (``options``:
  ``locality``, the run meta's locality fields that differ for its tasks,
  ``@task(locality=...)``; ``timeout``, the seconds a call may take; ``resources``,
  what a call holds while it runs: :mod:`dagrt.resources`);
* ``slots`` are flat ``(leaf index, parent position)`` pairs: where each parent's
  value goes among the call's leaves;
* ``arguments`` are the plain leaves (mode 0), a pickled ``(leaves, treedef)``
  (mode 1), or the digest of that pickle stored apart (mode 2, for large specs).

The client encodes (:func:`encode_record`, :func:`sign`); a worker verifies and
decodes (:func:`verify`, :func:`decode_functions`, :func:`decode_record`) into a
:class:`TaskRecord`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import keys as K
from .exceptions import SerializationError
from .serialize import Frame, dumps_frame, loads, unpack

if TYPE_CHECKING:
    from .graph import Node
    from .keyring import Keyring

__all__ = [
    "BIG_SPEC",
    "FunctionEntry",
    "MalformedRecord",
    "TaskRecord",
    "decode_functions",
    "decode_record",
    "encode_record",
    "load_spec",
    "sign",
    "spec_digest",
    "verify",
]

BIG_SPEC = 64 * 1024  # argument specs larger than this are stored apart, by content

#: one entry of a run's function table: (digest, name, retries, retry_delay, threads),
#: then, for a task function with more options, a map of them: ``locality``, the run
#: meta's locality fields that differ for its tasks (``{"cluster": "0", ...}``), and
#: ``timeout``, the seconds a call may take, and ``resources`` (name -> amount)
FunctionEntry = (
    tuple[str, str, int, float, int | None]
    | tuple[str, str, int, float, int | None, dict[str, Any]]
)


class MalformedRecord(ValueError):
    """A task record or function table that does not have the shape dagrt writes
    (a third party wrote it, or it was damaged): its task is never run."""


_MSGPACK_LEAVES = frozenset({int, float, str, bytes, bool, type(None)})
LEAVES, PICKLED, APART = 0, 1, 2  # how a record carries its arguments


@dataclass(slots=True)
class TaskRecord:
    """What a worker needs to run one task (decoded from its stored record)."""

    index: int
    key: str
    name: str
    fn: str  # digest of the pickled function
    parents: list[int]
    children: list[int]
    retries: int
    retry_delay: float
    threads: int | None  # native threads the task asked for (@task(threads=...))
    leaves: list[Any] | None  # None until the spec is loaded (big specs live apart)
    treedef: Any  # True: the leaves are the positional arguments
    slots: list[int]  # flat (leaf index, parent position) pairs
    spec_key: str | None = None
    spec_digest: str | None = None  # the content address of the spec stored apart
    function: int = 0  # its entry in the run's function table
    timeout: float | None = None  # seconds a call may take (@task(timeout=...))
    resources: dict[str, float] | None = None  # what a call holds (@task(resources=...))


# --------------------------------------------------------------------------- the client's side


def encode_record(
    node: Node, parents: Sequence[int], children: Sequence[int], fn_index: int
) -> tuple[list[Any], bytes | Frame | None]:
    """A node's record (a msgpack array), and its pickled arguments if too big to inline
    (the caller stores them apart and puts their :func:`spec_digest` in the record)."""
    leaves = node._leaves
    slots: list[int] = []
    if node._slots:
        leaves = list(leaves)
        for li, dj in node._slots:
            leaves[li] = None
            slots += (li, dj)
    if node._treedef is True and all(type(x) in _MSGPACK_LEAVES for x in leaves):
        return [node.key, fn_index, parents, children, slots, LEAVES, leaves], None
    spec = dumps_frame((leaves, node._treedef), what=f"arguments of task {node.key}")
    if isinstance(spec, bytes) and len(spec) <= BIG_SPEC:
        return [node.key, fn_index, parents, children, slots, PICKLED, spec], None
    return [node.key, fn_index, parents, children, slots, APART, None], spec


def spec_digest(frame: bytes | Frame) -> str:
    """The content address of an argument spec stored apart."""
    h = hashlib.sha256()
    for part in frame.parts if isinstance(frame, Frame) else (frame,):
        h.update(part)
    return h.hexdigest()


def sign(payload: bytes, keyring: Keyring | None, run_id: str, place: str) -> bytes:
    """A stored record: ``U`` + payload, or ``S`` + tag + payload, the tag binding the
    payload to its run and its place in it (a task's index, ``"fns"``, ``"shape"``):
    a record copied to another run or task does not verify there."""
    if keyring is None:
        return b"U" + payload
    return b"S" + keyring.sign("record", *_bound(run_id, place), payload) + payload


def _bound(run_id: str, place: str) -> tuple[bytes, ...]:
    # (a run id and a place hold no NUL: the message parses one way only)
    return (run_id.encode(), b"\0", place.encode(), b"\0")


# A run's task records are signed as one table: one tag over all of them, in index
# order, each with its length (one HMAC per run instead of one per task, for the
# client that writes them and for each worker that loads them).
TABLE = b"T"


def table_tag(keyring: Keyring, run_id: str, payloads: Sequence[bytes]) -> str:
    """The tag of run ``run_id``'s task records (their payloads by index), hex."""
    return keyring.sign("records", *_bound(run_id, "tasks"), *_table(payloads)).hex()


def _table(payloads: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
    parts: list[bytes | memoryview] = [len(payloads).to_bytes(8, "big")]
    for payload in payloads:
        parts += (len(payload).to_bytes(8, "big"), payload)
    return parts


def check_table(
    keyring: Keyring, run_id: str, stored: Mapping[bytes, bytes], n: int, tag: bytes | None
) -> None:
    """Check run ``run_id``'s ``n`` stored task records (``index -> T + payload``) against
    the table's ``tag`` (hex, from the run's meta); ``ValueError`` if one is missing,
    another one is there, or the tag does not match."""
    if tag is None:
        raise ValueError("the run's task records are not signed, but this worker requires it")
    try:
        payloads = [stored[str(i).encode()] for i in range(n)]
        raw = bytes.fromhex(tag.decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise ValueError("the run's task records are incomplete or their tag unreadable") from None
    if len(stored) != n or any(p[:1] != TABLE for p in payloads):
        raise ValueError("the run's task records are not the ones signed")
    table = _table([memoryview(p)[1:] for p in payloads])  # (no copies)
    if not keyring.check("records", raw, *_bound(run_id, "tasks"), *table):
        raise ValueError(
            "task record signature does not match (forged, copied from another run or"
            " task, or signed with another secret)"
        )


def cache_table_tag(keyring: Keyring, run_id: str, writes: Mapping[str, str]) -> str:
    """The tag of run ``run_id``'s cache table (task index -> ``<cache key>:<ttl>``: the
    entries its workers write), hex: a worker writes a cache entry (and seals it for
    that entry) only where the run's client said."""
    return keyring.sign("records", *_bound(run_id, "cache"), *_cache_table(writes)).hex()


def _cache_table(writes: Mapping[str, str]) -> list[bytes]:
    rows = sorted((int(i), v) for i, v in writes.items())
    return [b"%d\0%s\0" % (i, v.encode()) for i, v in rows]


def cache_table_ok(
    keyring: Keyring, run_id: str, stored: Mapping[bytes, bytes], tag: bytes | None
) -> bool:
    """Is the run's stored cache table (its ``cache`` hash) the one its client signed?"""
    try:
        writes = {k.decode(): v.decode() for k, v in stored.items()}
        raw = bytes.fromhex((tag or b"").decode())
        table = _cache_table(writes)
    except (UnicodeDecodeError, ValueError):
        return False
    return bool(raw) and keyring.check("records", raw, *_bound(run_id, "cache"), *table)


# --------------------------------------------------------------------------- the worker's side


def verify(stored: bytes, keyring: Keyring | None, run_id: str, place: str) -> bytes:
    """The payload of a stored record of run ``run_id`` at ``place``; raises
    ``ValueError`` if it is forged, unsigned, or signed for another run or place."""
    head = stored[:1]
    if head == b"S":
        tag, payload = stored[1:33], stored[33:]
        if keyring is not None and not keyring.check(
            "record", tag, *_bound(run_id, place), payload
        ):
            raise ValueError(
                "task record signature does not match (forged, copied from another run or"
                " task, or signed with another secret)"
            )
        return payload
    return _unsigned(stored, keyring)


def _record_payload(stored: bytes, keyring: Keyring | None) -> bytes:
    """A task record's payload: of a table the run context checked (``T``; see
    :func:`check_table`), or unsigned (``U``) where no secret is required."""
    if stored[:1] == TABLE:
        return stored[1:]
    return _unsigned(stored, keyring)


def _unsigned(stored: bytes, keyring: Keyring | None) -> bytes:
    """The payload of an unsigned record (``U``), where no secret is required."""
    if stored[:1] != b"U":
        raise ValueError("not a dagrt task record")
    if keyring is not None:
        raise ValueError("task record is not signed, but this worker requires signatures")
    return stored[1:]


def decode_functions(stored: bytes, keyring: Keyring | None, run_id: str) -> list[FunctionEntry]:
    """Run ``run_id``'s function table: ``(digest, name, retries, retry_delay, threads)``
    per function, and the locality fields of its own if it has any."""
    table = unpack(verify(stored, keyring, run_id, "fns"), what="function table")
    if not isinstance(table, list) or not all(
        isinstance(f, list | tuple)
        and len(f) in (5, 6)
        and isinstance(f[0], str)
        and isinstance(f[1], str)
        and isinstance(f[2], int)
        and (len(f) == 5 or _options_ok(f[5]))
        for f in table
    ):
        raise MalformedRecord(f"the run's function table is malformed: {table!r:.200}")
    return [tuple(f) for f in table]


def _options_ok(options: object) -> bool:
    """Is a function's map of options as dagrt writes it?"""
    if not isinstance(options, dict) or not set(options) <= {"locality", "timeout", "resources"}:
        return False
    locality = options.get("locality", {})
    timeout = options.get("timeout", 1.0)
    resources = options.get("resources", {})
    return (
        isinstance(resources, dict)
        and all(
            isinstance(k, str) and type(v) in (int, float) and v > 0 for k, v in resources.items()
        )
        and isinstance(locality, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in locality.items())
        and type(timeout) in (int, float)
        and timeout > 0
    )


def decode_record(
    index: int,
    stored: bytes,
    keyring: Keyring | None,
    rk: K.RunKeys,
    functions: Sequence[FunctionEntry],
) -> TaskRecord:
    """Task ``index``'s record, verified; a large argument spec is loaded later
    (:func:`load_spec`) from ``spec_key``."""
    fields = unpack(_record_payload(stored, keyring), what=f"record of task {index}")
    if not isinstance(fields, list | tuple) or len(fields) != 7:
        raise MalformedRecord(f"record of task {index} is not a task record: {fields!r:.200}")
    key, fn_index, parents, children, slots, mode, arguments = fields
    if type(fn_index) is not int or not 0 <= fn_index < len(functions):
        raise MalformedRecord(
            f"record of task {index} names function {fn_index!r:.50}; the run's function"
            f" table has {len(functions)}"
        )
    if not (
        isinstance(key, str)
        and isinstance(parents, list)
        and isinstance(children, list)
        and all(type(x) is int for x in parents + children)
        and mode in (LEAVES, PICKLED, APART)
    ):
        raise MalformedRecord(f"record of task {index} is malformed: {fields!r:.200}")
    entry = functions[fn_index]
    digest, name, retries, retry_delay, threads = entry[:5]
    options = entry[5] if len(entry) > 5 else {}  # type: ignore[misc]
    timeout = options.get("timeout")
    resources = options.get("resources")
    leaves: list[Any] | None = None
    treedef: Any = True
    spec_key = digest_apart = None
    if mode == LEAVES:
        leaves = arguments
    elif mode == PICKLED:
        leaves, treedef = _loaded_spec(arguments, key)
    else:
        if not isinstance(arguments, str):
            raise MalformedRecord(f"record of task {index} names no argument spec")
        spec_key, digest_apart = rk.spec(arguments), arguments  # loaded on first use
    return TaskRecord(
        index=index,
        key=key,
        name=name,
        fn=digest,
        parents=parents,
        children=children,
        retries=retries,
        retry_delay=retry_delay,
        threads=threads,
        leaves=leaves,
        treedef=treedef,
        slots=slots,
        spec_key=spec_key,
        spec_digest=digest_apart,
        function=fn_index,
        timeout=timeout,
        resources=resources,
    )


def _loaded_spec(frame: bytes, key: str) -> tuple[list[Any], Any]:
    leaves, treedef = loads(frame, what=f"arguments of task {key}")
    return leaves, treedef


def load_spec(record: TaskRecord, frame: bytes) -> None:
    """Fill in a record's arguments from its spec stored apart, once its content is
    the one the record (signed) names: never unpickled otherwise."""
    if record.spec_digest is None or spec_digest(frame) != record.spec_digest:
        raise SerializationError(
            f"the arguments of task {record.key} stored apart ({record.spec_key}) do not"
            " match the digest its record names: replaced or damaged; not loaded"
        )
    record.leaves, record.treedef = _loaded_spec(frame, record.key)
