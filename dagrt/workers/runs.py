"""What a worker remembers about runs and functions.

A worker loads a run's task table once, the first time it meets the run, and
decodes each record when it first runs that task. Functions are loaded once per
worker by digest and checked against it (the digest is part of the signed task
record, so a tampered function frame is refused). Outputs this worker produced
stay in memory, within a byte budget, for children that run here too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from .. import keys as K
from ..exceptions import SerializationError
from ..keyring import Keyring
from ..locality import CLUSTER_MIN_BYTES, LocalityOptions
from ..outcomes import event_tag
from ..records import TaskRecord, cache_table_ok, check_table, decode_functions, decode_record
from ..records import verify as verify_record
from ..sealing import HEAD, Payload, open_found_table, output_prefix, seal, unseal
from ..serialize import PYTHON, Frame, by_value, loads_function
from ..storage import Storage
from ..storage import commands as C

__all__ = ["FunctionCache", "RunContext", "RunTable", "Switches"]

DEFAULT_MAX_CHAIN: int = LocalityOptions.model_fields["max_chain_length"].default


def _int(raw: bytes | None, default: int) -> int:
    """A whole number from a run's meta, at least 0 (``default`` when absent or
    damaged: a run written before the field, or by a third party)."""
    try:
        return max(0, int(raw)) if raw is not None else default
    except ValueError:
        return default


def _float(raw: bytes | None, default: float | None) -> float | None:
    """A number of seconds from a run's meta, at least 0 (``default`` as for ``_int``)."""
    try:
        return max(0.0, float(raw)) if raw is not None else default
    except ValueError:
        return default


def _cache_entries(raw: dict[bytes, bytes]) -> dict[int, tuple[str, float]]:
    """A run's ``cache`` hash (index -> ``<key>:<ttl>``); a damaged field is left out."""
    entries = {}
    for index, value in raw.items():
        key, _, ttl = value.decode(errors="replace").partition(":")
        try:
            entries[int(index)] = (K.cache_entry(key), float(ttl))
        except ValueError:
            continue
    return entries


class Switches:
    """The locality switches that a task's completion goes by (its run's, or its
    function's own: ``@task(locality=...)``), read from the run's meta fields
    (:meth:`dagrt.LocalityOptions.meta`); a switch the meta lacks is on (inline inputs:
    off, as the older client that wrote such a run expects)."""

    __slots__ = (
        "cluster",
        "cluster_min",
        "fuse_chains",
        "inline",
        "keep_children",
        "keep_outputs",
        "max_chain",
        "spill_after",
        "upload_all",
        "wait",
    )

    def __init__(self, meta: Mapping[bytes, bytes]) -> None:
        self.keep_children = meta.get(b"keep_children", b"1") == b"1"
        self.keep_outputs = meta.get(b"keep_outputs", b"1") == b"1"
        self.upload_all = meta.get(b"upload_all", b"0") == b"1"
        self.fuse_chains = meta.get(b"fuse_chains", b"1") == b"1"
        self.max_chain = max(1, _int(meta.get(b"max_chain"), DEFAULT_MAX_CHAIN))
        # fan-out clustering: children of one large output kept here, at most (0: off)
        self.cluster = _int(meta.get(b"cluster"), 0)
        self.cluster_min = _int(meta.get(b"cluster_min"), CLUSTER_MIN_BYTES)
        # how long a claimed child waits for a thread (None, or "": this worker's reads)
        self.spill_after = _float(meta.get(b"spill_after"), None)
        # delayed I/O: how long to wait for a child of a large output made here (0: off)
        self.wait = _float(meta.get(b"wait"), 0.0) or 0.0
        # outputs this small go inline in the entries of the children they dispatch
        # (a run whose meta does not say, written before: none, as its client expects)
        self.inline = _int(meta.get(b"inline"), 0)


