"""Serialization, apart from storage: values, functions and control records.

* Values and functions: cloudpickle with pickle protocol 5. Large buffers
  (numpy arrays, bytearrays, ...) go *out of band*: pickling them copies
  nothing, and the frame sent to storage is written with a single join (the
  one copy), or not joined at all: :func:`dumps_frame` gives a large
  frame as a :class:`Frame`, its pieces in order, which storage writes to the
  socket one after another (the value's own buffers included). A plain pickle
  is sent as is (it starts with ``0x80``); a frame with out-of-band buffers
  starts with ``DGB1``.
* Control records (task records, events): msgpack.

Every failure is a :class:`~dagrt.SerializationError` that says what was
being (de)serialized, e.g. ``"result of task add-1"``.
"""

from __future__ import annotations

import hashlib
import linecache
import pickle
import struct
import sys
import threading
import types
import weakref
from typing import Any

import cloudpickle
import msgpack

from .exceptions import SerializationError

__all__ = [
    "Frame",
    "dumps",
    "dumps_frame",
    "dumps_function",
    "loads",
    "loads_function",
    "pack",
    "unpack",
]

_MAGIC = b"DGB1"
_HEAD = struct.Struct("<4sIQ")  # magic, number of buffers, pickle length
_LEN = struct.Struct("<Q")
_ALIGN = 64
PIECES_MIN = 1 << 20  # dumps_frame leaves frames of at least this many bytes in pieces


class Frame:
    """A serialized value as its pieces, in order: what ``b"".join(parts)`` would be.

    Storage writes the pieces one after another, so a large value reaches the
    socket from the buffers it lives in, never copied into a frame first (on a
    VM whose fresh pages cost ~1 ms per MB to touch, the join of a 320 MB value
    took 0.45 s). The parts keep the value's buffers alive; the value must not
    change until the frame is written (task results are not touched before
    their upload returns).
    """

    __slots__ = ("nbytes", "parts")

    def __init__(self, parts: list[bytes | memoryview]) -> None:
        self.parts = parts
        self.nbytes = sum(len(p) for p in parts)

    def __len__(self) -> int:
        return self.nbytes

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __repr__(self) -> str:
        return f"<Frame {self.nbytes:,} bytes in {len(self.parts)} pieces>"


def dumps(obj: Any, *, what: str = "value", by_value: bool = True) -> bytes:
    """``obj`` as one bytes frame (protocol 5, out-of-band buffers).

    ``by_value`` (the default) uses cloudpickle, which carries functions and
    classes defined in ``__main__`` or locally. ``by_value=False`` first tries
    the standard pickler, ten times faster on small values, and falls back to
    cloudpickle when it cannot (task results take this path).
    """
    frame = dumps_frame(obj, what=what, by_value=by_value)
    return frame if isinstance(frame, bytes) else bytes(frame)


