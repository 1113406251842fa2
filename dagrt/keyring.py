"""The pool's shared secrets: the one that signs, and those still accepted (rotation).

A :class:`Keyring` holds one or more secrets. The first signs; every one of them is
accepted when a signature is checked, so a pool changes its secret without a pause:

1. give every worker (and client) the new secret as an accepted one, after the one
   that signs (``DAGRT_SECRET_FILE`` holding ``old`` then ``new``, a line each);
2. make the new one sign everywhere (``new`` then ``old``);
3. once no run signed with the old one can be going on, drop it (``new`` alone).

Each use of a secret has its own key derived from it (``HMAC(secret, "dagrt/v1/" +
purpose)``): a tag made for one purpose (a task record, a run's outcome) is never
valid for another. Secrets come from ``DAGRT_SECRET`` or the file
``DAGRT_SECRET_FILE`` names (:mod:`dagrt.secret`): one secret a line, the signing one
first; ``dagrt secret`` prints a new one.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Sequence

from .hmacs import mac, same

__all__ = ["Keyring", "new_secret"]

MIN_LENGTH = 16  # characters a secret must have at least


def new_secret() -> str:
    """A new random secret (256 bits, URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class Keyring:
    """Secrets: ``keys[0]`` signs, all of them are accepted. Immutable and hashable."""

    __slots__ = ("_derived", "_hash", "keys")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one secret")
        for key in keys:
            if not isinstance(key, bytes):
                raise TypeError(f"a secret must be bytes, got {type(key).__name__}")
            if len(key) < MIN_LENGTH:
                raise ValueError(
                    f"a secret must have {MIN_LENGTH} characters at least (got {len(key)}):"
                    " `dagrt secret` makes one"
                )
        self.keys: tuple[bytes, ...] = tuple(dict.fromkeys(keys))
        self._hash = hash(self.keys)
        self._derived: dict[str, tuple[bytes, ...]] = {}  # purpose -> a key per secret

    @classmethod
    def of(cls, value: Keyring | bytes | str | Iterable[bytes | str] | None) -> Keyring | None:
        """A keyring from what a caller gives: a keyring, one secret (``bytes`` or
        ``str``; several: one a line, or comma-separated), several, or None."""
        if value is None or isinstance(value, Keyring):
            return value
        if isinstance(value, bytes | str):
            text = value.decode() if isinstance(value, bytes) else value
            lines = [w.strip() for w in text.replace(",", "\n").splitlines() if w.strip()]
            return cls([line.encode() for line in lines] or [b""])
        return cls([v.encode() if isinstance(v, str) else v for v in value])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyring) and other.keys == self.keys

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:  # (never the secrets)
        return f"<Keyring of {len(self.keys)} secret(s)>"

    @property
    def signing(self) -> bytes:
        """The secret that signs."""
        return self.keys[0]

    def keys_for(self, purpose: str) -> tuple[bytes, ...]:
        """The keys for ``purpose``, one per secret (32 bytes each; the first signs)."""
        keys = self._derived.get(purpose)
        if keys is None:
            label = b"dagrt/v1/" + purpose.encode()
            keys = self._derived[purpose] = tuple(mac(key, label) for key in self.keys)
        return keys

    def sign(self, purpose: str, *parts: bytes | memoryview) -> bytes:
        """The tag of ``parts`` for ``purpose``, with the signing secret (32 bytes)."""
        return mac(self.keys_for(purpose)[0], *parts)

    def check(self, purpose: str, tag: bytes, *parts: bytes | memoryview) -> bool:
        """Is ``tag`` the tag of ``parts`` for ``purpose`` under one of the secrets?"""
        return any(same(tag, mac(key, *parts)) for key in self.keys_for(purpose))