class RunContext:
    """One run as a worker sees it."""

    def __init__(
        self,
        run_id: str,
        meta: dict[bytes, bytes],
        records: dict[bytes, bytes],
        secret: Keyring | None,
        cache: dict[bytes, bytes] | None = None,
    ) -> None:
        self.run_id = run_id
        # task index -> (cache entry key, seconds): outputs kept for later runs too
        self.cache = _cache_entries(cache or {})
        self.keys = K.RunKeys(run_id)
        self.n = int(meta.get(b"n", b"0"))
        self.ttl_ms = int(meta.get(b"ttl_ms", b"86400000"))
        self.secret = secret
        # what the completion that finishes the run tags its "finished" event with
        self.finished_tag = event_tag(secret, run_id, "finished") if secret else ""
        self.functions = decode_functions(meta[b"fns"], secret, run_id) if b"fns" in meta else []
        outputs = meta.get(b"outputs", b"").decode()
        self.outputs = {int(x) for x in outputs.split(",") if x}
        # the run's locality switches (Client(locality=...)), on unless turned off, and
        # those of each function that has its own (@task(locality=...))
        self.run_switches = Switches(meta)
        self._switches = [
            Switches({**meta, **{k.encode(): v.encode() for k, v in f[5]["locality"].items()}})
            if len(f) > 5 and "locality" in f[5]
            else self.run_switches
            for f in self.functions
        ]
        # what a sub-run of this run goes by (a task that returned a graph: dagrt.expand)
        self.meta = {k: v for k, v in meta.items() if k != b"fns"}
        self.task_timeout = _float(meta.get(b"task_timeout"), None)
        # the Python version of the client that submitted the run ("3.12"; "" if unsaid)
        self.python = meta.get(b"python", b"").decode(errors="replace")
        # a client that maps outputs of the run from the store of this host and root
        self.outputs_host = meta.get(b"outputs_host", b"").decode(errors="replace")
        self.outputs_root = meta.get(b"outputs_root", b"").decode(errors="replace")
        self._raw = records
        self._decoded: dict[int, TaskRecord] = {}
        # the run's records are signed as one table: checked once, here
        self._refused: str | None = None
        # tasks found in the cache -> the places their values may be sealed for
        self.found: dict[int, list[bytes]] = {}
        self._place = output_prefix(run_id)  # (+ an output's index: its place)
        # bytes a seal adds to a value stored for another participant (none without)
        self.seal_head = HEAD if secret is not None else 0
        if secret is not None:
            try:
                check_table(secret, run_id, records, self.n, meta.get(b"records_tag"))
                if cache and not cache_table_ok(secret, run_id, cache, meta.get(b"cache_tag")):
                    raise ValueError("the run's cache table is not the one its client signed")
                if b"found" in meta:
                    self.found = open_found_table(
                        verify_record(meta[b"found"], secret, run_id, "found")
                    )
            except ValueError as exc:
                self._refused = str(exc)
        # No task of a run that is not running starts here: set from its meta, by a
        # completion's reply, or by the control stream (RunTable.follow_ends).
        self.stopped = meta.get(b"status", b"running") != b"running"

    def switches(self, rec: TaskRecord) -> Switches:
        """The locality switches of ``rec``'s completion."""
        return self._switches[rec.function] if self._switches else self.run_switches

    def places(self, index: int) -> list[bytes]:
        """Where task ``index``'s value may be sealed for (:mod:`dagrt.sealing`): its
        output's place, or, found in the cache, the places its client listed."""
        if self.found:
            found = self.found.get(index)
            if found:
                return found
        return [self._place + b"%d" % index]

    def seal(self, index: int, payload: bytes | Frame) -> bytes | Frame:
        """Task ``index``'s output (or its location), sealed for its place."""
        return seal(self.secret, self._place + b"%d" % index, payload)

    def unseal(self, index: int, data: Payload, what: str) -> Payload:
        """The payload of a value read as task ``index``'s output (``what``: from where);
        :class:`~dagrt.exceptions.IntegrityError` if this pool has a secret and the seal
        does not hold."""
        return unseal(self.secret, self.places(index), data, what=what)

    def record(self, index: int) -> TaskRecord:
        """The decoded record of task ``index`` (``KeyError`` if the run has no such task)."""
        rec = self._decoded.get(index)
        if rec is None:
            if self._refused is not None:
                raise ValueError(self._refused)
            stored = self._raw[str(index).encode()]
            rec = self._decoded[index] = decode_record(
                index, stored, self.secret, self.keys, self.functions
            )
        return rec


