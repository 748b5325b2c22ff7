"""Where the commit->start time of one job goes, in a jobworker worker (issue #13).

    .venv/bin/python bench/timeline.py [--jobs 200] [--batch]

One process runs a worker (concurrency 10, poll interval 60 s, so only LISTEN/NOTIFY wakes it) and,
on its own connection, an enqueuer that adds one job at a time with WorkerUtils.add_job and pauses
5-25 ms between jobs. The hooks are on psycopg and psycopg_pool (never on jobworker's own code), and
stamp, per job:

  commit      add_job returned (its one autocommit statement committed; the enqueuer's own fsync is before this)
  notify      the worker's LISTEN connection yielded the NOTIFY
  checkout    the claim asked the pool for a connection ... got one
  claim       the claim statement was sent ... its rows were back (execution + its commit's WAL flush)
  start       the handler's first line

and prints the median and p90 of each step. The server's mean WAL flush (pg_stat_wal, with
track_wal_io_timing) is printed beside it: under fsync=on the claim, being an UPDATE, waits for one.
Runs on the durable system server (syspg.py) unless BENCH_DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import psycopg
import run
from psycopg_pool import AsyncConnectionPool

from jobworker import JobContext, JobRegistry, Worker, WorkerUtils, define_job

marks: list[tuple[str, float, float]] = []  # (what, start, end)


def install_hooks() -> None:
    orig_notifies = psycopg.AsyncConnection.notifies

    async def notifies(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for n in orig_notifies(self, *args, **kwargs):
            now = time.time()
            marks.append(("notify", now, now))
            yield n

    psycopg.AsyncConnection.notifies = notifies  # type: ignore[method-assign,assignment]
    orig_connection = AsyncConnectionPool.connection

    @contextlib.asynccontextmanager
    async def connection(self: Any, timeout: float | None = None) -> AsyncIterator[Any]:  # noqa: ASYNC109 - the pool method it wraps
        t0 = time.time()
        async with orig_connection(self, timeout=timeout) as conn:
            marks.append(("checkout", t0, time.time()))
            yield conn

    AsyncConnectionPool.connection = connection  # type: ignore[method-assign,assignment]
    orig_execute = psycopg.AsyncCursor.execute

    async def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.time()
        out = await orig_execute(self, query, *args, **kwargs)
        if "Claim up to" in repr(query):
            marks.append(("claim", t0, time.time()))
        return out

    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]


def first_after(kind: str, t: float, until: float) -> tuple[str, float, float] | None:
    for m in marks:
        if m[0] == kind and t <= m[1] <= until:
            return m
    return None


async def main_async(url: str, jobs: int, batch: bool) -> dict[str, list[float]]:
    starts: dict[int, float] = {}
    done = asyncio.Event()

    async def noop(payload: dict[str, Any], ctx: JobContext) -> None:
        starts[int(payload["i"])] = time.time()
        if len(starts) >= jobs:
            done.set()

    registry = JobRegistry([define_job("noop", payload=dict[str, Any], handler=noop)])
    worker = Worker(registry, database_url=url, concurrency=10, batch=batch, poll_interval=60.0)
    install_hooks()
    runner = asyncio.create_task(worker.run())
    await worker.started.wait()
    await asyncio.sleep(0.5)
    committed: dict[int, float] = {}
    async with WorkerUtils(url) as utils:
        await utils.add_job("warmup", {})
        for i, pause in enumerate(run_gaps(jobs)):
            await utils.add_job("noop", {"i": i})
            committed[i] = time.time()
            await asyncio.sleep(pause)
        await asyncio.wait_for(done.wait(), 30)
    worker.stop()
    await runner
    steps: dict[str, list[float]] = {k: [] for k in ("commit->notify", "notify->checkout", "checkout wait")}
    steps |= {"claim round trip": [], "claim->start (dispatch)": [], "commit->start": []}
    for i, t_commit in committed.items():
        t_start = starts.get(i)
        if t_start is None:
            continue
        steps["commit->start"].append(t_start - t_commit)
        notify = first_after("notify", t_commit - 0.005, t_start)
        claim = first_after("claim", (notify or (0, t_commit))[1], t_start)
        if notify is None or claim is None:
            continue
        checkout = first_after("checkout", notify[1], claim[1])
        steps["commit->notify"].append(notify[1] - t_commit)
        if checkout is not None:
            steps["notify->checkout"].append(checkout[1] - notify[1])
            steps["checkout wait"].append(checkout[2] - checkout[1])
        steps["claim round trip"].append(claim[2] - claim[1])
        steps["claim->start (dispatch)"].append(t_start - claim[2])
    return steps


def run_gaps(n: int) -> list[float]:
    sys.path.insert(0, str(h.PEERS))
    import common

    return common.gaps(n, 6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--batch", action="store_true")
    args = p.parse_args()
    with h.server("system") as srv:
        run.build_templates(srv, run.Config(quick=True), {"jobworker"}, big=False)
        with srv.fresh(run.GRAPHILE_TEMPLATE) as (db, url):
            srv.execute("select pg_stat_reset_shared('wal')", db)
            steps = asyncio.run(main_async(url, args.jobs, args.batch))
            wal = srv.execute("select wal_sync, wal_sync_time from pg_stat_wal", db)[0]
    mode = "batch" if args.batch else "default"
    print(f"jobworker {mode} mode, {args.jobs} jobs one at a time, 5-25 ms apart (ms):")
    print("| step | median | p90 | n |\n|---|---:|---:|---:|")
    for name, values in steps.items():
        if values:
            ms = [v * 1000 for v in values]
            p90 = h.percentile(ms, 0.9)
            print(f"| {name} | {statistics.median(ms):.2f} | {p90:.2f} | {len(ms)} |")
    if wal[0]:
        print(f"server: {wal[0]} WAL flushes, mean {float(wal[1]) / wal[0]:.2f} ms each (pg_stat_wal)")


if __name__ == "__main__":
    main()
