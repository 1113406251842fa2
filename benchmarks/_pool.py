"""A private server and ``dagrt worker`` processes, for the benchmarks that need a pool
of their own (not a ``LocalCluster``: each worker with its own flags, or no secret)."""

from __future__ import annotations

import os
import subprocess
import sys

from dagrt.storage import RedisServer


class WorkerPool:
    """A server and one worker per entry of ``flags`` (each worker's own flags, after
    ``--threads 1``), their secret ``secret`` (None: unsigned; one set in this process's
    environment is not passed on)."""

    def __init__(
        self, flags: list[list[str]], *, secret: str | None = None, password: str | None = None
    ) -> None:
        self.server = RedisServer(password=password, die_with_parent=True).start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGRT_SECRET")}
        env["DAGRT_REDIS_URL"] = self.server.url
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        if secret is not None:
            env["DAGRT_SECRET"] = secret
        self.workers = []
        for f in flags:
            p = subprocess.Popen(
                [sys.executable, "-m", "dagrt", "worker", "--threads", "1", *f],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.startswith("dagrt-worker ready"), line
            self.workers.append(p)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        for p in self.workers:
            p.terminate()
        for p in self.workers:
            p.wait(20)
            if p.stdout is not None:
                p.stdout.close()
        self.server.cleanup()
