"""The ``dagrt`` command faced with a dead server or an unknown run: one line, exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import worker_env

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


def test_an_unknown_run_is_one_clear_line(redis_url: str) -> None:
    done = dagrt_cli("report", "no-such-run", "--redis", redis_url)
    assert done.returncode == 1
    assert done.stderr.strip() == "dagrt report: no events of run 'no-such-run' in the event log"
