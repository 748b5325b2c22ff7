"""jobworker under benchmark, through its public API only (Worker, WorkerUtils, define_job).

Also the latency enqueuer for jobworker *and* graphile-worker: both read the same schema, so one
enqueuer (graphile's ``add_job`` SQL function, via WorkerUtils.add_job) serves both.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import psycopg

from jobworker import JobContext, JobRegistry, JobSpec, Worker, WorkerUtils, define_job


def make_args() -> Any:
    p = common.parser("jobworker bench runner")
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--poll-interval", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="exploration only; make bench uses the default")
    p.add_argument("--complete-delay", type=float, default=None, help="exploration only; make bench uses the default")
    return p.parse_args()


async def enqueue(args: Any) -> dict[str, Any]:
    async with WorkerUtils(args.db) as utils:
        await utils.add_job("noop", {"i": -1})  # connect outside the timed part, as the Node runner does
        await common.handshake()
        t0 = time.perf_counter()
        if args.mode == "enqueue-batch":
            for start in range(0, args.jobs, args.chunk):
                end = min(start + args.chunk, args.jobs)
                await utils.add_jobs([JobSpec(task="noop", payload={"i": i}) for i in range(start, end)])
        else:
            for i in range(args.jobs):
                await utils.add_job("noop", {"i": i})
        return {"seconds": time.perf_counter() - t0, "jobs": args.jobs}


async def drain(args: Any) -> dict[str, Any]:
    handled = 0
    first: list[float] = []

    async def noop(payload: dict[str, Any], ctx: JobContext) -> None:
        nonlocal handled
        if not first:
            first.append(time.perf_counter())
        handled += 1

    registry = JobRegistry([define_job("noop", payload=dict[str, Any], handler=noop)])
    options: dict[str, Any] = {"concurrency": args.concurrency, "batch": args.variant == "batch"}
    if args.poll_interval:
        options["poll_interval"] = args.poll_interval
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.complete_delay is not None:
        options["complete_delay"] = args.complete_delay
    worker = Worker(registry, database_url=args.db, **options)
    side = await psycopg.AsyncConnection.connect(args.db, autocommit=True)

    async def remaining() -> int:
        cur = await side.execute("select count(*) from graphile_worker._private_jobs where id >= %s", (args.min_id,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    await common.handshake()
    t0 = time.perf_counter()
    run = asyncio.create_task(worker.run())
    await common.wait_drained(remaining, lambda: handled, args.jobs if args.procs == 1 else 0)
    t1 = time.perf_counter()
    out = {"seconds": t1 - t0, "steady_seconds": t1 - first[0] if first else 0.0, "handled": handled}
    # Wall clock, so the orchestrator can span several processes (scale-out).
    out |= {"jobs": args.jobs, "first_wall": time.time() - (t1 - first[0]) if first else None, "end_wall": time.time()}
    await common.finish(out)
    worker.stop()
    await run
    await side.close()
    return out


async def latency_worker(args: Any) -> dict[str, Any]:
    lat = common.Latencies(args.jobs)

    async def noop(payload: dict[str, Any], ctx: JobContext) -> None:
        lat.record(payload)

    registry = JobRegistry([define_job("noop", payload=dict[str, Any], handler=noop)])
    worker = Worker(
        registry,
        database_url=args.db,
        concurrency=args.concurrency,
        batch=args.variant == "batch",
        poll_interval=args.poll_interval or 60.0,
    )
    run = asyncio.create_task(worker.run())
    await worker.started.wait()
    await asyncio.sleep(0.5)  # let the LISTEN connection come up
    await common.handshake()
    await lat.done.wait()
    out = lat.report()
    await common.finish(out)
    worker.stop()
    await run
    return out


async def latency_enqueue(args: Any) -> dict[str, Any]:
    async with WorkerUtils(args.db) as utils:
        await utils.add_job("warmup", {})
        return await common.latency_enqueue(args.jobs, args.seed, lambda p: utils.add_job("noop", p))


async def main() -> None:
    args = make_args()
    if args.mode in ("enqueue-batch", "enqueue-single"):
        await common.finish(await enqueue(args))
    elif args.mode == "drain":
        await drain(args)
    elif args.mode == "latency-worker":
        await latency_worker(args)
    elif args.mode == "latency-enqueue":
        await common.finish(await latency_enqueue(args))
    else:
        raise SystemExit(f"mode {args.mode} is done by the orchestrator for jobworker")


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
