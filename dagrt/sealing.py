"""Values sealed: what a worker or a client unpickles of another's is authenticated.

With a secret, every value one participant stores for another to unpickle carries a
*seal*: ``DGS1``, then ``HMAC(k_value, place NUL payload)`` (32 bytes), then the
payload (``k_value`` is the keyring's key for the purpose ``value``). The *place*
binds the payload to what it is:

* ``o NUL <run> NUL <index>``: the output of a task of a run (its output key, the
  server's copy of an output kept in a host's store, the inline copies in its
  children's entries, a direct transfer between hosts);
* ``c NUL <entry>``: a cache entry, by its key (:func:`dagrt.keys.cache_entry`).

A reader says which places it accepts (:func:`unseal`): an output copied to another
run or task, or a cache entry put where another task's output belongs, does not
open there. A run's tasks found in the cache read entries sealed for their entry's
place, or, for what a failed run kept (:func:`dagrt.submission.keep_finished`), for
the output that was kept: the client that copied them lists the places it accepts
in the run's meta, signed (:func:`found_table`), after checking the *origin note*
the keeping client wrote beside the entry (:func:`origin_note`).

Without a secret nothing is sealed and nothing checked; a sealed value read there
is opened unchecked (a pool without a secret trusts whoever writes to its server).
With one, an unsealed value, or one whose seal does not match, raises
:class:`~dagrt.exceptions.IntegrityError` and is never unpickled.

Cost: one HMAC over the payload on each side (0.6 s per GB here, about 1 µs for a
small value); outputs that stay in a worker's memory or a host's store are never
sealed (a host's store is that host's: only objects that leave it are, by the data
endpoint that sends them: :mod:`dagrt.objects.transfer`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .exceptions import IntegrityError
from .keyring import Keyring
from .serialize import Frame, pack, unpack

__all__ = [
    "HEAD",
    "MAGIC",
    "cache_place",
    "found_table",
    "is_sealed",
    "open_found_table",
    "open_origin_note",
    "origin_note",
    "output_place",
    "payload_of",
    "seal",
    "tag_of",
    "unseal",
]

MAGIC = b"DGS1"
TAG = 32
HEAD = len(MAGIC) + TAG  # bytes before the payload of a sealed value
PURPOSE = "value"
_ORIGIN = "cache-origin"

Payload = bytes | memoryview


def output_place(run_id: str, index: int) -> bytes:
    """The place of task ``index``'s output in run ``run_id``."""
    return b"o\0" + run_id.encode() + b"\0" + str(int(index)).encode()


def cache_place(entry: str) -> bytes:
    """The place of the cache entry whose key is ``entry``."""
    return b"c\0" + entry.encode()


def tag_of(keyring: Keyring, place: bytes, payload: Payload | Frame) -> bytes:
    """The seal's tag of ``payload`` at ``place``."""
    parts = payload.parts if isinstance(payload, Frame) else (payload,)
    return keyring.sign(PURPOSE, place, b"\0", *parts)


def seal(keyring: Keyring | None, place: bytes, payload: bytes | Frame) -> bytes | Frame:
    """``payload`` sealed for ``place`` (``payload`` itself without a keyring). A frame
    in pieces stays in pieces: the head is one more piece."""
    if keyring is None:
        return payload
    head = MAGIC + tag_of(keyring, place, payload)
    if isinstance(payload, Frame):
        return Frame([head, *payload.parts])
    return head + payload


def is_sealed(data: Payload | None) -> bool:
    return data is not None and data[:4] == MAGIC


def payload_of(data: Payload) -> memoryview:
    """The payload of a value, sealed or not, unchecked (for what only looks at it)."""
    view = memoryview(data)
    return view[HEAD:] if view[:4] == MAGIC else view


def unseal(
    keyring: Keyring | None, places: Sequence[bytes], data: Payload, *, what: str
) -> Payload:
    """The payload of ``data``, a value sealed for one of ``places``; ``what`` names it
    (the key it was read from) in the :class:`IntegrityError` raised when a keyring is
    given and the value is not sealed, or its seal matches none of ``places`` under
    any of the keyring's secrets. Without a keyring, the payload unchecked."""
    if data[:4] != MAGIC:
        if keyring is not None:
            raise IntegrityError(
                f"{what} is not sealed, but this pool has a secret: it was not written by"
                " a worker or client of this pool (nothing of it was unpickled)"
            )
        return data
    view = memoryview(data)
    payload = view[HEAD:]
    if keyring is None:
        return payload
    tag = view[len(MAGIC) : HEAD].tobytes()
    for place in places:
        if keyring.check(PURPOSE, tag, place, b"\0", payload):
            return payload
    raise IntegrityError(
        f"{what}: its seal does not match (forged, copied from another run, task or cache"
        " entry, or sealed with another secret); nothing of it was unpickled"
    )


# --------------------------------------------------------------------------- the cache


def origin_note(keyring: Keyring, entry: str, place: bytes) -> bytes:
    """What a client writes beside the cache entry ``entry`` when it keeps there the
    output sealed for ``place`` (a failed run's, for a resumed run): the place, signed
    for that entry (only a participant says where an entry's value came from)."""
    return keyring.sign(_ORIGIN, entry.encode(), b"\0", place) + place


def open_origin_note(keyring: Keyring, entry: str, note: bytes | None) -> bytes | None:
    """The place an origin note of ``entry`` names, if it is genuine (else None)."""
    if note is None or len(note) <= TAG:
        return None
    tag, place = note[:TAG], note[TAG:]
    return place if keyring.check(_ORIGIN, tag, entry.encode(), b"\0", place) else None


def found_table(found: dict[int, list[bytes]]) -> bytes:
    """The payload of a run's found table: task index -> the places its value may be
    sealed for (its cache entry's, and where it came from)."""
    return pack([[i, places] for i, places in sorted(found.items())])


def open_found_table(payload: bytes) -> dict[int, list[bytes]]:
    """Inverse of :func:`found_table` (``ValueError`` if it is not one)."""
    table = unpack(payload, what="found table")
    try:
        return {int(i): [bytes(p) for p in places] for i, places in table}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a found table: {exc}") from exc
