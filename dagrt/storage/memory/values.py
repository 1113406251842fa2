"""Values as Redis stores and answers them: bytes, integers read from text,
status replies, and the sorted-set type."""

from __future__ import annotations

from typing import Any

from ...exceptions import StorageError
from ...serialize import Frame

__all__ = ["WRONGTYPE", "Status", "ZSet", "integer", "key", "text", "to_bytes"]

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


class Status(bytes):
    """A status reply (``+OK``): bytes to Python callers, ``{ok = ...}`` to Lua."""

    __slots__ = ()


OK = Status(b"OK")


class ZSet(dict):  # type: ignore[type-arg]
    """A sorted set: member -> score (sorted on read)."""


def to_bytes(value: Any) -> bytes:
    """Values as Redis stores them: bytes, numbers as their text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int | float):
        return repr(value).encode()
    if isinstance(value, bytearray | memoryview | Frame):
        return bytes(value)
    raise StorageError(f"invalid value type {type(value).__name__}: use bytes, str, int or float")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def key(value: Any) -> str:
    """A key as the keyspace holds it: text (a script names keys in bytes)."""
    return value if type(value) is str else text(value)


def integer(value: Any) -> int:
    try:
        return int(text(value))
    except ValueError:
        raise StorageError("ERR value is not an integer or out of range") from None
