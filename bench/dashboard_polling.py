"""What the dashboard's live overview costs the database with many tabs open.

Starts an embedded PostgreSQL with a million jobs, the dashboard (refresh 2 s) in this process, and N
simulated tabs each polling the overview fragment every 2 s, as dashboard.js does. Reports, per N: the
statements the dashboard sent per minute, PostgreSQL transactions per minute on the database, and the
poll latency p50/p95.  Run: ``.venv/bin/python -m bench.dashboard_polling`` (about 2 minutes).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import psycopg
from aiohttp import web

from jobworker.dashboard.app import KEY, DashboardSettings, create_app
from jobworker.devdb import EphemeralPostgres
from jobworker.migrate import migrate
from tests.dashboard_seed import seed, seed_big

PERIOD = 2.0
WINDOW = 30.0


async def tab(session: aiohttp.ClientSession, url: str, stop: float, latencies: list[float]) -> None:
    while time.monotonic() < stop:
        started = time.monotonic()
        async with session.get(url) as response:
            await response.read()
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, PERIOD - (time.monotonic() - started)))


def query_times(url: str) -> list[tuple[str, float]]:
    """Median of 5 runs of each overview query on the big table, in ms (recorded, never asserted)."""
    from jobworker import sql
    from jobworker.dashboard.store import SAMPLE_ROWS

    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        [[estimate]] = conn.execute(sql.query("dashboard_table_size", "graphile_worker")).fetchall()
        params: dict[str, dict[str, float] | None] = {
            "dashboard_counts_sampled": {"percent": 100.0 * SAMPLE_ROWS / estimate},
            "dashboard_oldest_waiting": None,
            "dashboard_worker_counts": {"threshold": 300.0},
            "dashboard_throughput": None,
            "dashboard_counts_exact": None,
        }
        for name, args in params.items():
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                conn.execute(sql.query(name, "graphile_worker"), args).fetchall()
                runs.append((time.perf_counter() - started) * 1000)
            out.append((name, statistics.median(runs)))
    return out


def commits(url: str) -> int:
    with psycopg.connect(url) as conn:
        [[n]] = conn.execute("select xact_commit from pg_stat_database where datname = current_database()")
        return int(n)


async def measure(url: str, tabs: int) -> dict[str, float]:
    app = create_app(DashboardSettings(database_url=url, refresh=PERIOD))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    store = app[KEY].store
    try:
        async with aiohttp.ClientSession() as session:
            await (await session.get(f"http://127.0.0.1:{port}/partials/overview")).read()  # warm up
            sent, xacts = store.queries_run, commits(url)
            latencies: list[float] = []
            stop = time.monotonic() + WINDOW
            target = f"http://127.0.0.1:{port}/partials/overview"
            await asyncio.gather(*(tab(session, target, stop, latencies) for _ in range(tabs)))
            per_minute = 60.0 / WINDOW
            return {
                "tabs": tabs,
                "polls": len(latencies),
                "statements_per_min": (store.queries_run - sent) * per_minute,
                "xacts_per_min": (commits(url) - xacts - 1) * per_minute,
                "p50_ms": statistics.median(latencies) * 1000,
                "p95_ms": statistics.quantiles(latencies, n=20)[18] * 1000,
            }
    finally:
        await runner.cleanup()


async def main() -> None:
    with EphemeralPostgres() as pg:
        await migrate(pg.url)
        await seed(pg.url)
        seed_big(pg.url)
        print("| query (1M rows) | median ms |")
        print("|---|---:|")
        for name, ms in query_times(pg.url):
            print(f"| {name} | {ms:.1f} |")
        print("| tabs | polls | dashboard statements / min | PostgreSQL transactions / min | poll p50 / p95 |")
        print("|---:|---:|---:|---:|---|")
        for tabs in (1, 10, 50):
            r = await measure(pg.url, tabs)
            print(
                f"| {r['tabs']:.0f} | {r['polls']:.0f} | {r['statements_per_min']:.0f} | {r['xacts_per_min']:.0f} | "
                f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} ms |"
            )


if __name__ == "__main__":
    asyncio.run(main())