def dumps_frame(obj: Any, *, what: str = "value", by_value: bool = True) -> bytes | Frame:
    """:func:`dumps`, but a frame of :data:`PIECES_MIN` bytes or more with
    out-of-band buffers stays a :class:`Frame` (pieces, nothing copied)."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        if not by_value:
            try:
                payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
            except Exception:
                buffers.clear()
                payload = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        else:
            payload = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {what} ({type(obj).__name__}): {type(exc).__name__}: {exc}"
        ) from exc
    if not buffers:
        return payload
    views = [b.raw() for b in buffers]
    parts: list[bytes | memoryview] = [_HEAD.pack(_MAGIC, len(views), len(payload))]
    parts += [_LEN.pack(v.nbytes) for v in views]
    parts.append(payload)
    offset = _HEAD.size + len(views) * _LEN.size + len(payload)
    for v in views:  # each buffer starts 64-byte aligned, so arrays load without a copy
        pad = -offset % _ALIGN
        if pad:
            parts.append(bytes(pad))
        parts.append(v)
        offset += pad + v.nbytes
    return Frame(parts) if offset >= PIECES_MIN else b"".join(parts)


def loads(
    data: bytes | bytearray | memoryview, *, what: str = "value", writeable: bool = True
) -> Any:
    """Inverse of :func:`dumps`.

    Out-of-band buffers are rebuilt from one writable copy of the frame
    (``writeable=False`` skips that copy; arrays then come back read-only).
    """
    try:
        view = memoryview(data)
        if view[:4] != _MAGIC:
            if len(view) < _SMALL and _STACK_GLOBAL not in view.tobytes():
                return pickle.loads(view)  # it names no global (an int, a str...): no import
            return _unpickle(view, None)
        _, n, plen = _HEAD.unpack_from(view)
        offset = _HEAD.size
        lengths = [_LEN.unpack_from(view, offset + i * _LEN.size)[0] for i in range(n)]
        offset += n * _LEN.size
        if writeable and view.readonly:
            view = memoryview(bytearray(view))
        payload = view[offset : offset + plen]
        offset += plen
        buffers = []
        for length in lengths:
            offset += -offset % _ALIGN
            buffers.append(view[offset : offset + length])
            offset += length
        return _unpickle(payload, buffers)
    except Exception as exc:
        raise SerializationError(f"cannot deserialize {what}: {type(exc).__name__}: {exc}") from exc


def _unpickle(payload: memoryview, buffers: list[memoryview] | None) -> Any:
    """``pickle.loads``, one first import at a time.

    Values that arrive at once, unpickled in several threads, can make them import a
    package for the first time together (numpy, in a fresh worker): Python then finds
    a cycle of import locks and fails one thread, and a package like numpy cannot be
    imported again after a failed import. So a module that a pickle names and that
    is not imported yet (or is being imported) is imported under one lock.
    """
    return _Unpickler(_Reader(payload), buffers=buffers).load()


_SMALL = 1 << 16  # pickles shorter than this are searched for a global first
_STACK_GLOBAL = pickle.STACK_GLOBAL  # the opcode naming a module's global (protocol 4+)
_IMPORTS = threading.RLock()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = sys.modules.get(module)
        if found is None or getattr(getattr(found, "__spec__", None), "_initializing", False):
            with _IMPORTS:  # not imported yet, or being imported by another thread
                return super().find_class(module, name)
        return super().find_class(module, name)


class _Reader:
    """A file over a memoryview for the unpickler: large bytes are read straight into
    their object (``readinto``), nothing is copied first (``io.BytesIO`` copies a
    bytearray whole)."""

    __slots__ = ("pos", "view")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        start = self.pos
        end = len(self.view) if n is None or n < 0 else min(start + n, len(self.view))
        self.pos = end
        return self.view[start:end].tobytes()

    def readinto(self, buffer: Any) -> int:
        start = self.pos
        n = min(len(buffer), len(self.view) - start)
        buffer[:n] = self.view[start : start + n]
        self.pos = start + n
        return n

    def readline(self) -> bytes:
        rest = self.view[self.pos :].tobytes()
        end = rest.find(b"\n") + 1 or len(rest)
        self.pos += end
        return rest[:end]


_FUNCTIONS: weakref.WeakKeyDictionary[Any, tuple[str, bytes]] = weakref.WeakKeyDictionary()


def dumps_function(fn: Any) -> tuple[str, bytes]:
    """``(digest, frame)`` of a function, cached per function object.

    The digest (SHA-256 of the frame) names the function in storage, so a
    function used by many tasks and many runs is stored once. A function pickled
    by value (defined in ``__main__``, a notebook or a test) also carries its
    source file's lines, so it still shows its file, line and code in a remote
    traceback (see :func:`loads_function`); an importable one is found by name.
    """
    try:
        cached = _FUNCTIONS.get(fn)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None:
        return cached
    what = f"function {getattr(fn, '__name__', fn)!r}"
    frame = dumps((fn, None), what=what)
    if _DYNAMIC.encode() in frame:  # carried by value: its source lines go with it
        frame = dumps((fn, _source_of(fn)), what=what)
    result = (hashlib.sha256(frame).hexdigest(), frame)
    try:
        _FUNCTIONS[fn] = result
    except TypeError:
        pass
    return result


PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # what code by value needs


def by_value(frame: bytes | bytearray | memoryview) -> bool:
    """Does a function's frame (:func:`dumps_function`) carry its code by value (so it
    only loads on the Python version that made it)?"""
    return _DYNAMIC.encode() in frame


def loads_function(data: bytes | bytearray | memoryview, *, what: str = "function") -> Any:
    """Inverse of :func:`dumps_function`: the function, its source registered.

    cloudpickle renames the file of code it carries by value to
    ``<dynamic-code>``; the original name is put back and the shipped lines
    go into :mod:`linecache`, so tracebacks read as they would locally.
    """
    fn, source = loads(data, what=what)
    inner = _plain(fn)
    code = getattr(inner, "__code__", None)
    if source is not None and code is not None and code.co_filename == _DYNAMIC:
        filename, lines = source
        inner.__code__ = _renamed(code, filename)
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return fn


_DYNAMIC = "<dynamic-code>"


def _plain(fn: Any) -> Any:
    """The plain function of a task function (the function itself otherwise)."""
    return getattr(fn, "fn", fn)


def _source_of(fn: Any) -> tuple[str, list[str]] | None:
    code = getattr(_plain(fn), "__code__", None)
    if code is None:
        return None
    lines = linecache.getlines(code.co_filename)
    return (code.co_filename, lines) if lines else None


def _renamed(code: types.CodeType, filename: str) -> types.CodeType:
    """``code`` and the code nested in it (lambdas, inner functions) with ``filename``."""
    consts = tuple(
        _renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def pack(obj: Any) -> bytes:
    """A control record as msgpack."""
    try:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    except Exception as exc:
        raise SerializationError(f"cannot pack record: {type(exc).__name__}: {exc}") from exc


def unpack(data: bytes | memoryview, *, what: str = "record") -> Any:
    """Inverse of :func:`pack`."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise SerializationError(f"cannot unpack {what}: {type(exc).__name__}: {exc}") from exc
