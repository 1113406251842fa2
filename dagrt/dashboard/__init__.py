"""The web dashboard: ``dagrt dashboard --redis URL``.

A separate process that reads only the event log: live runs and finished runs
go through the same code. Needs the ``dashboard`` extra (starlette, uvicorn,
websockets); the page's built assets ship in ``static/``.
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> object:
    if name in __all__:
        try:
            from . import server
        except ImportError as exc:
            raise ImportError(
                f"dagrt.dashboard needs its extra: pip install 'dagrt[dashboard]' ({exc})"
            ) from exc
        return getattr(server, name)
    raise AttributeError(name)
