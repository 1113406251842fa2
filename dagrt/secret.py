"""Where dagrt reads what must not go on a command line: the pool's shared secret and
server URLs that hold a password.

Each setting ``NAME`` is read from the environment variable ``NAME``, else from the
file that ``NAME_FILE`` names (a Docker or Kubernetes secret mounted as a file: its
text, surrounding whitespace removed). A ``NAME_FILE`` that cannot be read or is empty
is an error, never a silent fallback to no secret. Command lines are readable by every
local user (``ps``): dagrt never puts a password or a secret on one, and passes them
to the processes it starts by environment.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .keyring import Keyring

__all__ = [
    "SecretError",
    "check_authenticated",
    "checked_keyring",
    "env_value",
    "loopback_host",
    "shared_keyring",
    "shared_secret",
    "unauthenticated_allowed",
]


class SecretError(ValueError):
    """A ``*_FILE`` setting names a file that cannot be read or is empty."""


def env_value(name: str) -> str | None:
    """``$NAME``, else the text of the file ``$NAME_FILE``, else None."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{name}_FILE={path}: cannot be read ({exc})") from None
    if not text:
        raise SecretError(f"{name}_FILE={path}: the file is empty")
    return text


def loopback_host(host: str | None) -> bool:
    """Is ``host`` this machine only (None: a Unix socket, or no network at all)?"""
    return host is None or host in ("localhost", "::1") or host.startswith("127.")


def unauthenticated_allowed() -> bool:
    """Did the environment say the pool is knowingly unauthenticated
    (``DAGRT_UNAUTHENTICATED=1``)?"""
    return os.environ.get("DAGRT_UNAUTHENTICATED", "").lower() in ("1", "true", "yes")


def check_authenticated(
    keyring: Keyring | None, url: str | None, who: str, *, unauthenticated: bool
) -> None:
    """Refuse (``SecretError``) to use a server that is not on this machine's loopback
    without a secret, unless told the pool is unauthenticated: whoever can write to such
    a server could run code in this process."""
    if keyring is not None or unauthenticated or url is None:
        return
    from urllib.parse import urlsplit

    from .storage.redis import redact

    parts = urlsplit(url)
    if parts.scheme == "unix" or loopback_host(parts.hostname):
        return
    raise SecretError(
        f"{who} refuses the server {redact(url)}, which is not on this machine's loopback,"
        " without a secret: whoever can write to it could run code here. Give the pool's"
        " secret (DAGRT_SECRET or DAGRT_SECRET_FILE; `dagrt secret` makes one), or say the"
        " pool is knowingly unauthenticated (DAGRT_UNAUTHENTICATED=1, or `dagrt worker"
        " --unauthenticated`)."
    )


def shared_secret() -> bytes | None:
    """The pool's shared secret as set (``DAGRT_SECRET`` or ``DAGRT_SECRET_FILE``: one
    secret a line, or comma-separated, the signing one first), if set."""
    value = env_value("DAGRT_SECRET")
    return value.encode() if value else None


def shared_keyring() -> Keyring | None:
    """:func:`shared_secret` as a :class:`~dagrt.keyring.Keyring` (checked)."""
    return checked_keyring(shared_secret())


def checked_keyring(secret: bytes | None) -> Keyring | None:
    """The keyring of ``DAGRT_SECRET``'s text ``secret``; ``SecretError`` saying why if
    it is not one (too short, say)."""
    from .keyring import Keyring

    try:
        return Keyring.of(secret)
    except ValueError as exc:
        raise SecretError(f"DAGRT_SECRET: {exc}") from None
