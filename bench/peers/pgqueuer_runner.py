"""pgqueuer (PyPI) under benchmark, through its documented API: PgQueuer, entrypoint, Queries.enqueue.

Driver: asyncpg (AsyncpgDriver), the driver pgqueuer's docs lead with. Concurrency C maps to
``max_concurrent_tasks=C`` (pgqueuer's hard cap on jobs a worker holds), with the largest batch it
allows for that cap (``batch_size=C // 2``; pgqueuer requires max_concurrent_tasks >= 2 * batch_size).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import common
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


async def install(args: Any) -> None:
    conn = await connect(args.db)
    await Queries(AsyncpgDriver(conn)).install()
    await conn.close()


async def prefill(args: Any) -> None:
    conn = await connect(args.db)
    q = Queries(AsyncpgDriver(conn))
    payload = b"{}"
    for start in range(0, args.jobs, args.chunk):
        n = min(args.chunk, args.jobs - start)
        await q.enqueue(["noop"] * n, [payload] * n, [0] * n)
    await conn.close()


async def enqueue(args: Any) -> dict[str, Any]:
    conn = await connect(args.db)
    q = Queries(AsyncpgDriver(conn))
    await q.enqueue("noop", b'{"i": -1}')
    await common.handshake()
    t0 = time.perf_counter()
    if args.mode == "enqueue-batch":
        for start in range(0, args.jobs, args.chunk):
            end = min(start + args.chunk, args.jobs)
            n = end - start
            await q.enqueue(["noop"] * n, [json.dumps({"i": i}).encode() for i in range(start, end)], [0] * n)
    else:
        for i in range(args.jobs):
            await q.enqueue("noop", json.dumps({"i": i}).encode())
    out = {"seconds": time.perf_counter() - t0, "jobs": args.jobs}
    await conn.close()
    return out


def worker(conn: asyncpg.Connection, handler: Any) -> PgQueuer:
    pgq = PgQueuer(AsyncpgDriver(conn))
    pgq.entrypoint("noop")(handler)
    return pgq


def run_options(args: Any, dequeue_timeout: float = 30.0) -> dict[str, Any]:
    return {
        "batch_size": max(1, args.concurrency // 2),
        "max_concurrent_tasks": args.concurrency,
        "dequeue_timeout": timedelta(seconds=dequeue_timeout),
    }


async def drain(args: Any) -> None:
    handled = 0
    first: list[float] = []

    async def noop(job: Job) -> None:
        nonlocal handled
        if not first:
            first.append(time.perf_counter())
        handled += 1

    conn = await connect(args.db)
    side = await connect(args.db)
    pgq = worker(conn, noop)

    async def remaining() -> int:
        return int(await side.fetchval("select count(*) from pgqueuer"))

    await common.handshake()
    t0 = time.perf_counter()
    run = asyncio.create_task(pgq.run(**run_options(args)))
    await common.wait_drained(remaining, lambda: handled, args.jobs)
    t1 = time.perf_counter()
    await common.finish({"seconds": t1 - t0, "steady_seconds": t1 - first[0], "handled": handled, "jobs": args.jobs})
    pgq.shutdown.set()
    await run
    await side.close()
    await conn.close()


async def latency_worker(args: Any) -> None:
    lat = common.Latencies(args.jobs)

    async def noop(job: Job) -> None:
        lat.record(json.loads(job.payload or b"{}"))

    conn = await connect(args.db)
    pgq = worker(conn, noop)
    run = asyncio.create_task(pgq.run(**run_options(args, dequeue_timeout=60.0)))
    await asyncio.sleep(1.0)
    await common.handshake()
    await lat.done.wait()
    await common.finish(lat.report())
    pgq.shutdown.set()
    await run
    await conn.close()


async def latency_enqueue(args: Any) -> None:
    conn = await connect(args.db)
    q = Queries(AsyncpgDriver(conn))

    async def add(payload: dict[str, Any]) -> None:
        await q.enqueue("noop", json.dumps(payload).encode())

    await common.finish(await common.latency_enqueue(args.jobs, args.seed, add))
    await conn.close()


async def main() -> None:
    args = common.parser("pgqueuer bench runner").parse_args()
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
