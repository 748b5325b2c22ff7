"""Fixtures for the browser tests: Debian's chromium driven by Playwright, the real ``jobworker dashboard``
in a subprocess, and databases seeded with every job state, a job added by graphile-worker in Node, and
(for the big one) a million rows.

Playwright never downloads a browser here: it drives the system's ``chromium`` (JOBWORKER_CHROMIUM to
override). axe-core is installed from npm once into ``${JOBWORKER_AXE_CACHE:-~/.cache/jobworker-axe}``,
outside the repo. Without chromium, or npm for axe-core, these tests skip, unless JOBWORKER_REQUIRE_BROWSER=1.
Screenshots go to ``${JOBWORKER_ARTIFACTS:-build/artifacts}/dashboard``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.acceptance.conftest import NodeEnv, _with_effects, node  # noqa: F401  (node is a fixture)
from tests.dashboard_seed import Seeded, seed, seed_big
from tests.pg import PgServer, start_server

REPO = Path(__file__).resolve().parents[2]
AXE_VERSION = "4.10.2"


def _unavailable(reason: str) -> None:
    if os.environ.get("JOBWORKER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"JOBWORKER_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    yield from start_server()


@pytest.fixture(scope="session")
def chromium() -> str:
    path = os.environ.get("JOBWORKER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        _unavailable("no chromium (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def axe_script() -> Path:
    root = Path(os.environ.get("JOBWORKER_AXE_CACHE") or Path.home() / ".cache" / "jobworker-axe")
    script = root / "node_modules" / "axe-core" / "axe.min.js"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not script.exists():
            npm = shutil.which("npm")
            if not npm:
                _unavailable("npm is needed to install axe-core")
            subprocess.run(
                [str(npm), "install", "--prefix", str(root), "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"],
                check=True,
                capture_output=True,
                timeout=300,
            )
    return script


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("JOBWORKER_ARTIFACTS") or REPO / "build" / "artifacts") / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Dashboard:
    url: str
    db_url: str
    seeded: Seeded
    node_job: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_dashboard(db_url: str, *args: str, logs: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWORKER_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO)
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(logs, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobworker", "--database-url", db_url, "dashboard", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, logs.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"dashboard did not start: {logs.read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _seeded_db(pg: PgServer, node: NodeEnv, *, big: bool) -> tuple[str, Seeded, int]:  # noqa: F811
    url = _with_effects(pg.create_database())
    if big:
        seed_big(url)
    seeded = asyncio.run(seed(url))
    [added] = node.add_jobs(url, [{"task": "node_task", "payload": {"from": "node"}, "queueName": "node-queue"}])
    return url, seeded, int(added["id"])


@pytest.fixture(scope="module")
def big(pg: PgServer, node: NodeEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:  # noqa: F811
    """A read-only dashboard over a million jobs plus the seeded ones and a Node-added job."""
    url, seeded, node_job = _seeded_db(pg, node, big=True)
    logs = tmp_path_factory.mktemp("big") / "dashboard.log"
    with run_dashboard(url, logs=logs) as base:
        yield Dashboard(base, url, seeded, node_job)
    pg.drop_database(url)


@pytest.fixture
def small(pg: PgServer, node: NodeEnv, tmp_path: Path) -> Iterator[Dashboard]:  # noqa: F811
    """A dashboard with actions (user from X-Forwarded-User) over a fresh seeded database."""
    url, seeded, node_job = _seeded_db(pg, node, big=False)
    with run_dashboard(
        url, "--allow-actions", "--trust-header", "X-Forwarded-User", "--refresh", "0.5s", logs=tmp_path / "d.log"
    ) as base:
        yield Dashboard(base, url, seeded, node_job)
    pg.drop_database(url)


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        await b.close()
