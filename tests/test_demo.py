"""The main job, ``dagrt demo``, run as a user runs it: a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import worker_env
from helpers import interrupt_and_reap

from dagrt.storage.server import free_port


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagrt", "demo", *args],
        cwd=cwd,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_demo_runs_a_workflow_and_writes_its_report(tmp_path: Path) -> None:
    done = demo("--workers", "2", "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Running wordcount" in out
    assert "Result: " in out
    assert "Makespan: " in out
    assert "bytes moved: " in out
    (report,) = (tmp_path / "reports").glob("*/report.html")
    assert f"Report: {report.resolve()}" in out
    data = json.loads((report.parent / "report.json").read_text())
    assert data["status"] == "finished"
    assert len(data["gantt"]) == data["n_tasks"] > 0
    assert len(data["workers"]) == 2


def test_the_demo_checks_its_arguments(tmp_path: Path) -> None:
    done = demo("no_such_workflow", cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
    done = demo("gemm", "--file", "x.txt", cwd=tmp_path)
    assert done.returncode != 0
    assert "--file applies to wordcount and image_transform" in done.stderr
    done = demo("wordcount", "--file", str(tmp_path / "missing.txt"), cwd=tmp_path)
    assert done.returncode != 0
    assert "missing.txt" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_demo_serves_the_dashboard_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "dagrt", "demo", "tree_reduction", "--workers", "1"]
    process = subprocess.Popen(
        [*argv, "--dashboard", "--port", str(port), "--out", str(tmp_path)],
        cwd=tmp_path,
        env=worker_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops it" in line:
            break
    text = "".join(lines)
    assert f"dagrt dashboard: http://127.0.0.1:{port}/" in text
    run_id = text.split("#/run/", 1)[1].split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs/{run_id}", timeout=10) as r:
        assert json.loads(r.read())["summary"]["status"] == "finished"
    interrupt_and_reap(process)


@pytest.mark.parametrize("workflow", ["gemm", "image_transform", "svd1", "svd2"])
def test_every_workflow_has_a_demo(tmp_path: Path, workflow: str) -> None:
    done = demo(workflow, "--workers", "1", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Result: " in done.stdout
