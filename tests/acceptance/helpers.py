"""Run the real ``jobworker`` CLI (and Node) in subprocesses, read the database back, poll with deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.rows import dict_row

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
TASKS = "tests.acceptance.acceptance_tasks"
NODE_DIR = Path(__file__).resolve().parent / "node"


def base_env(url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a subprocess: no stray configuration, this database, the repo importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JOBWORKER_") and k not in ("DATABASE_URL", "WORKER_DATABASE_URL", "JOBS_CONCURRENCY")
    }
    env["DATABASE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Result:
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self.describe()
        return json.loads(self.stdout)

    def ok(self) -> Result:
        assert self.code == 0, self.describe()
        return self

    def describe(self) -> str:
        return f"{' '.join(self.argv)} exited {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def jobworker_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobworker", *args]


def jobworker(url: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    """``jobworker ARGS`` with DATABASE_URL=url, to completion."""
    argv = jobworker_argv(*args)
    done = subprocess.run(
        argv, env=base_env(url, env), capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )
    return Result(argv, done.returncode, done.stdout, done.stderr)


def jobworker_many(url: str, commands: Sequence[Sequence[str]], *, timeout: float = 60) -> list[Result]:
    """Run several independent ``jobworker`` commands at once (each start-up costs most of a second)."""
    procs = [
        (
            jobworker_argv(*args),
            subprocess.Popen(
                jobworker_argv(*args),
                env=base_env(url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            ),
        )
        for args in commands
    ]
    results = []
    for argv, proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(Result(argv, proc.returncode, out, err))
    return results


@dataclass
class Process:
    """A long-running subprocess whose output goes to files; stopped by PID, never by name."""

    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    name: str
    cwd: Path = REPO
    popen: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log_dir / f"{self.name}.out", "wb")
        self._err = open(self.log_dir / f"{self.name}.err", "wb")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=self._out, stderr=self._err, cwd=self.cwd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (after a SIGKILL) if the process outlives ``timeout``."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} did not exit within {timeout}s\n{self.output()}") from None

    def stop(self) -> None:
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._out.close()
        self._err.close()

    def output(self) -> str:
        self._out.flush()
        self._err.flush()
        out = (self.log_dir / f"{self.name}.out").read_text(errors="replace")
        err = (self.log_dir / f"{self.name}.err").read_text(errors="replace")
        return f"--- {self.name} stdout\n{out[-4000:]}\n--- {self.name} stderr\n{err[-4000:]}"


def eventually(
    probe: Callable[[], T],
    check: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until ``check`` holds; fail with the last value once the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context else ""
            raise AssertionError(f"{what} not reached within {timeout}s; last value: {value!r}{extra}")
        time.sleep(interval)


# -- reading the database back --------------------------------------------------------------------
def sql(
    url: str, query: LiteralString, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def jobs(url: str) -> list[dict[str, Any]]:
    """Every job row (payload included) with its task identifier and queue name, by id."""
    return sql(
        url,
        "select j.*, t.identifier as task_identifier, q.queue_name "
        "from graphile_worker._private_jobs j "
        "join graphile_worker._private_tasks t on t.id = j.task_id "
        "left join graphile_worker._private_job_queues q on q.id = j.job_queue_id order by j.id",
    )


def queue_snapshot(url: str) -> list[Any]:
    """Everything an erroring command must leave untouched: jobs, tasks, queues."""
    return [
        sql(url, "select * from graphile_worker._private_jobs order by id"),
        sql(url, "select * from graphile_worker._private_tasks order by id"),
        sql(url, "select * from graphile_worker._private_job_queues order by id"),
    ]


def effects(url: str, note: str | None = None) -> list[dict[str, Any]]:
    rows = sql(url, "select * from public.acceptance_effects order by id")
    return [r for r in rows if note is None or r["note"] == note]


def done_counts(url: str) -> Counter[int]:
    """Successful runs per job id, as the handlers recorded them."""
    return Counter(r["job_id"] for r in effects(url, "done"))


def started_ids(url: str) -> set[int]:
    return {r["job_id"] for r in effects(url, "started")}
