"""The health server: /healthz and /metrics, one server and one JSON shape for every jobworker process.

``GET /healthz`` answers ``200 {"status": "ok"}`` while the process is healthy and ``503 {"status":
"unhealthy"}`` otherwise: the worker (see ``Worker.healthy``), the scheduler (its loop ticked in the last
150 s) and ``jobworker serve``, whose job endpoint mounts the same routes (``add_health_routes``).

``GET /metrics?queue_stats=1`` adds the queue statistics of the worker's own database (bounded like the
operator's: the fullest queues by name, the rest as ``other``), read at most every few seconds. Only the
operator asks for it, in its no-Secrets mode (the chart's ``queueStats.source: workers``); Prometheus'
plain scrapes never pay for the query.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from jobworker.models import QueueStats

QueueStatsReader = Callable[[], Awaitable[tuple[QueueStats, int | None]]]
"""-> (the queue statistics, the graphile migration of the schema): what the operator reads (docs/contracts.md)."""
QUEUE_STATS_MAX_AGE = 5.0


class QueueReading:
    """The latest queue statistics as Prometheus text, refreshed when older than ``QUEUE_STATS_MAX_AGE``."""

    def __init__(self, read: QueueStatsReader) -> None:
        self.read = read
        self.text = b""
        self.at = -math.inf
        self.lock = asyncio.Lock()

    async def current(self) -> bytes:
        async with self.lock:
            if time.monotonic() - self.at >= QUEUE_STATS_MAX_AGE:
                stats, schema_version = await self.read()
                self.text, self.at = render_queue_reading(stats, schema_version), time.monotonic()
            return self.text


def render_queue_reading(stats: QueueStats, schema_version: int | None) -> bytes:
    registry = CollectorRegistry()
    jobs = Gauge(
        "jobworker_queue_reading_jobs", "Jobs by task, queue and state.", ["task", "queue", "state"], registry=registry
    )
    for row in stats.by_task:
        jobs.labels(row.task, row.queue or "", row.state).inc(row.count)
    oldest = stats.oldest_ready_seconds
    Gauge(
        "jobworker_queue_reading_oldest_ready_seconds", "Age of the oldest ready job (NaN: none).", registry=registry
    ).set(math.nan if oldest is None else oldest)
    workers = Gauge("jobworker_queue_reading_workers", "Workers by heartbeat state.", ["state"], registry=registry)
    workers.labels("active").set(stats.workers_active)
    workers.labels("stale").set(stats.workers_stale)
    holders = getattr(stats, "lock_holders", None)
    if holders is not None:
        # One series per rank, not per worker id: at most LOCK_HOLDERS of them, whichever workers come and go.
        Gauge("jobworker_queue_reading_lock_holders", "Workers holding jobs.", registry=registry).set(
            stats.lock_holders_total
        )
        by_rank = {
            field: Gauge(f"jobworker_queue_reading_lock_holder_{field}", help, ["rank"], registry=registry)
            for field, help in (
                ("jobs", "Jobs each worker holding jobs holds, youngest newest lock first (rank 0)."),
                ("newest_lock_seconds", "Age of the newest lock of each worker holding jobs (rank 0: youngest)."),
                ("oldest_lock_seconds", "Age of the oldest lock of each worker holding jobs (by the same rank)."),
            )
        }
        for rank, holder in enumerate(holders):
            for field, gauge in by_rank.items():
                gauge.labels(str(rank)).set(getattr(holder, field))
    Gauge(
        "jobworker_queue_reading_schema_version",
        "graphile-worker migration of the schema (NaN: unknown).",
        registry=registry,
    ).set(math.nan if schema_version is None else schema_version)
    return generate_latest(registry)


def health_body(ok: bool) -> dict[str, str]:
    """The one ``/healthz`` body of every jobworker process (the endpoint's ASGI app answers it too)."""
    return {"status": "ok" if ok else "unhealthy"}


def add_health_routes(
    app: web.Application, healthy: Callable[[], bool], queue_stats: QueueStatsReader | None = None
) -> None:
    """Add ``/healthz`` and ``/metrics`` to ``app``."""
    reading = QueueReading(queue_stats) if queue_stats else None

    async def healthz(_: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response(health_body(ok), status=200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest()
        if reading is not None and request.query.get("queue_stats") == "1":
            try:
                body += await reading.current()
            except Exception as exc:  # the process' own metrics still answer; the operator reports the problem
                return web.Response(status=503, text=f"queue statistics unavailable: {type(exc).__name__}\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


def health_app(healthy: Callable[[], bool], queue_stats: QueueStatsReader | None = None) -> web.Application:
    app = web.Application()
    add_health_routes(app, healthy, queue_stats)
    return app


async def start(
    port: int, healthy: Callable[[], bool], host: str = "0.0.0.0", *, queue_stats: QueueStatsReader | None = None
) -> web.AppRunner:
    """Serve ``health_app`` on ``host:port`` until ``runner.cleanup()``."""
    runner = web.AppRunner(health_app(healthy, queue_stats), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
