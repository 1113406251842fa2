"""The docker-compose pool, started for real, checked as a user would.

``deploy/compose-engine.sh`` makes this machine able to run ``docker-compose.yml``
(Docker if one answers; else rootful podman and podman-compose, with stand-ins for
the base images where no registry answers) or says why it cannot: the module is then
skipped with that reason (``pytest -ra`` prints it). Then, on a copy of the project's
tracked files: the ACL file ``dagrt acl`` writes, ``build``, ``up`` with two workers on
free ports, and a client on this host computes a workflow with tasks on both workers;
the dashboard answers; a worker sent SIGTERM mid-run loses nothing; the event log
outlives a restart of the server; teardown leaves no container, volume or network.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

import dagrt
from dagrt import workflows
from dagrt.acl import ROLES, render
from dagrt.keyring import new_secret
from dagrt.metrics.read import aread_run
from dagrt.storage.server import free_port
from dagrt.workflows import pairwise

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

ROOT = Path(__file__).parent.parent
WORKFLOWS = {"wordcount": {"words": 400_000, "chunks": 16}, "gemm": {"n": 1200, "b": 3}}
ENGINE_TIMEOUT = 900  # seconds the engine may take to be ready, cold (images built once)
BUILD_TIMEOUT = 900


@dataclass
class Engine:
    name: str  # "docker" or "podman"
    compose: list[str]
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        done = subprocess.run(
            [self.name, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name} {shlex.join(args)}: {done.stderr[-2000:]}")
        return done.stdout


@pytest.fixture(scope="module")
def engine() -> Engine:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {**os.environ, "DAGRT_PYTHON_VERSION": python}
    done = subprocess.run(
        [str(ROOT / "deploy" / "compose-engine.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=ENGINE_TIMEOUT,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode == 3:
        pytest.skip(f"no container engine can run here: {lines[-1] if lines else '?'}")
    if done.returncode != 0:
        pytest.fail(f"deploy/compose-engine.sh failed:\n{done.stderr[-4000:]}")
    said = dict(line.split("=", 1) for line in lines if "=" in line)
    for name in ("CONTAINERS_CONF", "BUILDAH_FORMAT"):
        if name in said:
            env[name] = said[name]
    return Engine(said["ENGINE"], shlex.split(said["COMPOSE"]), env)


@dataclass
class Pool:
    engine: Engine
    project: str
    folder: Path
    env: dict[str, str]
    client_url: str
    dashboard_url: str

    def compose(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [*self.engine.compose, "-p", self.project, *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"compose {shlex.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done.stdout

    def containers(self, service: str | None = None) -> list[str]:
        label = [f"label=com.docker.compose.project={self.project}"]
        if service is not None:
            label.append(f"label=com.docker.compose.service={service}")
        args = ["ps", "-a", "-q"] + [f for lab in label for f in ("--filter", lab)]
        return self.engine.run(*args).split()

    def left_behind(self) -> list[str]:
        """Containers, volumes and networks of the project still there."""
        e = self.engine
        label = f"label=com.docker.compose.project={self.project}"
        out = e.run("ps", "-a", "-q", "--filter", label).split()
        out += [v for v in e.run("volume", "ls", "-q").split() if v.startswith(self.project)]
        out += [
            n
            for n in e.run("network", "ls", "--format", "{{.Name}}").split()
            if n.startswith(self.project)
        ]
        return out


def _tracked_copy(dest: Path) -> None:
    """The project's tracked files (what a clone has), copied to ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


