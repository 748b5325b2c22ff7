"""procrastinate (PyPI) under benchmark, through its documented API: App, PsycopgConnector, @app.task,
defer_async / batch_defer_async and run_worker_async(concurrency=C). Default worker options otherwise
(LISTEN/NOTIFY on, finished jobs kept as procrastinate does by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import psycopg
from procrastinate import App, PsycopgConnector


def make_app(url: str, handler: Any = None) -> tuple[App, Any]:
    app = App(connector=PsycopgConnector(conninfo=url))

    async def noop(**kwargs: Any) -> None:
        if handler is not None:
            handler(kwargs)

    task = app.task(name="noop")(noop)
    return app, task


async def install(args: Any) -> None:
    app, _ = make_app(args.db)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def prefill(args: Any) -> None:
    app, task = make_app(args.db)
    async with app.open_async():
        for start in range(0, args.jobs, args.chunk):
            await task.batch_defer_async(*({} for _ in range(min(args.chunk, args.jobs - start))))


async def enqueue(args: Any) -> dict[str, Any]:
    app, task = make_app(args.db)
    async with app.open_async():
        await task.defer_async(i=-1)
        await common.handshake()
        t0 = time.perf_counter()
        if args.mode == "enqueue-batch":
            for start in range(0, args.jobs, args.chunk):
                await task.batch_defer_async(*({"i": i} for i in range(start, min(start + args.chunk, args.jobs))))
        else:
            for i in range(args.jobs):
                await task.defer_async(i=i)
        return {"seconds": time.perf_counter() - t0, "jobs": args.jobs}


async def run_worker(app: App, concurrency: int, polling: float | None = None) -> asyncio.Task[None]:
    options: dict[str, Any] = {"concurrency": concurrency, "wait": True, "install_signal_handlers": False}
    if polling is not None:
        options["fetch_job_polling_interval"] = polling
    return asyncio.create_task(app.run_worker_async(**options))


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def drain(args: Any) -> None:
    handled = 0
    first: list[float] = []

    def count(_: Any) -> None:
        nonlocal handled
        if not first:
            first.append(time.perf_counter())
        handled += 1

    app, _ = make_app(args.db, count)
    side = await psycopg.AsyncConnection.connect(args.db, autocommit=True)

    async def remaining() -> int:
        cur = await side.execute("select count(*) from procrastinate_jobs where status in ('todo', 'doing')")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async with app.open_async():
        await common.handshake()
        t0 = time.perf_counter()
        worker = await run_worker(app, args.concurrency)
        await common.wait_drained(remaining, lambda: handled, args.jobs)
        t1 = time.perf_counter()
        await common.finish(
            {"seconds": t1 - t0, "steady_seconds": t1 - first[0], "handled": handled, "jobs": args.jobs}
        )
        await stop(worker)
    await side.close()


async def latency_worker(args: Any) -> None:
    lat = common.Latencies(args.jobs)
    app, _ = make_app(args.db, lat.record)
    async with app.open_async():
        worker = await run_worker(app, args.concurrency, polling=60.0)
        await asyncio.sleep(1.0)
        await common.handshake()
        await lat.done.wait()
        await common.finish(lat.report())
        await stop(worker)


async def latency_enqueue(args: Any) -> None:
    app, task = make_app(args.db)
    async with app.open_async():
        await common.finish(await common.latency_enqueue(args.jobs, args.seed, lambda p: task.defer_async(**p)))


async def main() -> None:
    args = common.parser("procrastinate bench runner").parse_args()
    if args.mode == "install":
        await install(args)
    elif args.mode == "prefill":
        await prefill(args)
    elif args.mode in ("enqueue-batch", "enqueue-single"):
        await common.finish(await enqueue(args))
    elif args.mode == "drain":
        await drain(args)
    elif args.mode == "latency-worker":
        await latency_worker(args)
    elif args.mode == "latency-enqueue":
        await latency_enqueue(args)


if __name__ == "__main__":
    asyncio.run(main())
