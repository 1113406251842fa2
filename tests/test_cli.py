"""The ``dagrt`` command faced with a dead server, an unknown run or a bad option: one
clear line, no traceback."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from conftest import worker_env
from helpers import add

import dagrt
from dagrt.storage.server import free_port


def dagrt_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagrt", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=worker_env(),
    )


@pytest.mark.parametrize(
    "command",
    [["runs"], ["report", "some-run"], ["dashboard", "--port", "0"], ["worker", "--burst"]],
)
def test_a_dead_server_is_one_clear_line(command: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = dagrt_cli(
        *command, "--redis", url, *(["--connect-timeout", "1"] if "worker" in command else [])
    )
    assert done.returncode != 0
    assert "cannot reach the storage server" in done.stderr
    assert url in done.stderr
    assert "Traceback" not in done.stderr


def test_a_module_that_cannot_be_preloaded_is_one_clear_line() -> None:
    """Before it connects: the worker names the module and why."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = dagrt_cli("worker", "--redis", url, "--preload", "json,no_such_module_x")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "dagrt worker: cannot preload module 'no_such_module_x': No module named 'no_such_module_x'"
    )


def test_an_unknown_run_is_one_clear_line(redis_url: str) -> None:
    done = dagrt_cli("report", "no-such-run", "--redis", redis_url)
    assert done.returncode == 1
    assert done.stderr.strip() == "dagrt report: no events of run 'no-such-run' in the event log"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["worker", "--flush-interval", "-1"], "argument --flush-interval: must be >= 0"),
        (["worker", "--flush-interval", "0.001"], "argument --flush-interval"),
        (["worker", "--flush-size", "600000"], "must not exceed max_buffer"),
        (["worker", "--redis", "nonsense"], "argument --redis: unsupported URL scheme"),
        (["worker", "--metrics-redis", "http://x"], "argument --metrics-redis"),
        (["worker", "--concurrency", "0"], "argument --concurrency: must be >= 1"),
        (["runs", "--limit", "0"], "argument --limit: must be >= 1"),
        (["report", "r", "--wait", "soon"], "argument --wait: not a number"),
        (["cluster", "--flush-buffer", "0"], "argument --flush-buffer: must be >= 1"),
        (["worker", "--heartbeat", "0"], "argument --heartbeat: must be > 0"),
        (["worker", "--graceful-timeout", "-1"], "argument --graceful-timeout: must be >= 0"),
    ],
)
def test_bad_options_are_one_line_before_anything_starts(args: list[str], says: str) -> None:
    done = dagrt_cli(*args)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_report_that_cannot_be_written_is_one_line(redis_url: str, tmp_path: Path) -> None:
    async def one_run() -> str:
        async with dagrt.Client(processes=False, metrics=redis_url) as client:
            fut = client.submit(add(1, 2))
            await fut
            return fut.run_id

    run_id = anyio.run(one_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = dagrt_cli("report", run_id, "--redis", redis_url, "--out", str(blocker))
    assert done.returncode == 1
    assert done.stderr.startswith(f"dagrt report: cannot write the report under {blocker}")
    assert "Traceback" not in done.stderr


def test_the_runs_list_survives_a_reader_that_goes_away(redis_url: str) -> None:
    """``dagrt runs | head -1``: the pipe closes early; no traceback."""

    async def runs() -> None:
        async with dagrt.Client(processes=False, metrics=redis_url) as client:
            for i in range(30):
                await client.compute(add(i, 1))

    anyio.run(runs)
    command = f"{sys.executable} -m dagrt runs --redis {redis_url} --limit 30 | head -1"
    done = subprocess.run(
        command, shell=True, capture_output=True, text=True, timeout=60, env=worker_env()
    )
    assert done.stdout.startswith("run ")
    assert "log" in done.stdout.splitlines()[0]
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr


def test_the_flush_policy_crosses_to_workers_whole() -> None:
    """What a client asks of its local cluster's workers comes back as the same policy."""
    from dagrt.cli import _parser
    from dagrt.metrics import FlushPolicy
    from dagrt.options import flush_policy as _flush_policy
    from dagrt.options import log_args

    policy = FlushPolicy(
        after_each_task=True,
        interval=0.25,
        max_events=10,
        max_buffer=1000,
        close_timeout=2.0,
        when_idle=False,
    )
    argv = ["worker"]
    flags, _ = log_args(flush=policy)
    for name, value in flags.items():
        argv += [f"--{name}"] + ([] if value == "" else [str(value)])
    assert _flush_policy(_parser().parse_args(argv)) == policy


def test_worker_options_are_the_settings_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dagrt worker``'s flags come from WorkerSettings and FlushPolicy: no flag given
    is the models' defaults, and each flag's help says what its field says."""
    from dagrt.cli import _parser
    from dagrt.metrics import FlushPolicy
    from dagrt.options import FLUSH_FLAGS, LOG_FLAGS, WORKER_FLAGS, flush_policy, worker_settings
    from dagrt.workers import WorkerSettings

    monkeypatch.delenv("DAGRT_METRICS_URL", raising=False)
    args = _parser().parse_args(["worker"])
    args.flush = flush_policy(args)
    assert worker_settings(args) == WorkerSettings()
    text = " ".join(dagrt_cli("worker", "--help").stdout.split())
    for model, flags in ((WorkerSettings, WORKER_FLAGS | LOG_FLAGS), (FlushPolicy, FLUSH_FLAGS)):
        for field, flag in flags.items():
            described = model.model_fields[field].description
            assert described, (model, field)
            assert f"--{flag.name}" in text
            assert " ".join(described.split()) in text, flag.name


def test_worker_settings_cross_to_a_worker_command_line_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings turned into a worker's flags and environment (what LocalCluster starts)
    parse back into the same settings."""
    from dagrt.cli import _parser
    from dagrt.metrics import FlushPolicy
    from dagrt.options import LOG_FLAGS, WORKER_FLAGS, flush_policy, worker_args, worker_settings
    from dagrt.workers import WorkerSettings

    settings = WorkerSettings(
        concurrency=7,
        threads=3,
        name="w-1",
        claim_timeout=2.5,
        heartbeat=0.5,
        graceful_timeout=1.0,
        connect_timeout=4.0,
        burst=True,
        keep_children=False,
        heartbeat_file="/tmp/beat",
        preload="json,none",
        metrics=False,
        metrics_url="redis://:secret@127.0.0.1:1/0",
        flush=FlushPolicy(interval=None, max_events=None, after_each_task=True, when_idle=False),
    )
    fields = {field: getattr(settings, field) for field in WORKER_FLAGS | LOG_FLAGS}
    flags, env = worker_args(**fields, flush=settings.flush)
    assert env == {"DAGRT_METRICS_URL": "redis://:secret@127.0.0.1:1/0"}  # not in argv
    argv = ["worker"]
    for name, value in flags.items():
        argv += [f"--{name}"] + ([] if value == "" else [str(value)])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = _parser().parse_args(argv)
    args.flush = flush_policy(args)
    assert worker_settings(args) == settings
    with pytest.raises(TypeError, match="not a dagrt worker option"):
        worker_args(secret=b"x")


CLIENT_THAT_DIES = """
import asyncio, sys, time
import dagrt

@dagrt.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds

async def main() -> None:
    async with dagrt.Client(processes=False, metrics=sys.argv[1]) as client:
        fut = client.submit([nap(60.0) for _ in range(2)])
        print(fut.run_id, flush=True)
        await fut

asyncio.run(main())
"""


def test_a_run_whose_client_died_is_listed_as_quiet_once_nothing_comes(
    redis_url: str, tmp_path: Path
) -> None:
    """The log cannot tell a dead client from a long task: a run without its end stays
    ``running``, and the runs list says how long its log has been quiet."""
    from dagrt import RunNotFoundError
    from dagrt.cli import _log_state
    from dagrt.metrics import run_summary
    from dagrt.storage import RedisStorage

    script = tmp_path / "client.py"
    script.write_text(CLIENT_THAT_DIES)
    with subprocess.Popen(
        [sys.executable, str(script), redis_url],
        env=worker_env(),
        stdout=subprocess.PIPE,
        text=True,
    ) as client:
        try:
            assert client.stdout is not None
            run_id = client.stdout.readline().strip()
            with RedisStorage(redis_url) as storage:
                deadline = time.monotonic() + 60
                while True:  # until its run-submitted is in
                    with contextlib.suppress(RunNotFoundError):
                        if run_summary(storage, run_id).status == "running":
                            break
                    assert time.monotonic() < deadline
                    storage.xread({"dagrt:events": "$"}, block=5)
                client.kill()
                client.wait(30)
                run = run_summary(storage, run_id)
        finally:
            client.kill()
    assert run.status == "running"
    assert _log_state(run, now=run.last_logged + 1) == "-"
    assert _log_state(run, now=run.last_logged + 300) == "quiet 5 min"
    assert _log_state(run, now=run.last_logged + 3 * 3600) == "quiet 3 h"
    listing = dagrt_cli("runs", "--redis", redis_url)
    assert run.run_id in listing.stdout
