"""Values sealed: what a worker or a client unpickles of another's is authenticated.

With a secret, every value one participant stores for another to unpickle carries a
*seal*, 64 bytes before the payload (36, padded: the buffers of a frame stay
aligned), that binds it to its *place*:

* ``o NUL <run> NUL <index>``: the output of a task of a run (its output key, the
  server's copy of an output kept in a host's store, the inline copies in its
  children's entries, a direct transfer between hosts);
* ``c NUL <entry>``: a cache entry, by its key (:func:`dagrt.keys.cache_entry`).

Two kinds, both keyed by the keyring's keys for the purpose ``value``:

* ``DGS1`` + BLAKE2s-256 keyed MAC of ``place NUL payload`` (32 bytes), for payloads
  under :data:`POLY_MIN` (0.5 µs: BLAKE2's keyed mode is a MAC in one pass, cheaper
  than an HMAC's two);
* ``DGS2`` + a random nonce (16 bytes) + the Poly1305 tag of the payload (16 bytes)
  under a one-time key, ``HMAC(k, place NUL nonce)``, for larger ones (Poly1305 runs at
  0.09 s per GB here, HMAC-SHA256 at 0.6: a one-time key per value, from a PRF of a
  fresh nonce, as NaCl's secretbox derives its own).

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

Outputs that stay in a worker's memory or a host's store are never sealed (a host's
store is that host's: only objects that leave it are, by the data endpoint that
sends them: :mod:`dagrt.objects.transfer`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from hashlib import blake2s
from typing import Any

from cryptography.hazmat.primitives.poly1305 import Poly1305

from .exceptions import IntegrityError
from .hmacs import mac, same
from .keyring import Keyring
from .serialize import Frame, loads, pack, unpack

__all__ = [
    "HEAD",
    "KIND",
    "MAGIC",
    "POLY_MIN",
    "cache_place",
    "check_head",
    "found_table",
    "head_of",
    "is_sealed",
    "open_found_table",
    "open_origin_note",
    "origin_note",
    "open_value",
    "output_place",
    "output_prefix",
    "seal",
    "unseal",
]

KIND = b"DGS"  # what both kinds of seals start with
MAGIC = b"DGS1"  # a BLAKE2s MAC follows (small payloads)
POLY = b"DGS2"  # a nonce and a Poly1305 tag follow (large payloads)
HEAD = 64  # bytes of a seal, of either kind (padded: a frame's buffers stay aligned)
_PAD = bytes(HEAD - 36)
POLY_MIN = 1 << 16  # payloads at least this large get a Poly1305 seal
PURPOSE = "value"  # the keyring's purpose of BLAKE2s keys
_ONE_TIME = "value-poly1305"  # ... and of the keys one-time Poly1305 keys derive from
_ORIGIN = "cache-origin"
_CHUNK = 1 << 22  # bytes given to Poly1305 at a time
_TAG = 32  # bytes of an origin note's tag

Payload = bytes | memoryview


def output_prefix(run_id: str) -> bytes:
    """The places of run ``run_id``'s outputs, but their index."""
    return b"o\0%s\0" % run_id.encode()


def output_place(run_id: str, index: int) -> bytes:
    """The place of task ``index``'s output in run ``run_id``."""
    return output_prefix(run_id) + b"%d" % index


def cache_place(entry: str) -> bytes:
    """The place of the cache entry whose key is ``entry``."""
    return b"c\0" + entry.encode()


def _parts(payload: Payload | Frame) -> Sequence[Payload]:
    return payload.parts if isinstance(payload, Frame) else (payload,)


def _blake(key: bytes, place: bytes, parts: Sequence[Payload]) -> bytes:
    if len(parts) == 1:  # (the common case: one call)
        return blake2s(b"%s\0%s" % (place, parts[0]), key=key).digest()
    h = blake2s(place, key=key)
    h.update(b"\0")
    for part in parts:
        h.update(part)
    return h.digest()


def _poly(key: bytes, parts: Sequence[Payload]) -> bytes:
    p = Poly1305(key)
    for part in parts:
        view = memoryview(part)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        for i in range(0, len(view), _CHUNK):
            p.update(view[i : i + _CHUNK])
    return p.finalize()


