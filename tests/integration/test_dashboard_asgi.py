"""The dashboard's ASGI entry (``asgi_app``) mounted under a prefix in a real ASGI server (uvicorn): the same pages,
the same read-only refusal, sign-in and CSRF as the aiohttp app, and the database checked after each action."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import psycopg
import pytest
import uvicorn

from jobworker.dashboard import DashboardSettings, asgi_app
from jobworker.dashboard.asgi import DashboardASGI
from tests.dashboard_seed import Seeded, seed

PREFIX = "/ops/jobs"
Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def seeded(db_url: str) -> Seeded:
    return await seed(db_url)


def mounted(dash: DashboardASGI) -> Callable[..., Awaitable[None]]:
    """A host app that mounts the dashboard at PREFIX as Starlette's Mount does (root_path set, path kept)."""

    async def host(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await dash(scope, receive, send)
        elif scope["path"] == PREFIX or scope["path"].startswith(PREFIX + "/"):
            await dash({**scope, "root_path": scope.get("root_path", "") + PREFIX}, receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"host app: not found"})

    return host


@pytest.fixture
async def serve(db_url: str) -> AsyncIterator[Start]:
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(**options: Any) -> str:
        dash = asgi_app(DashboardSettings(database_url=db_url, base_path=PREFIX, **options))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(mounted(dash), log_level="warning", lifespan="on", access_log=False)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        servers.append((server, task))
        deadline = asyncio.get_running_loop().time() + 30
        while not server.started:
            assert not task.done(), "uvicorn stopped before it started"
            assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, task in servers:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def exists(url: str, job_id: int) -> bool:
    with psycopg.connect(url) as conn:
        found = conn.execute("select 1 from graphile_worker._private_jobs where id = %s", (job_id,)).fetchone()
        return found is not None


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, "no CSRF token on the page"
    return found[1]


async def test_read_only_pages_under_the_prefix_and_actions_refused(serve: Start, seeded: Seeded, db_url: str) -> None:
    base = await serve()
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/jobs", "/failures", "/workers", "/queues", "/schedules", f"/jobs/{seeded.ready}"):
            async with http.get(base + PREFIX + path) as r:
                text = await r.text()
                assert r.status == 200, (path, text)
                assert "/actions/" not in text and "csrf_token" not in text
        async with http.get(base + PREFIX + "/jobs?state=failed&task=flaky_call") as r:
            text = await r.text()
            assert f'href="{PREFIX}/jobs/{seeded.failed}"' in text and f"/jobs/{seeded.ready}" not in text
        async with http.get(base + PREFIX + "/static/dashboard.js") as r:
            assert r.status == 200 and "javascript" in r.headers["Content-Type"]
        async with http.post(
            base + PREFIX + "/actions/complete", data={"job_id": str(seeded.ready), "confirm": "yes"}
        ) as r:
            assert r.status == 403 and "read-only" in await r.text()
        async with http.get(base + "/jobs") as r:
            assert r.status == 404  # outside the prefix: the host app's, not the dashboard's
    assert exists(db_url, seeded.ready)


async def test_actions_need_the_csrf_token_then_change_the_database(serve: Start, seeded: Seeded, db_url: str) -> None:
    base = await serve(allow_actions=True, trust_header="X-Forwarded-User")
    user = {"X-Forwarded-User": "alice"}
    url = base + PREFIX + "/actions/complete"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + PREFIX + "/jobs") as r:
            assert r.status == 401  # no user header, no access
        async with http.post(url, data={"job_id": str(seeded.ready), "confirm": "yes"}, headers=user) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        assert exists(db_url, seeded.ready)
        async with http.get(base + PREFIX + "/jobs", headers=user) as r:
            token = csrf(await r.text())
        form = {"job_id": str(seeded.ready), "csrf_token": token}
        async with http.post(url, data=form, headers=user) as r:
            assert r.status == 200 and "Confirm: Complete" in await r.text()
        assert exists(db_url, seeded.ready)
        async with http.post(url, data={**form, "confirm": "yes"}, headers=user) as r:
            assert r.status == 200 and "1 job(s) completed" in await r.text()
    assert not exists(db_url, seeded.ready)


async def test_token_sign_in_redirects_within_the_prefix(serve: Start, seeded: Seeded) -> None:
    base = await serve(allow_actions=True, token="t0ken")
    async with aiohttp.ClientSession() as http:
        async with http.get(base + PREFIX + "/jobs", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == f"{PREFIX}/login"
        async with http.post(base + PREFIX + "/login", data={"token": "t0ken"}, allow_redirects=False) as r:
            assert r.status == 303 and f"Path={PREFIX}/" in r.headers["Set-Cookie"]
        async with http.get(base + PREFIX + "/jobs") as r:
            assert r.status == 200 and "csrf_token" in await r.text()
