"""The dashboard as an ASGI app, to mount in Starlette, FastAPI, Django or any ASGI server.

``asgi_app(DashboardSettings(database_url=..., base_path="/jobs"))`` serves the same pages and actions as
``jobworker dashboard``, under ``base_path``. aiohttp has no public way to answer one request without a
transport of its own, so the adapter runs the very same aiohttp app (``app.root_app``) on a Unix socket in
a private directory (mode 0700, this process's user only) inside the ASGI server's event loop, and forwards
each HTTP request to it. Sign-in, CSRF and read-only mode are therefore the same code, not a copy.

It starts on the first request, or at lifespan startup when the server sends one (a sub-app mounted in
Starlette never gets lifespan events), and stops at lifespan shutdown or ``await app.close()``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from jobworker.dashboard.app import DashboardSettings, root_app

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 256 * 1024
"""Largest request body forwarded: the aiohttp app's own ``client_max_size``."""
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class DashboardASGI:
    """An ASGI 3 callable; ``asgi_app()`` makes one."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._dir: Path | None = None

    async def start(self) -> None:
        async with self._lock:
            if self._session is not None:
                return
            self._dir = Path(tempfile.mkdtemp(prefix="jobworker-dashboard-"))  # mode 0700
            socket_path = str(self._dir / "dashboard.sock")
            runner = web.AppRunner(root_app(self.settings), access_log=None)
            await runner.setup()
            try:
                await web.UnixSite(runner, socket_path).start()
            except BaseException:
                await runner.cleanup()
                raise
            self._runner = runner
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=socket_path), auto_decompress=False
            )

    async def close(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._session, self._runner, self._dir = None, None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # websocket: the dashboard has none
            raise RuntimeError(f"jobworker dashboard: ASGI scope type {scope['type']!r} is not served")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _plain(send, 413, "request body too large")
                return
            if not message.get("more_body", False):
                break
        await self.start()
        assert self._session is not None
        root, path = scope.get("root_path", ""), scope["path"]
        # Starlette's Mount keeps the prefix in path; servers started with --root-path leave it out.
        full = path if path.startswith(root) else root + path
        query = scope.get("query_string", b"").decode("latin-1")
        url = "http://dashboard" + quote(full, safe="/%:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope.get("headers", [])
            if k.decode("latin-1").lower() not in HOP_BY_HOP and k.lower() != b"x-forwarded-proto"
        ]
        # The hop to the socket is plain HTTP: say how the client came, for the sign-in cookie's Secure flag.
        headers.append(("X-Forwarded-Proto", str(scope.get("scheme", "http"))))
        async with self._session.request(
            scope["method"], url, headers=headers, data=bytes(body), allow_redirects=False
        ) as response:
            payload = await response.read()
            out = [(k, v) for k, v in response.raw_headers if k.decode("latin-1").lower() not in HOP_BY_HOP]
        out.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": payload})


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def asgi_app(settings: DashboardSettings) -> DashboardASGI:
    """The dashboard as an ASGI app serving ``settings.base_path`` (mount it there, e.g. Starlette's
    ``Mount("/jobs", app=asgi_app(DashboardSettings(database_url=url, base_path="/jobs")))``)."""
    return DashboardASGI(settings)