def head_of(keyring: Keyring, place: bytes, payload: Payload | Frame) -> bytes:
    """The seal (:data:`HEAD` bytes) of ``payload`` at ``place``."""
    parts = _parts(payload)
    if len(payload) < POLY_MIN:
        return MAGIC + _blake(keyring.keys_for(PURPOSE)[0], place, parts) + _PAD
    nonce = os.urandom(16)
    key = mac(keyring.keys_for(_ONE_TIME)[0], place, b"\0", nonce)
    return POLY + nonce + _poly(key, parts) + _PAD


def check_head(
    keyring: Keyring, places: Sequence[bytes], head: Payload, payload: Payload | Frame
) -> bool:
    """Is ``head`` a seal of ``payload`` for one of ``places`` under one of the
    keyring's secrets?"""
    kind, parts = head[:4], _parts(payload)
    if kind == MAGIC and len(payload) < POLY_MIN:
        tag = bytes(head[4:36])
        for k in keyring.keys_for(PURPOSE):
            for place in places:
                if same(_blake(k, place, parts), tag):
                    return True
        return False
    if kind == POLY and len(payload) >= POLY_MIN:
        nonce, tag = bytes(head[4:20]), bytes(head[20:36])
        return any(
            same(_poly(mac(k, place, b"\0", nonce), parts), tag)
            for place in places
            for k in keyring.keys_for(_ONE_TIME)
        )
    return False  # (a kind that does not fit the payload's size is not one dagrt makes)


def seal(keyring: Keyring | None, place: bytes, payload: bytes | Frame) -> bytes | Frame:
    """``payload`` sealed for ``place`` (``payload`` itself without a keyring). A large
    one comes back as a frame in pieces (the seal one more piece): never copied."""
    if keyring is None:
        return payload
    if type(payload) is bytes and len(payload) < POLY_MIN:  # (the common case, inline)
        key = keyring.keys_for(PURPOSE)[0]
        tag = blake2s(b"%s\0%s" % (place, payload), key=key).digest()
        return b"%s%s%s%s" % (MAGIC, tag, _PAD, payload)
    head = head_of(keyring, place, payload)
    if isinstance(payload, Frame):
        return Frame([head, *payload.parts])
    if len(payload) >= POLY_MIN:
        return Frame([head, payload])
    return head + payload


def is_sealed(data: Payload | None) -> bool:
    return data is not None and data[:4] in (MAGIC, POLY)


def unseal(
    keyring: Keyring | None, places: Sequence[bytes], data: Payload, *, what: str
) -> Payload:
    """The payload of ``data``, a value sealed for one of ``places``; ``what`` names it
    (the key it was read from) in the :class:`IntegrityError` raised when a keyring is
    given and the value is not sealed, or its seal matches none of ``places`` under
    any of the keyring's secrets. Without a keyring, the payload unchecked."""
    kind = data[:4]
    if kind == MAGIC and keyring is not None and len(data) < POLY_MIN + HEAD:
        payload, tag = data[HEAD:], data[4:36]  # (the common case, inline)
        for key in keyring.keys_for(PURPOSE):
            for place in places:
                if same(blake2s(b"%s\0%s" % (place, payload), key=key).digest(), tag):
                    return payload
        raise _mismatch(what)
    if kind != MAGIC and kind != POLY:
        if keyring is not None:
            raise IntegrityError(
                f"{what} is not sealed, but this pool has a secret: it was not written by"
                " a worker or client of this pool (nothing of it was unpickled)"
            )
        return data
    # (a small value is copied: cheaper than a view; a large one is not)
    payload = data[HEAD:] if len(data) < POLY_MIN + HEAD else memoryview(data)[HEAD:]
    if keyring is None or check_head(keyring, places, data, payload):
        return payload
    raise _mismatch(what)


def open_value(
    keyring: Keyring | None, places: Sequence[bytes], data: Payload, *, what: str
) -> Any:
    """The value ``data`` holds: its seal checked (:func:`unseal`), then unpickled."""
    return loads(unseal(keyring, places, data, what=what), what=what)


def _mismatch(what: str) -> IntegrityError:
    return IntegrityError(
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
    if note is None or len(note) <= _TAG:
        return None
    tag, place = note[:_TAG], note[_TAG:]
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
