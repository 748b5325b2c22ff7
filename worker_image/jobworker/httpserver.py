"""A tiny aiohttp server for /healthz and /metrics, shared by the worker and scheduler processes."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def health_app(healthy: Callable[[], bool]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"status": "ok" if ok else "unhealthy"}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def start(port: int, healthy: Callable[[], bool], host: str = "0.0.0.0") -> web.AppRunner:
    runner = web.AppRunner(health_app(healthy), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
