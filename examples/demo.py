"""`make demo`: an embedded PostgreSQL, a real worker process, the dashboard, and a mix of jobs until all are done.

The dashboard's URL is printed first; open it to watch the jobs go. With a terminal attached the demo keeps
the dashboard up after the jobs finish, until Ctrl-C; without one (CI) it stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from examples.tasks import Cleanup, Email, Flaky, Report, build_report, flaky_call, nightly_cleanup, send_email
from jobworker import GraphileJobQueue, WorkerUtils
from jobworker.devdb import EphemeralPostgres
from jobworker.migrate import migrate


async def enqueue(url: str) -> None:
    queue = GraphileJobQueue(url)
    await queue.enqueue(send_email, Email(to="ada@example.com", subject="Welcome"))
    # The same key twice: the second add replaces the first (debounce), so one email goes out.
    await queue.enqueue(send_email, Email(to="bob@example.com", subject="Draft 1"), job_key="digest:bob")
    await queue.enqueue(send_email, Email(to="bob@example.com", subject="Draft 2"), job_key="digest:bob")
    for account in (1, 2, 3):
        await queue.enqueue(build_report, Report(account_id=account))
    await queue.enqueue(flaky_call, Flaky(succeed_on_attempt=2))
    await queue.enqueue(nightly_cleanup, Cleanup(), run_at=datetime.now(UTC) + timedelta(seconds=3))
    await queue.close()
    print("enqueued: 1 email, 1 keyed email (added twice), 3 reports in serial queue 'reports',")
    print("          1 flaky call that fails once then retries, 1 cleanup delayed by 3 s")


async def progress(url: str, deadline: float) -> bool:
    async with WorkerUtils(url) as utils:
        while time.monotonic() < deadline:
            stats = await utils.queue_stats()
            print(
                f"  ready {stats.ready:>2}  scheduled {stats.scheduled:>2}  running {stats.locked:>2}  "
                f"failed {stats.failed:>2}  workers {stats.workers_active}"
            )
            if stats.ready + stats.scheduled + stats.locked + stats.failed == 0:
                return True
            await asyncio.sleep(0.5)
    return False


def free_port(preferred: int = 8081) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def start_dashboard(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``jobworker dashboard`` (read-only) on 127.0.0.1; returns the process and its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobworker", "dashboard", "--port", str(port), "--refresh", "1s"], env=env
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}/"


def main() -> int:
    print("starting an embedded PostgreSQL 18 ...")
    with EphemeralPostgres() as pg:
        result = asyncio.run(migrate(pg.url))
        print(f"migrated: {', '.join(result.applied)}")
        env = {**os.environ, "DATABASE_URL": pg.url, "PYTHONPATH": os.getcwd()}
        dashboard, url = start_dashboard(env)
        print(f"dashboard: {url}")
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobworker", "worker", "--tasks", "examples.tasks", "--concurrency", "4"],
            env=env,
        )
        try:
            asyncio.run(enqueue(pg.url))
            done = asyncio.run(progress(pg.url, time.monotonic() + 60))
            print("all jobs done" if done else "timed out waiting for jobs")
            if sys.stdin.isatty():
                print(f"the dashboard stays up at {url}; press Ctrl-C to stop")
                with contextlib.suppress(KeyboardInterrupt):
                    dashboard.wait()
        finally:
            for proc in (worker, dashboard):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
        return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
