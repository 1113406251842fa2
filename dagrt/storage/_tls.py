"""TLS for ``rediss://`` URLs: the URL's ``ssl_*`` options, read once for every connection.

``RedisStorage`` opens connections two ways: redis-py's pools (the sync form, and
blocking reads in both forms) and dagrt's own asyncio links (``_multiplex.py``,
``_values.py``). Both take their TLS settings from :func:`split_tls`, which reads
the options off the URL into a :class:`TLS`: redis-py's pools get them as keyword
arguments (from a URL without them), the asyncio links get :meth:`TLS.context`,
built as redis-py builds its own. The options, as redis-py names them::

    rediss://host:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required
        &ssl_certfile=client.pem&ssl_keyfile=client.key&ssl_check_hostname=true

``ssl_cert_reqs`` is ``none``, ``optional`` or ``required`` (the default, with the
host name checked); ``ssl_ca_certs`` a PEM file of trusted CAs, ``ssl_ca_path`` a
directory of them, ``ssl_ca_data`` PEM text; ``ssl_certfile``/``ssl_keyfile``
(``ssl_password``) a client certificate; ``ssl_min_version`` a TLS version
(``TLSv1_2`` or its number); ``ssl_ciphers`` an OpenSSL cipher list;
``ssl_include_verify_flags``/``ssl_exclude_verify_flags`` ``VerifyFlags`` names,
comma-separated. A value that does not read, an unknown ``ssl_`` option, or one on
a URL that is not ``rediss://``, is a ``ValueError`` when the storage is made.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["TLS", "split_tls"]

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_TRUE = frozenset({"1", "T", "TRUE", "Y", "YES", "ON"})
_FALSE = frozenset({"0", "F", "FALSE", "N", "NO", "OFF"})


@dataclass(frozen=True)
class TLS:
    """How to open TLS connections to the server (see the module for the options)."""

    cert_reqs: ssl.VerifyMode = ssl.CERT_REQUIRED
    check_hostname: bool = True
    ca_certs: str | None = None
    ca_path: str | None = None
    ca_data: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    min_version: ssl.TLSVersion | None = None
    ciphers: str | None = None
    include_verify_flags: tuple[ssl.VerifyFlags, ...] = field(default=())
    exclude_verify_flags: tuple[ssl.VerifyFlags, ...] = field(default=())

    @property
    def verifies_hostname(self) -> bool:
        """Whether the host name is checked (never without certificate checks)."""
        return self.check_hostname and self.cert_reqs != ssl.CERT_NONE

    def context(self) -> ssl.SSLContext:
        """An ``SSLContext`` for these settings, made as redis-py makes its own."""
        context = ssl.create_default_context()
        context.check_hostname = self.verifies_hostname
        context.verify_mode = self.cert_reqs
        for flag in self.include_verify_flags:
            context.verify_flags |= flag
        for flag in self.exclude_verify_flags:
            context.verify_flags &= ~flag
        if self.certfile or self.keyfile:
            context.load_cert_chain(self.certfile or "", self.keyfile, self.password)
        if self.ca_certs or self.ca_path or self.ca_data:
            context.load_verify_locations(self.ca_certs, self.ca_path, self.ca_data)
        if self.min_version is not None:
            context.minimum_version = self.min_version
        if self.ciphers:
            context.set_ciphers(self.ciphers)
        return context

    def pool_options(self) -> dict[str, Any]:
        """The same settings as redis-py's ``SSLConnection`` keyword arguments."""
        return {
            "ssl_cert_reqs": self.cert_reqs,
            "ssl_check_hostname": self.verifies_hostname,
            "ssl_ca_certs": self.ca_certs,
            "ssl_ca_path": self.ca_path,
            "ssl_ca_data": self.ca_data,
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_password": self.password,
            "ssl_min_version": self.min_version,
            "ssl_ciphers": self.ciphers,
            "ssl_include_verify_flags": list(self.include_verify_flags) or None,
            "ssl_exclude_verify_flags": list(self.exclude_verify_flags) or None,
        }


def split_tls(url: str) -> tuple[str, TLS | None]:
    """``url`` without its ``ssl_*`` query options, and those options read (``None``
    unless the scheme is ``rediss``). Raises ``ValueError`` for an option that does
    not read."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {name: value for name, value in query if name.startswith("ssl_")}
    plain = url
    if options:
        rest = [(name, value) for name, value in query if not name.startswith("ssl_")]
        plain = urlunsplit(parts._replace(query=urlencode(rest)))
    if parts.scheme != "rediss":
        if options:
            raise ValueError(f"{', '.join(sorted(options))}: TLS options need a rediss:// URL")
        return plain, None
    return plain, _read(options)


def _read(options: dict[str, str]) -> TLS:
    settings: dict[str, Any] = {}
    for name, value in options.items():
        key = name.removeprefix("ssl_")
        reader = _READERS.get(key)
        if reader is None:
            known = ", ".join(f"ssl_{k}" for k in _READERS)
            raise ValueError(f"unknown TLS option {name!r} in the URL (known: {known})")
        try:
            settings[key] = reader(value)
        except (KeyError, ValueError, AttributeError):
            raise ValueError(f"invalid value {value!r} for {name} in the URL") from None
    return TLS(**settings)


def _bool(value: str) -> bool:
    if value.upper() in _TRUE:
        return True
    if value.upper() in _FALSE:
        return False
    raise ValueError(value)


def _version(value: str) -> ssl.TLSVersion:
    return ssl.TLSVersion(int(value)) if value.isdigit() else ssl.TLSVersion[value]


def _flags(value: str) -> tuple[ssl.VerifyFlags, ...]:
    names = [n.strip() for n in value.strip("[]").split(",") if n.strip()]
    return tuple(ssl.VerifyFlags[n] for n in names)


def _text(value: str) -> str:
    return value


_READERS: dict[str, Any] = {
    "cert_reqs": lambda v: _CERT_REQS[v.lower()],
    "check_hostname": _bool,
    "ca_certs": _text,
    "ca_path": _text,
    "ca_data": _text,
    "certfile": _text,
    "keyfile": _text,
    "password": _text,
    "min_version": _version,
    "ciphers": _text,
    "include_verify_flags": _flags,
    "exclude_verify_flags": _flags,
}
