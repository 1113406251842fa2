"""Who may look at the dashboard: same-origin pages only, and a password if set.

:class:`Guard` wraps the dashboard's ASGI app:

* **Cross-site WebSocket hijacking.** A page of another site can open a WebSocket to
  the dashboard in the visitor's browser (browsers do not apply the same-origin rule
  to WebSockets; they send the page's ``Origin``). A WebSocket whose ``Origin`` is not
  the dashboard's own (its ``Host``) is refused before it is accepted (HTTP 403),
  unless listed in ``allowed_origins``. A client that sends no ``Origin`` is no
  browser page, and is let in.
* **A password** (``DAGRT_DASHBOARD_PASSWORD`` or the file
  ``DAGRT_DASHBOARD_PASSWORD_FILE`` names): every request and WebSocket then needs
  HTTP Basic credentials with it (any user name; the browser asks once). Meant for a
  dashboard bound to another interface than loopback: ``dagrt dashboard`` warns when
  it is bound elsewhere without one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Guard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """The dashboard's app behind an origin check and an optional password."""

    def __init__(
        self, app: App, *, password: str | None = None, allowed_origins: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.password = password.encode() if password else None
        self.allowed = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if kind == "websocket" and not self._same_origin(headers):
            await send({"type": "websocket.close", "code": 1008, "reason": "origin refused"})
            return
        if self.password is not None and not self._authorized(headers):
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"www-authenticate", b'Basic realm="dagrt dashboard"'),
                        (b"content-type", b"text/plain; charset=utf-8"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"the dashboard needs a password"})
            return
        await self.app(scope, receive, send)

    def _same_origin(self, headers: dict[str, str]) -> bool:
        origin = headers.get("origin")
        if origin is None:  # (no browser page)
            return True
        origin = origin.rstrip("/").lower()
        if origin in self.allowed:
            return True
        host = headers.get("host", "").lower()
        return bool(host) and urlsplit(origin).netloc == host

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.password is not None
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, _, password = decoded.partition(b":")
        return hmac.compare_digest(password, self.password)