@pytest.fixture(scope="module")
def pool(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    folder = tmp_path_factory.mktemp("compose") / "dagrt"
    _tracked_copy(folder)
    passwords = {role: new_secret() for role in ROLES}
    (folder / "storage" / "users.acl").write_text(render(passwords))
    redis_port, dashboard_port = free_port(), free_port()
    env = {
        **engine.env,
        "DAGRT_SECRET": new_secret(),
        **{f"DAGRT_ACL_{role.upper()}_PASSWORD": p for role, p in passwords.items()},
        "DAGRT_REDIS_PORT": str(redis_port),
        "DAGRT_DASHBOARD_PORT": str(dashboard_port),
        "DAGRT_REDIS_MAXMEMORY": "1gb",
    }
    project = f"dagrt-test-{os.getpid()}"
    made = Pool(
        engine,
        project,
        folder,
        env,
        f"redis://client:{passwords['client']}@127.0.0.1:{redis_port}/0",
        f"http://127.0.0.1:{dashboard_port}",
    )
    try:
        made.compose("build", timeout=BUILD_TIMEOUT)
        made.compose("up", "-d", "--scale", "worker=2", timeout=600)
        yield made
    finally:
        # The containers that depend on the server first, stopped and removed:
        # podman-compose 1.6's `down` removes containers in an order podman refuses
        # (the server's while workers that depend on it exist), so the server's is
        # still there when it removes the volumes, and its volume is left behind (a
        # scaled replica still up keeps the store's volume busy the same way).
        for service in ("worker", "dashboard"):
            for container in made.containers(service):
                engine.run("stop", "-t", "30", container, check=False)
                engine.run("rm", container, check=False)
        said = made.compose("down", "-v", "--remove-orphans", timeout=300)
    assert made.left_behind() == [], said


def _tasks() -> tuple[Any, Any, Any]:
    """The tasks, by value (the workers cannot import this module: as a notebook's)."""

    def add(x: int, y: int) -> int:
        return x + y

    def nap(i: int) -> int:
        time.sleep(0.5)
        return i

    def total(xs: list[int]) -> int:
        return sum(xs)

    return dagrt.task(add), dagrt.task(nap), dagrt.task(total)


add, nap, total = _tasks()


async def wait_ready(url: str, secret: str, within: float = 120) -> None:
    """Until the server takes the client's user and two workers read the stream."""
    last: BaseException | None = None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:  # (containers start on their own schedule)
        try:
            with anyio.fail_after(30):
                async with dagrt.Client(url, secret=secret) as client:
                    assert await client.compute(add(1, 1)) == 2
                    return
        except (dagrt.DagrtError, TimeoutError, OSError) as exc:
            last = exc
        await anyio.sleep(1)
    raise AssertionError(f"the pool did not serve within {within} s: {last!r}")


def healthy(pool: Pool, container: str) -> bool:
    """Does the container's own health check pass now? (Run by hand: podman runs them
    from systemd timers, which these machines lack.)"""
    e = pool.engine
    if e.name == "podman":
        done = subprocess.run(
            ["podman", "healthcheck", "run", container], env=e.env, capture_output=True
        )
        return done.returncode == 0
    state = e.run("inspect", "--format", "{{.State.Health.Status}}", container).strip()
    return state == "healthy"


async def test_the_compose_pool_serves_a_client_of_this_host(pool: Pool) -> None:
    secret = pool.env["DAGRT_SECRET"]
    await wait_ready(pool.client_url, secret)
    # every service's health check passes, and the server's can fail: with a wrong
    # password `redis-cli ping` exits 0 (it prints NOAUTH), `redis-cli -e ping` does not
    with anyio.fail_after(60):
        for service in ("redis", "worker", "dashboard"):
            for container in pool.containers(service):
                while not healthy(pool, container):  # noqa: ASYNC110 (a process to ask)
                    await anyio.sleep(1)
    [redis] = pool.containers("redis")
    wrong = ["exec", "-e", "REDISCLI_AUTH=wrong", redis, "redis-cli", "--user", "dashboard"]
    assert "NOAUTH" in pool.engine.run(*wrong, "ping", check=False)
    with pytest.raises(AssertionError):
        pool.engine.run(*wrong, "-e", "ping")
    async with dagrt.Client(pool.client_url, secret=secret) as client:
        # workflows: a tree reduction, a word count, a GEMM whose blocks (1.3 MB) stay in
        # the workers' shared store
        with anyio.fail_after(120):
            fut = client.submit(pairwise(add, range(1000)))
            assert await fut == sum(range(1000))
            runs = [fut.run_id]
            for name, params in WORKFLOWS.items():
                flow = workflows.get(name)
                done = client.submit(flow.build(**params))
                assert flow.check(await done, flow.reference(**params)), name
                runs.append(done.run_id)
        # a worker stopped (SIGTERM) mid-run: nothing is lost
        slow = client.submit(total([nap(i) for i in range(40)]))
        await anyio.sleep(1.5)
        [first, *_] = pool.containers("worker")
        assert not slow.done()  # (40 naps of 0.5 s on two workers of two threads)
        pool.engine.run("kill", "--signal", "TERM", first)
        with anyio.fail_after(180):
            assert await slow == sum(range(40))
    # (the client's part of the log is written when it closes)
    events = await aread_run(pool.client_url, fut.run_id, wait=30)
    workers: set[str] = set()
    for run in runs:
        logged = await aread_run(pool.client_url, run, wait=30)
        workers |= {e.worker_id for e in logged if e.kind == "task-finished"}
    assert len(workers) == 2, workers  # the workflows' tasks ran on both workers
    # the dashboard answers, and shows the run
    with urllib.request.urlopen(f"{pool.dashboard_url}/api/runs?limit=5", timeout=10) as r:
        assert r.status == 200
        assert fut.run_id in r.read().decode()
    # the event log outlives a restart of the server
    pool.engine.run("restart", redis, timeout=120)
    await wait_ready(pool.client_url, secret)
    again = await aread_run(pool.client_url, fut.run_id, wait=30)
    assert len(again) == len(events)


def test_where_no_engine_can_run_the_script_says_why() -> None:
    """Run as a user that cannot run podman (and with no Docker engine), the script
    exits 3 with its reason on the last line: the compose test is then skipped with
    that reason, never silently."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the script as another user")
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        pytest.skip("a Docker engine answers here: the script would use it")
    with tempfile.TemporaryDirectory() as folder:  # (a clone's folder may be private)
        os.chmod(folder, 0o755)
        script = shutil.copy(ROOT / "deploy" / "compose-engine.sh", folder)
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=folder,
        )
    assert done.returncode == 3, done.stderr
    assert "podman needs root" in done.stdout.strip().splitlines()[-1]
