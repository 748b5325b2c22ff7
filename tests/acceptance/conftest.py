"""Fixtures for the acceptance tests: real PostgreSQL, the real CLI in subprocesses, real Node.

``pg`` is the embedded server (``pg.embedded``) or JOBWORKER_TEST_DATABASE_URL's (``pg.embedded`` is
None, and the PostgreSQL restart test skips). ``node`` installs graphile-worker, pinned in
``node/package.json``, into ``${JOBWORKER_NODE_CACHE:-~/.cache/jobworker-node}/graphile-worker-<version>``
once, outside the repo. Without node or npm the interop tests skip, unless JOBWORKER_REQUIRE_NODE=1
(CI), where they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from tests.acceptance.acceptance_tasks import EFFECTS_DDL
from tests.acceptance.helpers import NODE_DIR, Process, Result, base_env, jobworker_argv, sql
from tests.pg import PgServer, start_server

NODE_TIMEOUT = 60


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    yield from start_server()


def _with_effects(conninfo: str) -> str:
    """As a postgresql:// URL (what DATABASE_URL holds, and all Node's pg understands), with the effects table."""
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    auth = quote(str(parts.get("user", "postgres")), safe="")
    if parts.get("password"):
        auth += ":" + quote(str(parts["password"]), safe="")
    host = parts.get("host", "127.0.0.1")
    url = f"postgresql://{auth}@{host}:{parts.get('port', 5432)}/{quote(str(parts['dbname']), safe='')}"
    sql(url, EFFECTS_DDL)  # type: ignore[arg-type]
    return url


@pytest.fixture
def db_url(pg: PgServer) -> Iterator[str]:
    """A fresh database migrated by jobworker, with the handlers' effects table."""
    url = _with_effects(pg.create_database())
    yield url
    pg.drop_database(url)


@pytest.fixture
def empty_db_url(pg: PgServer) -> Iterator[str]:
    """A fresh database with no graphile_worker schema (only the effects table)."""
    url = _with_effects(pg.create_database(template=None))
    yield url
    pg.drop_database(url)


Spawn = Callable[..., Process]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start long-running subprocesses; any still running at teardown are killed by PID."""
    started: list[Process] = []
    counter = iter(range(1000))

    def start(argv: Sequence[str], url: str, *, env: Mapping[str, str] | None = None, name: str = "proc") -> Process:
        proc = Process(list(argv), base_env(url, env), tmp_path / "logs", f"{name}-{next(counter)}")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def spawn_worker(spawn: Spawn) -> Callable[..., Process]:
    """``jobworker worker --tasks tests.acceptance.acceptance_tasks ARGS`` in the background."""

    def start(url: str, *args: str, env: Mapping[str, str] | None = None) -> Process:
        from tests.acceptance.helpers import TASKS

        return spawn(jobworker_argv("worker", "--tasks", TASKS, *args), url, env=env, name="worker")

    return start


# -- node -----------------------------------------------------------------------------------------
@dataclass
class NodeEnv:
    node: str
    modules: Path

    @property
    def cli(self) -> list[str]:
        """The graphile-worker command line (its bin script, run by this node)."""
        return [self.node, str(self.modules / "graphile-worker" / "dist" / "cli.js")]

    def env(self, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return base_env(url, {"NODE_PATH": str(self.modules), **(extra or {})})

    def run(self, url: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Result:
        done = subprocess.run(
            list(argv),
            env=self.env(url, env),
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            cwd=NODE_DIR,
            check=False,
        )
        return Result(list(argv), done.returncode, done.stdout, done.stderr)

    def graphile_worker(self, url: str, *args: str) -> Result:
        """``graphile-worker -c URL ARGS`` (e.g. ``--schema-only``)."""
        return self.run(url, [*self.cli, "-c", url, *args])

    def add_jobs(self, url: str, specs: Sequence[Mapping[str, Any]], *, via: str = "utils") -> list[dict[str, Any]]:
        """Add jobs from Node: ``via="utils"`` (makeWorkerUtils().addJob) or ``"sql"`` (add_job on pg)."""
        result = self.run(url, [self.node, str(NODE_DIR / "add_jobs.js"), via, json.dumps(list(specs))]).ok()
        added: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
        return added

    def run_once(self, url: str, *, tasks: str | None = None) -> Result:
        """graphile-worker's runOnce() with node/worker.js's task list."""
        extra = {"NODE_TASKS": tasks} if tasks else None
        return self.run(url, [self.node, str(NODE_DIR / "worker.js"), "once"], env=extra)

    def worker(self, spawn: Spawn, url: str, *, tasks: str | None = None, concurrency: int = 2) -> Process:
        """graphile-worker's run() in the background, until SIGTERM."""
        extra = {"CONCURRENCY": str(concurrency), **({"NODE_TASKS": tasks} if tasks else {})}
        return spawn(
            [self.node, str(NODE_DIR / "worker.js"), "run"],
            url,
            env={"NODE_PATH": str(self.modules), **extra},
            name="node-worker",
        )


def _unavailable(reason: str) -> None:
    if os.environ.get("JOBWORKER_REQUIRE_NODE") == "1":
        pytest.fail(f"JOBWORKER_REQUIRE_NODE=1 but {reason}")
    pytest.skip(reason)


def _pinned_version() -> str:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    version: str = manifest["dependencies"]["graphile-worker"]
    return version


@pytest.fixture(scope="session")
def node() -> NodeEnv:
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if not node_bin or not npm_bin:
        _unavailable("node and npm are needed for the graphile-worker interop tests")
    assert node_bin and npm_bin
    version = _pinned_version()
    root = Path(os.environ.get("JOBWORKER_NODE_CACHE") or Path.home() / ".cache" / "jobworker-node")
    prefix = root / f"graphile-worker-{version}"
    modules = prefix / "node_modules"
    installed = modules / "graphile-worker" / "package.json"
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time across concurrent test sessions
        if not (installed.exists() and json.loads(installed.read_text()).get("version") == version):
            try:
                subprocess.run(
                    [
                        npm_bin,
                        "install",
                        "--prefix",
                        str(prefix),
                        "--no-audit",
                        "--no-fund",
                        f"graphile-worker@{version}",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                detail = getattr(exc, "stderr", "") or ""
                _unavailable(f"npm install graphile-worker@{version} failed: {str(detail).strip()[-500:]}")
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_UN)
    return NodeEnv(node_bin, modules)