class RunTable:
    """The runs a worker knows, loaded once each (concurrent first requests share one load)."""

    def __init__(self, storage: Storage, secret: Keyring | None, max_runs: int = 64) -> None:
        self.storage = storage
        self.secret = secret
        self.max_runs = max_runs
        self._runs: OrderedDict[str, RunContext] = OrderedDict()
        self._loading: dict[str, anyio.Event] = {}

    async def get(self, run_id: str) -> RunContext | None:
        """The run, or ``None`` if storage knows no such (running) run."""
        while True:
            ctx = self._runs.get(run_id)
            if ctx is not None:
                self._runs.move_to_end(run_id)
                return ctx
            pending = self._loading.get(run_id)
            if pending is None:
                break
            await pending.wait()
            if run_id not in self._runs:
                return None
        done = self._loading[run_id] = anyio.Event()
        try:
            rk = K.RunKeys(run_id)
            meta, records, cache = await self.storage.apipeline(
                [C.hgetall(rk.meta), C.hgetall(rk.tasks), C.hgetall(rk.cache)]
            )
            if not meta:
                return None
            ctx = RunContext(run_id, meta, records, self.secret, cache)
            self._runs[run_id] = ctx
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
            return ctx
        finally:
            del self._loading[run_id]
            done.set()

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    async def follow_ends(
        self,
        on_end: Callable[[str], None],
        block: float = 5.0,
        on_lanes: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """Follow the control stream until cancelled: a run that ended (cancelled,
        failed, finished and cleaned up) is stopped here at once, so that none of its
        tasks starts after it ended, and ``on_end`` drops what the worker holds of it.
        An entry ``{l: stream}`` says that runs use new lanes of that tasks stream
        (:mod:`dagrt.lanes`): ``on_lanes`` hears it."""
        stream = K.control()
        newest = await self.storage.axrevrange(stream, count=1)
        last: bytes | str = newest[0][0] if newest else "0-0"
        while True:
            reply = await self.storage.axread({stream: last}, count=1000, block=block)
            for _, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id
                    if b"l" in fields:
                        if on_lanes is not None:
                            await on_lanes(fields[b"l"].decode(errors="replace"))
                        continue
                    run_id = fields.get(b"r", b"").decode(errors="replace")
                    if not K.valid_run_id(run_id):  # (not written by dagrt)
                        continue
                    ctx = self._runs.pop(run_id, None)
                    if ctx is not None:
                        ctx.stopped = True
                    on_end(run_id)


class FunctionCache:
    """Functions by digest, each fetched and unpickled once per worker."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._fns: dict[str, Callable[..., Any]] = {}
        self._loading: dict[str, anyio.Event] = {}

    def cached(self, digest: str) -> Callable[..., Any] | None:
        """The function if this worker has it loaded already."""
        return self._fns.get(digest)

    async def get(self, digest: str, python: str = "") -> Callable[..., Any]:
        """The function of ``digest``; ``python``: the Python version (``"3.12"``) of the
        client that sent it (the run's), checked against this worker's for a function
        that travels by value (bytecode) before it is unpickled."""
        while digest not in self._fns:
            pending = self._loading.get(digest)
            if pending is None:
                await self._load(digest, python)
            else:
                await pending.wait()
                if digest not in self._fns:
                    await self._load(digest, python)
        return self._fns[digest]

    async def _load(self, digest: str, python: str) -> None:
        done = self._loading[digest] = anyio.Event()
        try:
            frame = await self.storage.aget(K.function(digest))
            if frame is None:
                raise SerializationError(f"function {digest} is not in storage (expired?)")
            if not hmac.compare_digest(hashlib.sha256(frame).hexdigest(), digest):
                raise SerializationError(f"function {digest} in storage does not match its digest")
            if python and python != PYTHON and by_value(frame):
                raise SerializationError(
                    f"function {digest} travels by value (it is defined in __main__, a"
                    f" notebook or a test) from a client on Python {python}; this worker runs"
                    f" Python {PYTHON}: its bytecode needs the same Python version on both"
                    " (run the pool on the client's version, or put the function in a module"
                    " the workers import)"
                )
            # An ImportError here (a module missing on this worker) reaches the task as
            # its error, naming the module.
            fn = loads_function(frame, what=f"function {digest}")
            self._fns[digest] = getattr(fn, "fn", fn)  # a TaskFunction: its plain function
        finally:
            del self._loading[digest]
            done.set()
