"""The dashboard as a child process of a client (``Client(dashboard=port)``).

The client runs ``dagrt dashboard`` for as long as it is open: a process of its
own, so that serving pages never takes the client's event loop, reading the
event log on the server at ``url`` (given by environment, never on its command
line). Needs the ``dashboard`` extra, which this module checks without importing it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread

__all__ = ["dashboard_process"]

STOP_TIMEOUT = 15.0  # seconds the dashboard has to exit on SIGTERM before SIGKILL


@contextlib.asynccontextmanager
async def dashboard_process(url: str, port: int) -> AsyncIterator[str]:
    """Serve the dashboard of the event log at ``url`` on ``port`` while in the block;
    its address."""
    process = await anyio.to_thread.run_sync(_spawn, url, port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_stop, process)


def _spawn(url: str, port: int) -> subprocess.Popen[str]:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"Client(dashboard=...) needs the dashboard extra ({', '.join(missing)} missing): "
            "pip install 'dagrt[dashboard]'"
        )
    # The URL (its password) goes by environment: a command line is every user's to read.
    env = {**os.environ, "DAGRT_METRICS_URL": url}
    env.pop("DAGRT_METRICS_URL_FILE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "dagrt", "dashboard", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once it listens
    if "dagrt dashboard:" not in line:
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(
            f"the dashboard did not start on port {port} (taken? its own message is above)"
        )
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
